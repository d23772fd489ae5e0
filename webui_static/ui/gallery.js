// The gallery: past jobs with thumbnails, paged, filtered by model, status and prompt text; a job's images with their
// parameters, "reuse parameters", download one or all, delete.

import { api, href } from "./api.js";
import { $, download, fillSelect, fmtDate, h, stem, toast } from "./dom.js";
import { outputFigure } from "./live.js";
import { zip } from "./zip.js";

const PAGE = 24;
const BATCH = 100; // jobs read per request (the server filters them)
const MEDIA_KINDS = ["txt2img", "img2img", "upscale", "video"];

let ctx;
let root;
let jobs = []; // the jobs read so far (all of them pass the filters)
let offset = 0; // how many jobs the server has given so far
let exhausted = false;
let page = 0;
let stale = true;
const models = new Set();

export function mount(el, context) {
  ctx = context;
  root = el;
  root.append(
    h("div", { class: "panel toolbar" },
      h("div", { class: "field grow" }, h("label", { for: "g-search" }, "Search prompts"),
        h("input", { id: "g-search", type: "search", placeholder: "text in the prompt", oninput: debounce(reset, 250) })),
      h("div", { class: "field" }, h("label", { for: "g-model" }, "Model"), h("select", { id: "g-model", onchange: reset })),
      h("div", { class: "field" }, h("label", { for: "g-status" }, "Status"),
        h("select", { id: "g-status", onchange: reset },
          h("option", { value: "completed" }, "Completed"), h("option", { value: "" }, "All"),
          h("option", { value: "failed" }, "Failed"), h("option", { value: "cancelled" }, "Cancelled"))),
      h("button", { type: "button", class: "end", onclick: reset }, "Refresh"),
    ),
    h("ul", { id: "g-tiles", class: "tiles", "aria-label": "Jobs" }),
    h("p", { id: "g-empty", class: "empty", hidden: true }, "No jobs yet."),
    h("nav", { class: "pager", "aria-label": "Gallery pages" },
      h("button", { type: "button", id: "g-prev", onclick: () => go(page - 1) }, "‹ Newer"),
      h("span", { id: "g-page", "aria-live": "polite" }),
      h("button", { type: "button", id: "g-next", onclick: () => go(page + 1) }, "Older ›"),
    ),
  );
  ctx.on("job-done", () => (stale = true));
  ctx.on("auth", () => (stale = true));
}

export function show() {
  if (stale) reset();
}

function debounce(fn, ms) {
  let timer;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

/** GET /api/v1/jobs's filters for the toolbar's values. */
function filters() {
  const query = new URLSearchParams({ kind: MEDIA_KINDS.join(",") });
  const status = $("#g-status").value;
  const model = $("#g-model").value;
  const text = $("#g-search").value.trim();
  if (status) query.set("status", status);
  if (model) query.set("model", model);
  if (text) query.set("q", text);
  return query;
}

async function reset() {
  jobs = [];
  offset = 0;
  exhausted = false;
  stale = false;
  page = 0;
  await go(0);
}

async function fill(count) {
  const query = filters();
  while (jobs.length < count && !exhausted) {
    const answer = await api(`jobs?${query}&limit=${BATCH}&offset=${offset}`);
    offset += answer.jobs.length;
    exhausted = answer.jobs.length < BATCH || offset >= answer.total;
    jobs.push(...answer.jobs);
    for (const job of answer.jobs) if (job.model && !models.has(job.model)) models.add(job.model);
  }
  fillSelect($("#g-model"), [...models].sort().map((m) => [m, stem(m)]), { empty: "All models" });
}

async function go(n) {
  if (n < 0) return;
  try {
    await fill((n + 1) * PAGE + 1);
  } catch (e) {
    toast(e.message, "error");
    return;
  }
  if (n > 0 && n * PAGE >= jobs.length) return;
  page = n;
  const shown = jobs.slice(page * PAGE, (page + 1) * PAGE);
  $("#g-tiles").replaceChildren(...shown.map(tile));
  $("#g-empty").hidden = shown.length > 0;
  const more = jobs.length > (page + 1) * PAGE;
  $("#g-prev").disabled = page === 0;
  $("#g-next").disabled = !more;
  const pages = exhausted ? Math.max(1, Math.ceil(jobs.length / PAGE)) : null;
  $("#g-page").textContent = pages ? `Page ${page + 1} of ${pages}` : `Page ${page + 1}`;
}

function tile(job) {
  const first = (job.outputs || [])[0];
  const prompt = (job.params && job.params.prompt) || job.kind;
  const picture = first && first.media_type.startsWith("image/")
    ? h("img", { src: `${href(first.url)}?thumb=1&size=256`, loading: "lazy", decoding: "async", alt: "", width: 256, height: 256 })
    : h("span", { class: "placeholder" }, first ? "video" : job.status);
  const count = (job.outputs || []).length;
  return h("li", {},
    h("button", { type: "button", class: `tile ${job.status}`, "aria-label": `Open: ${prompt}`, onclick: () => open(job) },
      picture,
      count > 1 ? h("span", { class: "badge count" }, String(count)) : null,
      h("span", { class: "cap" }, prompt),
    ),
  );
}

// -- one job ---------------------------------------------------------------------------------------------------------

const SHOWN = ["prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg_scale", "guidance", "sampling_method",
  "scheduler", "strength", "mode", "batch_count", "clip_skip", "frames", "fps", "factor", "output_format"];

function value(v) {
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function open(job) {
  const dialog = $("#detail");
  const params = job.params || {};
  const rows = [["model", job.model ? stem(job.model) : "—"], ["created", fmtDate(job.created_at)],
    ...SHOWN.filter((k) => params[k] !== undefined && params[k] !== null && params[k] !== "").map((k) => [k, value(params[k])]),
    ...Object.keys(params).filter((k) => !SHOWN.includes(k) && k !== "model" && params[k] !== null && typeof params[k] === "object")
      .map((k) => [k, value(params[k])])];
  if (job.timings && job.timings.generate) rows.push(["time", `${job.timings.generate.toFixed(1)} s`]);
  if (job.error) rows.push(["error", job.error.message]);
  const del = h("button", { type: "button", class: "danger", onclick: () => remove(job, del) }, "Delete");
  dialog.replaceChildren(
    h("div", { class: "detail-head" },
      h("h2", { id: "detail-title" }, `${job.kind} · ${job.status}`),
      h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: () => dialog.close() }, "×")),
    h("div", { class: "detail-body" },
      h("div", { class: "outputs" }, ...(job.outputs || []).map((o) => outputFigure(job, o))),
      h("dl", { class: "params" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    ),
    h("div", { class: "detail-actions btns" },
      MEDIA_KINDS.includes(job.kind) && job.kind !== "upscale"
        ? h("button", { type: "button", class: "primary", onclick: () => { dialog.close(); ctx.reuse(job); } }, "Reuse parameters")
        : null,
      (job.outputs || []).length ? h("button", { type: "button", onclick: () => downloadAll(job) }, "Download all") : null,
      del,
    ),
  );
  dialog.showModal();
}

async function downloadAll(job) {
  const outputs = job.outputs || [];
  if (outputs.length === 1) return download(href(outputs[0].url), outputs[0].filename);
  try {
    const files = await Promise.all(outputs.map(async (o) => {
      const response = await api(href(o.url).replace(/^api\/v1\//, ""), { raw: true });
      return { name: o.filename, bytes: new Uint8Array(await response.arrayBuffer()) };
    }));
    download(zip(files), `sdrest-${job.id.slice(0, 8)}.zip`);
  } catch (e) {
    toast(e.message, "error");
  }
}

async function remove(job, button) {
  if (!button.dataset.armed) {
    // A second click confirms; no blocking confirm() box.
    button.dataset.armed = "1";
    button.textContent = "Really delete?";
    setTimeout(() => {
      delete button.dataset.armed;
      button.textContent = "Delete";
    }, 4000);
    return;
  }
  try {
    await api(`jobs/${job.id}`, { method: "DELETE" });
    $("#detail").close();
    toast("Deleted", "ok");
    jobs = jobs.filter((j) => j.id !== job.id);
    offset -= 1; // the server's list lost one before the next page
    go(Math.min(page, Math.max(0, Math.ceil(jobs.length / PAGE) - 1)));
  } catch (e) {
    toast(e.message, "error");
  }
}
