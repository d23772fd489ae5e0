// The UI's entry point: who the user is (login, logout, role), the sections (hash routes, loaded on first visit),
// the theme and notification toggles, and the few events the sections share.

import { api, onAuthNeeded } from "./api.js";
import { $, $$, toast } from "./dom.js";
import * as gen from "./generate.js";
import * as live from "./live.js";

const listeners = {};
const ctx = {
  me: null,
  on(name, fn) {
    (listeners[name] ||= []).push(fn);
  },
  emit(name, data) {
    for (const fn of listeners[name] || []) fn(data);
  },
  goto(tab) {
    location.hash = "#" + tab;
  },
  useAsInput(item) {
    gen.useAsInput(item);
    ctx.goto("generate");
  },
  reuse(job) {
    gen.applyParams(job.params || {}, job);
    ctx.goto("generate");
  },
};

// -- sections --------------------------------------------------------------------------------------------------------

const LAZY = { gallery: () => import("./gallery.js"), models: () => import("./models.js"), system: () => import("./system.js") };
const mounted = {};
let current = null;

async function route() {
  const tab = (location.hash || "#generate").slice(1);
  const name = tab in LAZY || tab === "generate" ? tab : "generate";
  for (const view of $$(".view")) view.hidden = view.dataset.view !== name;
  for (const link of $$(".tabs a")) {
    if (link.dataset.tab === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current && mounted[current] && mounted[current].hide) mounted[current].hide();
  current = name;
  if (name === "generate") return;
  if (!mounted[name]) {
    const module = await LAZY[name]();
    mounted[name] = module;
    module.mount($(`#view-${name}`), ctx);
  }
  if (current === name && ctx.me) mounted[name].show();
}

// -- who is using it -------------------------------------------------------------------------------------------------

let loginWaiters = [];

/** Show the login form (a request got a 401); once logged in, everything is read again. */
function showLogin() {
  const dialog = $("#login");
  if (!dialog.open) {
    $("#login-error").hidden = true;
    dialog.showModal();
    $("#login-user").focus();
  }
}

/** Show the login form and wait for the login (start-up and logout wait; a 401 elsewhere does not). */
function askLogin() {
  showLogin();
  return new Promise((resolve) => loginWaiters.push(resolve));
}

async function login(e) {
  e.preventDefault();
  const error = $("#login-error");
  const button = $("#login-btn");
  button.disabled = true;
  try {
    await api("auth/login", { method: "POST", body: { username: $("#login-user").value, password: $("#login-pass").value } });
    $("#login-pass").value = "";
    $("#login").close();
    const waiting = loginWaiters;
    loginWaiters = [];
    waiting.forEach((resolve) => resolve());
    if (!waiting.length) await refreshAll();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function loadMe() {
  for (;;) {
    try {
      ctx.me = await api("auth/me");
      break;
    } catch (e) {
      if (e.status !== 401) throw e;
      await askLogin();
    }
  }
  const { name, role, source } = ctx.me;
  document.body.classList.toggle("role-admin", role === "admin");
  document.body.classList.toggle("role-guest", role === "guest");
  const signedIn = source !== "none" && source !== "guest";
  $("#who").hidden = source === "none";
  $("#who").textContent = source === "guest" ? "guest" : `${name} (${role})`;
  $("#logout-btn").hidden = !signedIn;
  $("#logout-btn").textContent = "Log out";
  if (source === "guest") {
    $("#logout-btn").hidden = false;
    $("#logout-btn").textContent = "Log in";
  }
}

async function logout() {
  if (!ctx.me || ctx.me.source !== "guest") {
    try {
      await api("auth/logout", { method: "POST" });
    } catch {
      // the session is gone either way
    }
    ctx.me = null;
  }
  await askLogin();
  await refreshAll();
}

async function refreshAll() {
  await loadMe();
  await gen.load();
  live.refreshQueue();
  ctx.emit("auth");
  if (mounted[current]) mounted[current].show();
}

// -- theme and notifications -----------------------------------------------------------------------------------------

const THEMES = ["system", "light", "dark"];

function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === "system") delete root.dataset.theme;
  else root.dataset.theme = theme;
  const button = $("#theme-btn");
  button.dataset.theme = theme;
  button.setAttribute("aria-label", `Theme: ${theme} (change)`);
  button.title = `Theme: ${theme}`;
  try {
    if (theme === "system") localStorage.removeItem("sdrest.theme");
    else localStorage.setItem("sdrest.theme", theme);
  } catch {
    // not kept: private mode
  }
}

function initTheme() {
  const now = document.documentElement.dataset.theme || "system";
  applyTheme(now);
  $("#theme-btn").addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme || "system";
    applyTheme(THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length]);
  });
}

function initNotifications() {
  const button = $("#notify-btn");
  if (!("Notification" in window)) {
    button.hidden = true;
    return;
  }
  const show = () => button.setAttribute("aria-pressed", String(Notification.permission === "granted"));
  show();
  button.addEventListener("click", async () => {
    if (Notification.permission === "denied") toast("Notifications are blocked in this browser's site settings.");
    else if (Notification.permission === "granted") toast("You will be notified when a job ends while this tab is hidden.");
    else await Notification.requestPermission();
    show();
  });
}

// -- start -----------------------------------------------------------------------------------------------------------

async function boot() {
  initTheme();
  initNotifications();
  onAuthNeeded(showLogin);
  $("#login-form").addEventListener("submit", login);
  $("#login").addEventListener("cancel", (e) => e.preventDefault()); // nothing works without logging in
  $("#logout-btn").addEventListener("click", logout);
  live.init(ctx);
  gen.init(ctx);
  ctx.on("seed", (seed) => gen.rememberSeed(seed));
  window.addEventListener("hashchange", route);
  route();
  try {
    await loadMe();
    await gen.load();
  } catch (e) {
    toast(`The server did not answer: ${e.message}`, "error", 30);
    return;
  }
  performance.mark("sdrest-ready");
  ctx.emit("ready");
  if (current !== "generate" && mounted[current]) mounted[current].show();
  live.resume();
}

boot();
