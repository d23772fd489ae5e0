// Accounts (admins, on the System page): API keys — list, make one (its key shown once), revoke — and local users —
// add, change role, disable, reset a password, remove. Over /api/v1/keys and /api/v1/users; a part whose auth method
// is off says so instead.

import { api } from "./api.js";
import { $, fmtDate, h, toast } from "./dom.js";
import { clearErrors, showError } from "./errors.js";

const ROLES = ["user", "admin", "guest"];
let me = null;

const roleSelect = (id, value, onchange) =>
  h("select", { id, onchange }, ...ROLES.map((r) => h("option", { value: r, selected: r === value }, r)));

export function mount(root) {
  root.append(
    h("section", { class: "panel", "data-admin": true, "aria-labelledby": "a-keys-title" },
      h("h2", { id: "a-keys-title" }, "API keys"),
      h("p", { id: "a-keys-off", class: "hint", hidden: true }, "API keys are off: add api_key to the auth setting."),
      h("form", { id: "a-key-form", class: "toolbar", onsubmit: createKey },
        h("div", { class: "field grow", "data-field": "name" }, h("label", { for: "a-key-name" }, "Name"),
          h("input", { id: "a-key-name", required: true, autocomplete: "off", placeholder: "e.g. home-assistant" })),
        h("div", { class: "field" }, h("label", { for: "a-key-role" }, "Role"), roleSelect("a-key-role", "user")),
        h("div", { class: "field", "data-field": "expires_days" }, h("label", { for: "a-key-days" }, "Expires in days"),
          h("input", { id: "a-key-days", type: "number", min: 1, placeholder: "never" })),
        h("button", { type: "submit", class: "primary end" }, "Make key"),
      ),
      h("p", { id: "a-key-error", class: "field-error", hidden: true }),
      h("div", { id: "a-key-made", class: "made", hidden: true }),
      h("ul", { id: "a-keys", class: "mlist" }),
    ),
    h("section", { class: "panel", "data-admin": true, "aria-labelledby": "a-users-title" },
      h("h2", { id: "a-users-title" }, "Users"),
      h("p", { id: "a-users-off", class: "hint", hidden: true }, "Local users are off: add jwt to the auth setting."),
      h("form", { id: "a-user-form", class: "toolbar", onsubmit: addUser },
        h("div", { class: "field grow", "data-field": "name" }, h("label", { for: "a-user-name" }, "Name"),
          h("input", { id: "a-user-name", required: true, autocomplete: "off" })),
        h("div", { class: "field grow", "data-field": "password" }, h("label", { for: "a-user-password" }, "Password"),
          h("input", { id: "a-user-password", type: "password", required: true, autocomplete: "new-password" })),
        h("div", { class: "field" }, h("label", { for: "a-user-role" }, "Role"), roleSelect("a-user-role", "user")),
        h("button", { type: "submit", class: "primary end" }, "Add user"),
      ),
      h("p", { id: "a-user-error", class: "field-error", hidden: true }),
      h("ul", { id: "a-users", class: "mlist" }),
    ),
  );
}

/** Read both lists again (the System page calls this for admins). */
export async function refresh(principal) {
  me = principal;
  const [keys, users] = await Promise.all([api("keys"), api("users")]);
  for (const [part, answer] of [["key", keys], ["user", users]]) {
    $(`#a-${part}s-off`).hidden = answer.enabled;
    $(`#a-${part}-form`).hidden = !answer.enabled;
  }
  $("#a-keys").replaceChildren(...keys.keys.map(keyRow));
  $("#a-users").replaceChildren(...users.users.map(userRow));
}

function keyRow(k) {
  const state = k.revoked ? "revoked" : k.expires_at ? `expires ${fmtDate(k.expires_at)}` : "never expires";
  return h("li", { class: "mrow" + (k.revoked ? " bad" : "") },
    h("div", { class: "mname" }, h("b", {}, k.name), h("span", { class: "meta" }, `${k.prefix}… · ${k.role}`)),
    h("div", { class: "meta" }, `${state} · last used ${fmtDate(k.last_used_at)}${k.source === "file" ? " · from the key file" : ""}`),
    k.revoked || k.source === "file" ? null : h("div", { class: "btns" },
      h("button", { type: "button", class: "small danger", "aria-label": `Revoke key ${k.name}`, onclick: () => revokeKey(k) }, "Revoke")),
  );
}

function userRow(u) {
  const self = me && me.name === u.name;
  const change = (body, done) => act(() => api(`users/${encodeURIComponent(u.name)}`, { method: "PATCH", body }), done);
  return h("li", { class: "mrow" + (u.disabled ? " bad" : "") },
    h("div", { class: "mname" }, h("b", {}, u.name), h("span", { class: "meta" }, `since ${fmtDate(u.created_at)}${self ? " · you" : ""}`)),
    h("div", { class: "btns" },
      h("label", { for: `a-role-${u.name}`, class: "meta" }, "Role"),
      self ? h("span", {}, u.role) : roleSelect(`a-role-${u.name}`, u.role, (e) => change({ role: e.target.value }, `${u.name} is now ${e.target.value}`)),
      self ? null : h("button", { type: "button", class: "small", onclick: () => change({ disabled: !u.disabled }, `${u.name} ${u.disabled ? "enabled" : "disabled"}`) },
        u.disabled ? "Enable" : "Disable"),
      h("button", { type: "button", class: "small", onclick: () => resetPassword(u, change) }, "New password"),
      self ? null : h("button", { type: "button", class: "small danger", "aria-label": `Remove user ${u.name}`, onclick: () => removeUser(u) }, "Remove"),
    ),
  );
}

/** Run a change, say so, and read the lists again. */
async function act(request, done) {
  try {
    await request();
    toast(done, "ok");
  } catch (e) {
    toast(e.message, "error");
  }
  await refresh(me).catch(() => {});
}

async function createKey(e) {
  e.preventDefault();
  const form = $("#a-key-form");
  clearErrors(form, $("#a-key-error"));
  const days = Number($("#a-key-days").value) || undefined;
  try {
    const made = await api("keys", { method: "POST", body: { name: $("#a-key-name").value.trim(), role: $("#a-key-role").value, expires_days: days } });
    const box = $("#a-key-made");
    box.replaceChildren(
      h("p", {}, `The key for ${made.record.name}, shown this once: copy it now.`),
      h("code", { id: "a-key-secret" }, made.key),
      h("button", { type: "button", class: "small", onclick: () => navigator.clipboard?.writeText(made.key).then(() => toast("Copied", "ok")) }, "Copy"),
      h("button", { type: "button", class: "small", onclick: () => (box.hidden = true) }, "Done"),
    );
    box.hidden = false;
    form.reset();
    await refresh(me);
  } catch (err) {
    showError(form, $("#a-key-error"), err);
  }
}

function revokeKey(k) {
  if (!confirm(`Revoke the key ${k.name}? Whatever uses it stops working.`)) return;
  act(() => api(`keys/${encodeURIComponent(k.id)}`, { method: "DELETE" }), `Revoked ${k.name}`);
}

async function addUser(e) {
  e.preventDefault();
  const form = $("#a-user-form");
  clearErrors(form, $("#a-user-error"));
  const body = { name: $("#a-user-name").value.trim(), password: $("#a-user-password").value, role: $("#a-user-role").value };
  try {
    await api("users", { method: "POST", body });
    toast(`Added ${body.name}`, "ok");
    form.reset();
    await refresh(me);
  } catch (err) {
    showError(form, $("#a-user-error"), err);
  }
}

function resetPassword(u, change) {
  const password = prompt(`A new password for ${u.name} (their sessions end):`);
  if (password) change({ password }, `New password for ${u.name}`);
}

function removeUser(u) {
  if (!confirm(`Remove ${u.name}? Their sessions end; their jobs stay.`)) return;
  act(() => api(`users/${encodeURIComponent(u.name)}`, { method: "DELETE" }), `Removed ${u.name}`);
}
