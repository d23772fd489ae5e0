// Model management: the library by role and architecture (warnings, missing companions), inspecting one, load and
// unload, hashing and converting with progress, downloads from Hugging Face with progress and cancel, and the saved
// presets and prompt templates. Everything that changes something is the admin's; others see the library only.

import { api, watch } from "./api.js";
import { $, $$, fillSelect, fmtBytes, h, stem, toast } from "./dom.js";

const TYPES = ["q8_0", "q6_k", "q5_k", "q5_0", "q4_k", "q4_0", "q3_k", "q2_k", "f16", "bf16", "f32", "q5_1", "q4_1",
  "iq4_xs", "iq4_nl", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_s", "iq1_m", "tq1_0", "tq2_0", "mxfp4"];
const ROLE_NAMES = { checkpoint: "Checkpoints", diffusion_model: "Diffusion models", vae: "VAEs", taesd: "Tiny autoencoders",
  text_encoder: "Text encoders", clip_vision: "CLIP vision", lora: "LoRAs", controlnet: "ControlNets", upscaler: "Upscalers",
  embedding: "Embeddings", photomaker: "PhotoMaker", unknown: "Unknown" };
const GENERATING = ["checkpoint", "diffusion_model"];

let ctx;
let library = [];
let stale = true;

export function mount(root, context) {
  ctx = context;
  root.classList.add("models");
  const left = h("div", { class: "column" });
  const right = h("div", { class: "column" });
  root.append(left, right);
  left.append(
    h("section", { class: "panel worker", "aria-label": "Worker" },
      h("p", {}, "Loaded: ", h("b", { id: "m-loaded" }, "—"), " ", h("span", { id: "m-state", class: "meta" })),
      h("button", { type: "button", class: "small", id: "m-unload", "data-admin": true, onclick: unload }, "Unload"),
    ),
    h("section", { class: "panel", "aria-labelledby": "m-lib-title" },
      h("h2", { id: "m-lib-title" }, "Library ", h("span", { id: "m-count", class: "badge" })),
      h("div", { class: "toolbar" },
        h("div", { class: "field grow" }, h("label", { for: "m-search" }, "Search"),
          h("input", { id: "m-search", type: "search", placeholder: "name", oninput: render })),
        h("div", { class: "field" }, h("label", { for: "m-role" }, "Role"), h("select", { id: "m-role", onchange: render })),
        h("div", { class: "field" }, h("label", { for: "m-arch" }, "Architecture"), h("select", { id: "m-arch", onchange: render })),
        h("button", { type: "button", class: "end", "data-admin": true, onclick: rescan }, "Rescan"),
      ),
      h("div", { id: "m-list" }),
    ),
  );
  right.append(
    h("section", { class: "panel", "data-admin": true, "aria-labelledby": "m-dl-title" },
      h("h2", { id: "m-dl-title" }, "Download from Hugging Face"),
      h("form", { id: "m-dl", class: "toolbar", onsubmit: startDownload },
        h("div", { class: "field grow" }, h("label", { for: "m-repo" }, "Repository"),
          h("input", { id: "m-repo", placeholder: "owner/name", autocomplete: "off", required: true })),
        h("button", { type: "button", class: "end", onclick: listRemote }, "List files"),
        h("div", { class: "field grow" }, h("label", { for: "m-file" }, "File"),
          h("input", { id: "m-file", list: "m-files", placeholder: "model.safetensors", autocomplete: "off", required: true }),
          h("datalist", { id: "m-files" })),
        h("div", { class: "field" }, h("label", { for: "m-dl-role" }, "Folder"),
          h("select", { id: "m-dl-role" }, h("option", { value: "" }, "By its header"),
            ...Object.keys(ROLE_NAMES).filter((r) => r !== "unknown").map((r) => h("option", { value: r }, ROLE_NAMES[r])))),
        h("button", { type: "submit", class: "primary end" }, "Download"),
      ),
      h("p", { id: "m-dl-error", class: "field-error", hidden: true }),
    ),
    h("section", { class: "panel", "data-admin": true, "aria-labelledby": "m-tasks-title" },
      h("h2", { id: "m-tasks-title" }, "Tasks"),
      h("ul", { id: "m-tasks", class: "tasks" }),
      h("p", { id: "m-tasks-empty", class: "empty" }, "Downloads, conversions, hashes and loads you start show here."),
    ),
    h("section", { class: "panel", "aria-labelledby": "m-saved-title" },
      h("h2", { id: "m-saved-title" }, "Presets and prompt templates"),
      h("div", { class: "toolbar" },
        h("div", { class: "field" }, h("label", { for: "p-kind" }, "Kind"),
          h("select", { id: "p-kind", onchange: listSaved },
            h("option", { value: "presets" }, "Presets"), h("option", { value: "prompts" }, "Prompts"),
            h("option", { value: "neg_prompts" }, "Negative prompts"))),
        h("div", { class: "field grow" }, h("label", { for: "p-names" }, "Saved"), h("select", { id: "p-names", onchange: readSaved })),
      ),
      h("div", { class: "field" }, h("label", { for: "p-name" }, "Name"), h("input", { id: "p-name", maxlength: 100, autocomplete: "off" })),
      h("div", { class: "field" }, h("label", { for: "p-value" }, "Content"),
        h("textarea", { id: "p-value", rows: 5, spellcheck: "false" })),
      h("p", { id: "p-error", class: "field-error", hidden: true }),
      h("div", { class: "btns", "data-admin": true },
        h("button", { type: "button", class: "primary", onclick: () => writeSaved("POST") }, "Save as new"),
        h("button", { type: "button", onclick: () => writeSaved("PUT") }, "Replace"),
        h("button", { type: "button", class: "danger", onclick: deleteSaved }, "Delete"),
      ),
    ),
  );
  ctx.on("auth", () => (stale = true));
}

export async function show() {
  refreshWorker();
  if (stale) {
    stale = false;
    await load();
    listSaved();
  }
}

async function load(refresh = false) {
  try {
    library = (await api(`models?limit=1000${refresh ? "&refresh=1" : ""}`)).models;
  } catch (e) {
    return toast(e.message, "error");
  }
  ctx.emit("library", library); // the Generate form lists the same models
  const roles = [...new Set(library.map((m) => m.role))].sort();
  const archs = [...new Set(library.map((m) => m.architecture).filter(Boolean))].sort();
  fillSelect($("#m-role"), roles.map((r) => [r, ROLE_NAMES[r] || r]), { empty: "All roles" });
  fillSelect($("#m-arch"), archs.map((a) => [a, a]), { empty: "All architectures" });
  render();
}

async function refreshWorker() {
  try {
    const health = await api("health");
    const worker = health.worker;
    $("#m-loaded").textContent = worker.model ? stem(worker.model) : "no model";
    $("#m-state").textContent = `worker ${worker.state}${worker.memory_bytes ? " · " + fmtBytes(worker.memory_bytes) : ""}`;
    $("#m-unload").disabled = !worker.loaded;
  } catch {
    // shown on the next visit
  }
}

function render() {
  const text = $("#m-search").value.trim().toLowerCase();
  const role = $("#m-role").value;
  const arch = $("#m-arch").value;
  const shown = library.filter((m) => (!role || m.role === role) && (!arch || m.architecture === arch) &&
    (!text || m.name.toLowerCase().includes(text)));
  $("#m-count").textContent = shown.length === library.length ? library.length : `${shown.length} of ${library.length}`;
  const groups = Object.keys(ROLE_NAMES).map((r) => [r, shown.filter((m) => m.role === r)]).filter(([, list]) => list.length);
  $("#m-list").replaceChildren(
    ...groups.map(([r, list]) => h("section", { class: "mgroup" },
      h("h3", {}, `${ROLE_NAMES[r]} (${list.length})`),
      h("ul", { class: "mlist" }, ...list.map(row)))),
    shown.length ? "" : h("p", { class: "empty" }, library.length ? "Nothing matches." : "The library is empty: put model files in the models directory or download one."),
  );
}

function row(m) {
  const problems = [];
  if (m.broken) problems.push(h("li", { class: "error" }, `Cannot be read: ${m.error}`));
  if (m.plan_error) problems.push(h("li", { class: "error" }, `Missing: ${m.plan_error}`));
  for (const w of m.warnings || []) problems.push(h("li", { class: "warn" }, w));
  const convert = h("div", { class: "convert", hidden: true },
    h("label", { for: `cv-${m.id}` }, "Type"),
    h("select", { id: `cv-${m.id}` }, ...TYPES.map((t) => h("option", { value: t }, t))),
    h("button", { type: "button", class: "small primary", onclick: () => startTask(`Convert ${stem(m.name)}`, "models/convert",
      { model: m.name, type: $(`#cv-${m.id}`).value }) }, "Convert"));
  return h("li", { class: "mrow" + (m.broken || m.plan_error ? " bad" : "") },
    h("div", { class: "mname" }, h("b", {}, stem(m.name)), h("span", { class: "meta" }, m.name)),
    h("div", { class: "meta" }, [m.sd_version || m.architecture, fmtBytes(m.size), m.format].filter(Boolean).join(" · ")),
    problems.length ? h("ul", { class: "problems" }, ...problems) : null,
    h("div", { class: "btns" },
      h("button", { type: "button", class: "small", onclick: () => inspect(m) }, "Inspect"),
      GENERATING.includes(m.role) && m.plan
        ? h("button", { type: "button", class: "small", "data-admin": true, onclick: () => startTask(`Load ${stem(m.name)}`, `models/${m.id}/load`) }, "Load")
        : null,
      h("button", { type: "button", class: "small", "data-admin": true, onclick: () => startTask(`Hash ${stem(m.name)}`, "models/hash", { models: [m.name] }) }, "Hash"),
      m.format !== "gguf" && !m.broken
        ? h("button", { type: "button", class: "small", "data-admin": true, "aria-expanded": "false",
          onclick: (e) => { convert.hidden = !convert.hidden; e.target.setAttribute("aria-expanded", String(!convert.hidden)); } }, "Convert…")
        : null,
      h("button", { type: "button", class: "small danger", "data-admin": true, "aria-label": `Move ${stem(m.name)} to the trash`,
        onclick: (e) => trash(m, e.target) }, "Trash"),
    ),
    convert,
  );
}

async function rescan() {
  try {
    await api("models/refresh", { method: "POST" });
  } catch (e) {
    return toast(e.message, "error");
  }
  await load();
  toast("Library rescanned", "ok");
}

async function inspect(m) {
  const dialog = $("#detail");
  let d;
  try {
    d = await api(`models/${m.id}`);
  } catch (e) {
    return toast(e.message, "error");
  }
  const dl = (entries) => h("dl", { class: "params" }, ...entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  const sections = [
    h("h3", {}, "Summary"),
    dl([["name", d.name], ["role", d.role], ["architecture", d.architecture || "—"], ["sd.cpp sees", d.sd_version || "—"],
      ["format", d.format], ["size", fmtBytes(d.size)], ["id", d.id]]),
  ];
  if (d.plan) sections.push(h("h3", {}, "Loading plan"), dl(Object.entries(d.plan)));
  if (d.companions && Object.keys(d.companions).length) sections.push(h("h3", {}, "Companions"), dl(Object.entries(d.companions)));
  if (d.plan_error) sections.push(h("h3", {}, "Missing"), h("p", { class: "error" }, d.plan_error));
  if (d.warnings && d.warnings.length) sections.push(h("h3", {}, "Warnings"), h("ul", {}, ...d.warnings.map((w) => h("li", {}, w))));
  if (d.hashes) sections.push(h("h3", {}, "Hashes"), dl(Object.entries(d.hashes)));
  if (d.training && Object.keys(d.training).length) sections.push(h("h3", {}, "Training"), dl(Object.entries(d.training).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v])));
  if (d.details && Object.keys(d.details).length) sections.push(h("h3", {}, "Details"), h("pre", {}, JSON.stringify(d.details, null, 1)));
  if (d.metadata && Object.keys(d.metadata).length) sections.push(h("h3", {}, "Header metadata"), h("pre", {}, JSON.stringify(d.metadata, null, 1).slice(0, 20000)));
  dialog.replaceChildren(
    h("div", { class: "detail-head" }, h("h2", { id: "detail-title" }, stem(d.name)),
      h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: () => dialog.close() }, "×")),
    h("div", { class: "detail-body single" }, ...sections),
  );
  dialog.showModal();
}

async function trash(m, button) {
  if (!button.dataset.armed) {
    button.dataset.armed = "1";
    button.textContent = "Really?";
    setTimeout(() => {
      delete button.dataset.armed;
      button.textContent = "Trash";
    }, 4000);
    return;
  }
  try {
    await api(`models/${m.id}`, { method: "DELETE" });
    toast(`${stem(m.name)} moved to the trash`, "ok");
    load();
  } catch (e) {
    toast(e.message, "error");
  }
}

async function unload() {
  await startTask("Unload the model", "models/unload");
}

// -- tasks: load, unload, hash, convert, download, each a job with progress ------------------------------------------

async function startTask(label, path, body) {
  let job;
  try {
    job = await api(path, { method: "POST", body });
  } catch (e) {
    toast(e.message, "error");
    return null;
  }
  follow(label, job);
  return job;
}

function follow(label, job) {
  const bar = h("progress", { max: 1, value: 0, "aria-label": `${label}: progress` });
  const text = h("span", { class: "meta" }, job.status);
  const cancel = h("button", { type: "button", class: "small danger", onclick: () => api(`jobs/${job.id}/cancel`, { method: "POST" }).catch((e) => toast(e.message, "error")) }, "Cancel");
  const item = h("li", { class: "task", "data-job": job.id }, h("b", {}, label), bar, text, cancel);
  $("#m-tasks").prepend(item);
  $("#m-tasks-empty").hidden = true;
  const watcher = watch(job.id, {
    started: () => (text.textContent = "running"),
    progress: (p) => {
      if (p.total) bar.value = p.done / p.total;
      else if (p.fraction !== undefined) bar.value = p.fraction;
      const rate = p.rate ? ` · ${fmtBytes(p.rate)}/s` : "";
      text.textContent = p.total ? `${fmtBytes(p.done)} of ${fmtBytes(p.total)}${rate}` : p.done !== undefined ? `${fmtBytes(p.done)}${rate}` : "running";
    },
    end: async (type, data) => {
      cancel.remove();
      let result = data && data.result;
      if (type === "completed") bar.value = 1;
      try {
        const final = await api(`jobs/${job.id}`);
        result = final.result;
        if (final.error) data = final;
      } catch {
        // shown as it is
      }
      const where = result && result.model ? `: ${result.model}` : "";
      text.textContent = type === "failed" ? `failed: ${data && data.error ? data.error.message : ""}` : `${type}${where}`;
      item.classList.add(type);
      if (type === "completed") toast(`${label}: done${where}`, "ok");
      else if (type === "failed") toast(`${label} failed`, "error");
      else toast(`${label}: cancelled`);
      refreshWorker();
      // The task rescanned the library itself; a hash changes nothing the list shows.
      if (type === "completed" && /^(Convert|Download)/.test(label)) load();
    },
  });
}

async function listRemote() {
  const repo = $("#m-repo").value.trim();
  const error = $("#m-dl-error");
  error.hidden = true;
  if (!repo) return;
  try {
    const { files } = await api(`models/remote?repo_id=${encodeURIComponent(repo)}`);
    $("#m-files").replaceChildren(...files.map((f) => h("option", { value: f.filename }, `${f.filename} (${fmtBytes(f.size)})`)));
    toast(`${files.length} loadable file(s) in ${repo}`);
    $("#m-file").focus();
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
}

async function startDownload(e) {
  e.preventDefault();
  const error = $("#m-dl-error");
  error.hidden = true;
  const body = { repo_id: $("#m-repo").value.trim(), filename: $("#m-file").value.trim() };
  if ($("#m-dl-role").value) body.role = $("#m-dl-role").value;
  try {
    const job = await api("models/download", { method: "POST", body });
    follow(`Download ${body.filename}`, job);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

// -- presets and templates -------------------------------------------------------------------------------------------

function savedError(message) {
  const p = $("#p-error");
  p.textContent = message || "";
  p.hidden = !message;
}

async function listSaved() {
  const kind = $("#p-kind").value;
  try {
    const { names } = await api(kind);
    fillSelect($("#p-names"), names.map((n) => [n, n]), { empty: names.length ? "Choose one" : "none saved" });
  } catch (e) {
    savedError(e.message);
  }
}

async function readSaved() {
  const name = $("#p-names").value;
  savedError();
  if (!name) return;
  try {
    const { value } = await api(`${$("#p-kind").value}/${encodeURIComponent(name)}`);
    $("#p-name").value = name;
    $("#p-value").value = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  } catch (e) {
    savedError(e.message);
  }
}

async function writeSaved(method) {
  const kind = $("#p-kind").value;
  const name = $("#p-name").value.trim();
  savedError();
  if (!name) return savedError("Give it a name");
  let body = $("#p-value").value;
  if (kind === "presets") {
    try {
      body = JSON.parse(body || "{}");
    } catch (e) {
      return savedError(`A preset is a JSON object of generation fields: ${e.message}`);
    }
  }
  try {
    // A preset is JSON; a template is plain text.
    const content = typeof body === "string" ? { text: body } : { body };
    await api(`${kind}/${encodeURIComponent(name)}`, { method, ...content });
    toast(`Saved ${name}`, "ok");
    ctx.emit("saved-names");
    await listSaved();
    $("#p-names").value = name;
  } catch (e) {
    savedError(e.message);
  }
}

async function deleteSaved() {
  const name = $("#p-name").value.trim() || $("#p-names").value;
  if (!name) return;
  try {
    await api(`${$("#p-kind").value}/${encodeURIComponent(name)}`, { method: "DELETE" });
    toast(`Deleted ${name}`, "ok");
    ctx.emit("saved-names");
    $("#p-name").value = "";
    $("#p-value").value = "";
    listSaved();
  } catch (e) {
    savedError(e.message);
  }
}

export function hide() {
  for (const el of $$("#m-list .convert")) el.hidden = true;
}
