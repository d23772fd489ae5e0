// Live jobs: the queue with positions, the running job's steps, it/s, ETA and previews (over SSE), cancelling, the
// finished job's outputs, and a toast (plus a browser notification when allowed) when a job ends.

import { api, href, TERMINAL, watch } from "./api.js";
import { $, fmtSeconds, h, stem, toast } from "./dom.js";
import { draggable, fromOutput } from "./images.js";

let ctx;
const tracked = new Map(); // job id → entry
const labels = new Map(); // job id → short description, for the queue list
let focus = null; // the entry the Result panel shows
let queueTimer = null;

export function init(context) {
  ctx = context;
}

/** Pick up where the server is: the running job (if any) is followed in the Result panel. */
export async function resume() {
  const queue = await refreshQueue();
  if (queue && queue.running && !tracked.has(queue.running)) {
    try {
      track(await api(`jobs/${queue.running}`), { quiet: true });
    } catch {
      // finished in the meantime
    }
  }
}

function describe(job) {
  const p = job.params || {};
  const what = p.prompt ? `“${p.prompt.slice(0, 60)}${p.prompt.length > 60 ? "…" : ""}”` : job.kind;
  return job.model ? `${what} · ${stem(job.model)}` : what;
}

const active = (entry) => entry && !TERMINAL.includes(entry.status);

/** Follow a job the user just started (or found running). */
export function track(job, { quiet = false } = {}) {
  const entry = { id: job.id, job, status: job.status, position: job.position, phase: job.status, progress: job.progress || null,
    preview: null, quiet };
  tracked.set(job.id, entry);
  labels.set(job.id, describe(job));
  if (!active(focus) || job.status === "running") show(entry);
  entry.watcher = watch(job.id, {
    queued: (d) => update(entry, { phase: "queued", position: d.position }),
    started: (d) => {
      update(entry, { phase: "started", status: "running", progress: d.progress || entry.progress });
      if (!active(focus) || focus.status !== "running") show(entry);
      refreshQueue();
    },
    loading: () => update(entry, { phase: "loading" }),
    loaded: () => update(entry, { phase: "loaded" }),
    hashing: (d) => update(entry, { phase: "hashing", hashing: d }),
    progress: (d) => update(entry, { phase: "running", status: "running", progress: d }),
    preview: (d) => update(entry, { preview: d.image, previewStep: d.step }),
    end: (type, data) => finished(entry, type, data),
  });
  refreshQueue();
  return entry;
}

function update(entry, changes) {
  Object.assign(entry, changes);
  if (entry === focus) render(entry);
}

async function finished(entry, type, data) {
  entry.status = type;
  entry.phase = type;
  try {
    entry.job = await api(`jobs/${entry.id}`);
  } catch {
    entry.job = { ...entry.job, status: type, error: data && data.error };
  }
  if (entry === focus) render(entry);
  const label = labels.get(entry.id);
  if (type === "completed") toast(`Done: ${label}`, "ok");
  else if (type === "failed") toast(`Failed: ${(entry.job.error && entry.job.error.message) || label}`, "error", 10);
  else toast(`Cancelled: ${label}`);
  notify(type, label);
  ctx.emit("job-done", entry.job);
  refreshQueue();
}

function notify(type, label) {
  if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
  try {
    new Notification(`sdrest: job ${type}`, { body: label, icon: "ui/icon.svg" });
  } catch {
    // some mobile browsers only notify from a service worker
  }
}

export async function cancel(id) {
  try {
    await api(`jobs/${id}/cancel`, { method: "POST" });
  } catch (e) {
    toast(e.message, "error");
  }
  refreshQueue();
}

// -- the Result panel ------------------------------------------------------------------------------------------------

function show(entry) {
  focus = entry;
  entry.view = entry.view || build(entry);
  $("#current-body").replaceChildren(entry.view.root);
  render(entry);
}

function build(entry) {
  const v = {};
  v.title = h("p", { class: "job-title" });
  v.state = h("p", { class: "job-state", "aria-live": "polite" });
  v.bar = h("progress", { max: 1, value: 0, "aria-label": "Progress" });
  v.numbers = h("p", { class: "job-numbers" });
  v.preview = h("img", { class: "preview", alt: "Live preview", hidden: true });
  v.cancel = h("button", { type: "button", class: "danger small", onclick: () => cancel(entry.id) }, "Cancel");
  v.outputs = h("div", { class: "outputs" });
  v.message = h("p", { class: "job-message" });
  v.root = h("div", { class: "job" }, v.title, h("div", { class: "job-line" }, v.state, v.cancel), v.bar, v.numbers,
    v.preview, v.message, v.outputs);
  return v;
}

const PHASES = { queued: "Queued", started: "Starting", loading: "Loading the model…", loaded: "Model loaded",
  hashing: "Hashing the model (first use)…", running: "Generating", completed: "Done", failed: "Failed",
  cancelled: "Cancelled" };

function render(entry) {
  const v = entry.view;
  if (!v) return;
  const job = entry.job;
  const running = active(entry);
  v.title.textContent = `${job.kind} · ${labels.get(entry.id)}`;
  let state = PHASES[entry.phase] || entry.phase;
  if (entry.phase === "queued" && entry.position) state = `Queued · position ${entry.position}`;
  v.state.textContent = state;
  v.cancel.hidden = !running;
  const p = entry.progress;
  v.bar.hidden = !running && entry.status !== "completed";
  if (entry.status === "completed") v.bar.value = 1;
  else if (entry.phase === "hashing" && entry.hashing && entry.hashing.total) v.bar.value = entry.hashing.done / entry.hashing.total;
  else v.bar.value = p ? p.fraction || 0 : 0;
  v.bar.textContent = `${Math.round(v.bar.value * 100)} %`;
  const numbers = [];
  if (p && p.steps) numbers.push(`Step ${p.step} of ${p.steps}`);
  if (p && p.images > 1) numbers.push(`image ${p.image} of ${p.images}`);
  if (p && p.total) numbers.push(`${Math.round((p.done / p.total) * 100)} %`);
  if (running && p && p.it_per_s) numbers.push(`${p.it_per_s.toFixed(2)} it/s`);
  if (running && p && p.eta_seconds !== undefined && p.eta_seconds !== null) numbers.push(`ETA ${fmtSeconds(p.eta_seconds)}`);
  if (!running && job.timings && job.timings.generate) numbers.push(`${job.timings.generate.toFixed(1)} s`);
  v.numbers.textContent = numbers.join(" · ");
  v.bar.setAttribute("aria-valuetext", `${Math.round(v.bar.value * 100)} %`);
  const showPreview = running && entry.preview;
  v.preview.hidden = !showPreview;
  const params = job.params || {};
  if (params.width && params.height) v.preview.style.aspectRatio = `${params.width} / ${params.height}`;
  if (showPreview && v.preview.src !== entry.preview) {
    v.preview.src = entry.preview;
    v.preview.alt = `Live preview, step ${entry.previewStep}`;
  }
  const messages = [];
  if (job.error) messages.push(job.error.message);
  if (job.warnings && job.warnings.length) messages.push(...job.warnings);
  v.message.textContent = messages.join(" · ");
  v.message.className = "job-message" + (job.error ? " error" : "");
  if (entry.status === "completed" && !v.outputs.childElementCount) {
    v.outputs.append(...(job.outputs || []).map((o) => outputFigure(job, o)));
    const first = (job.outputs || [])[0];
    if (first) ctx.emit("seed", first.seed);
  }
}

/** One output with its actions: use as input, download, open. Shared with the gallery. */
export function outputFigure(job, output) {
  const url = href(output.url);
  const isVideo = output.media_type.startsWith("video/");
  const media = isVideo
    ? h("video", { src: url, controls: true, loop: true, muted: true, playsinline: true, "aria-label": `Video ${output.filename}` })
    : h("img", { src: url, alt: `Output ${output.filename}, seed ${output.seed}`, width: output.width, height: output.height, decoding: "async" });
  const item = fromOutput(job.id, output, url);
  if (!isVideo) draggable(media, item);
  const actions = h("div", { class: "btns" },
    !isVideo && h("button", { type: "button", class: "small", onclick: () => ctx.useAsInput(item) }, "Use as input"),
    h("a", { class: "btn small", href: url, download: output.filename }, "Download"),
    h("a", { class: "btn small ghost", href: url, target: "_blank", rel: "noopener" }, "Open"),
  );
  return h("figure", { class: "output" }, media,
    h("figcaption", {}, h("span", { class: "meta" }, `${output.width}×${output.height} · seed ${output.seed}`), actions));
}

// -- the queue -------------------------------------------------------------------------------------------------------

export async function refreshQueue() {
  clearTimeout(queueTimer);
  let queue = null;
  try {
    queue = await api("queue");
  } catch {
    queueTimer = setTimeout(refreshQueue, 5000);
    return null;
  }
  const rows = [];
  if (queue.running) rows.push({ id: queue.running, position: 0, progress: queue.progress });
  rows.push(...queue.queued);
  const unknown = rows.filter((r) => !labels.has(r.id)).slice(0, 10);
  await Promise.all(unknown.map(async (r) => {
    try {
      labels.set(r.id, describe(await api(`jobs/${r.id}`)));
    } catch {
      labels.set(r.id, r.id.slice(0, 8));
    }
  }));
  $("#queue-list").replaceChildren(...rows.map((r) => h("li", { class: r.position ? "" : "running" },
    h("span", { class: "pos", "aria-label": r.position ? `position ${r.position}` : "running" }, r.position ? `#${r.position}` : "▶"),
    h("span", { class: "what" }, labels.get(r.id) || r.id.slice(0, 8),
      r.progress && r.progress.fraction !== undefined ? h("span", { class: "meta" }, ` · ${Math.round(r.progress.fraction * 100)} %`) : null),
    h("button", { type: "button", class: "small ghost", "aria-label": `Cancel ${labels.get(r.id) || r.id}`, onclick: () => cancel(r.id) }, "Cancel"),
  )));
  const hidden = queue.length - queue.queued.length; // others' jobs, counted but not shown
  $("#queue-empty").hidden = rows.length > 0 || hidden > 0;
  $("#queue-empty").textContent = hidden > 0 ? `${hidden} job(s) of other users waiting` : "Nothing waiting.";
  const badge = $("#queue-count");
  badge.hidden = !(queue.length || queue.running);
  badge.textContent = queue.length + (queue.running ? 1 : 0);
  // While anything is queued or running, positions change: look again soon.
  if (queue.running || queue.length || [...tracked.values()].some(active)) queueTimer = setTimeout(refreshQueue, 2000);
  return queue;
}
