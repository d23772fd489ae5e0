// System: the server's health, the worker's state, versions and backend, and (for admins) memory, devices, disks
// and the accounts (accounts.js).

import * as accounts from "./accounts.js";
import { api } from "./api.js";
import { $, fmtBytes, h, stem } from "./dom.js";

let ctx;
let timer = null;

export function mount(root, context) {
  ctx = context;
  root.classList.add("system");
  root.append(
    h("section", { class: "panel", "aria-labelledby": "s-health-title" }, h("h2", { id: "s-health-title" }, "Health"), h("dl", { id: "s-health", class: "params" })),
    h("section", { class: "panel", "aria-labelledby": "s-version-title" }, h("h2", { id: "s-version-title" }, "Version"), h("dl", { id: "s-version", class: "params" })),
    h("section", { class: "panel", "data-admin": true, "aria-labelledby": "s-machine-title" },
      h("h2", { id: "s-machine-title" }, "Machine"), h("div", { id: "s-machine" })),
  );
  accounts.mount(root);
}

export function show() {
  refresh();
  // Read once per visit, not with the 5 s refresh, which would redraw the lists under the admin's hands.
  if (ctx.me && ctx.me.role === "admin") accounts.refresh(ctx.me).catch(() => {});
}

export function hide() {
  clearTimeout(timer);
}

const dl = (el, rows) => el.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));

function meter(label, used, total) {
  const fraction = total ? used / total : 0;
  return h("div", { class: "meter" },
    h("div", { class: "meter-label" }, h("span", {}, label), h("span", { class: "meta" }, `${fmtBytes(used)} used of ${fmtBytes(total)}`)),
    h("progress", { max: 1, value: fraction, "aria-label": `${label}: ${Math.round(fraction * 100)} % used` }));
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [health, version] = await Promise.all([api("health"), api("version")]);
    const w = health.worker;
    dl($("#s-health"), [
      ["status", h("span", { class: `status ${health.status}` }, health.status)],
      ["worker", w.state],
      ["loaded model", w.model ? stem(w.model) : "none"],
      ["worker memory", w.memory_bytes ? fmtBytes(w.memory_bytes) : "—"],
      ["queue", `${health.queue.length} waiting${health.queue.running ? ", one running" : ""}`],
      ["last error", w.last_error || health.engine_error || "none"],
    ]);
    dl($("#s-version"), [
      ["sdrest", version.sdrest],
      ["binding", version.binding],
      ["stable-diffusion.cpp", version.sd_cpp],
      ["backend", version.backend],
      ["compiled in", (version.backends || []).join(", ")],
    ]);
    if (ctx.me && ctx.me.role === "admin") await machine();
  } catch {
    // the next refresh tries again
  }
  if (!$("#view-system").hidden) timer = setTimeout(refresh, 5000);
}

async function machine() {
  const s = await api("system");
  const devices = (s.devices || []).map((d) =>
    d.total ? meter(d.name || d.description || "device", d.total - (d.free || 0), d.total) : h("p", {}, d.name || JSON.stringify(d)));
  const disks = Object.entries(s.disks || {}).map(([name, d]) => meter(`${name} disk (${d.path})`, d.total - d.free, d.total));
  $("#s-machine").replaceChildren(
    h("dl", { class: "params" },
      h("dt", {}, "CPU"), h("dd", {}, `${s.cpu.model || "?"} · ${s.cpu.logical_cores} threads${s.cpu.physical_cores ? `, ${s.cpu.physical_cores} cores` : ""}`),
      h("dt", {}, "backend"), h("dd", {}, s.backend || "—")),
    meter("memory", s.memory.total - s.memory.available, s.memory.total),
    ...devices,
    ...disks,
  );
}
