// The generation form: one form for every mode (txt2img, img2img, inpainting, outpainting, ControlNet, hires fix,
// reference images, upscaling, Wan video). Its fields follow the chosen model's architecture; it builds the request
// for POST /api/v1/generate, /upscale or /video and shows the server's errors next to the field they name.

import { api, ApiError } from "./api.js";
import { archInfo, fits, snap } from "./arch.js";
import { $, $$, fillSelect, h, stem, toast } from "./dom.js";
import { clearErrors, clearOnEdit, motion, showError } from "./errors.js";
import { ImageSlot } from "./images.js";
import * as live from "./live.js";
import { insertEmbedding, Loras } from "./loras.js";
import { MaskPainter } from "./mask.js";
import { applyPreset, applyTemplate, loadNames, savePreset } from "./presets.js";

const form = $("#gen-form");
const f = (id) => $("#f-" + id);
const IMAGE_MODES = ["txt2img", "img2img", "inpaint", "outpaint"];
const HIRES_MODES = ["latent", "latent_nearest", "latent_nearest_exact", "latent_antialiased", "latent_bicubic",
  "latent_bicubic_antialiased", "lanczos", "nearest"];
const SAVED = "sdrest.form";

let library = [];
let limits = { max_side: 2048, max_pixels: 4194304, max_batch: 8 };
let arch = archInfo("");
let family = null;
let loras; // the chosen LoRAs (loras.js)
let lastSeed = null;
const slots = {};
let painter;
let ctx;

/** Wire the form (no network yet). */
export function init(context) {
  ctx = context;
  const imageError = (message) => toast(message, "error");
  slots.init = new ImageSlot($("#slot-init"), { alt: "Input image", onChange: initChanged, onError: imageError });
  slots.end = new ImageSlot($("#slot-end"), { alt: "Last frame", onError: imageError });
  slots.control = new ImageSlot($("#slot-control"), {
    alt: "Control image",
    onError: imageError,
    onChange: (slot) => (f("control-on").checked = !!slot.item),
  });
  slots.ref = new ImageSlot($("#slot-ref"), { multi: true, alt: "Reference image", onError: imageError, onChange: refsChanged });
  const canvas = h("canvas", { class: "mask", "aria-label": "Mask: paint where the image should change", hidden: true });
  slots.init.stage.append(canvas);
  painter = new MaskPainter(canvas);

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$("#view-generate").hidden && !$("#gen-btn").disabled) {
      e.preventDefault();
      submit();
    }
  });
  clearOnEdit(form);
  form.addEventListener("input", scheduleEstimate);
  form.addEventListener("change", scheduleEstimate);
  ctx.on("job-done", scheduleEstimate);
  ctx.on("ready", scheduleEstimate);
  f("model").addEventListener("change", () => modelChanged());
  ctx.on("library", (models) => {
    // The Models tab read the library again (a download, a conversion, a deletion): list what is there now.
    const current = f("model").value;
    library = models;
    delete f("model").dataset.saved; // the remembered choice was for the first load only
    fillModels(current);
    modelChanged("keep");
  });
  for (const radio of $$("input[name=mode]", form)) radio.addEventListener("change", () => setMode(radio.value));
  for (const id of ["width", "height"]) f(id).addEventListener("change", () => snapSize());
  f("aspect").addEventListener("change", () => aspect(f("aspect").value));
  $("#swap-size").addEventListener("click", () => {
    [f("width").value, f("height").value] = [f("height").value, f("width").value];
    sizeHint();
  });
  f("strength").addEventListener("input", () => ($("#strength-out").value = f("strength").value));
  $("#seed-random").addEventListener("click", () => (f("seed").value = -1));
  $("#seed-last").addEventListener("click", () => lastSeed !== null && (f("seed").value = lastSeed));
  for (const side of ["left", "right", "top", "bottom"]) f("out-" + side).addEventListener("input", outpaintHint);

  f("brush").addEventListener("input", () => {
    painter.size = Number(f("brush").value);
    $("#brush-out").value = f("brush").value;
  });
  const tool = (erasing) => {
    painter.erasing = erasing;
    $("#mask-paint").setAttribute("aria-pressed", String(!erasing));
    $("#mask-erase").setAttribute("aria-pressed", String(erasing));
  };
  $("#mask-paint").addEventListener("click", () => tool(false));
  $("#mask-erase").addEventListener("click", () => tool(true));
  $("#mask-clear").addEventListener("click", () => painter.clear());
  $("#mask-invert").addEventListener("click", () => painter.invert());

  loras = new Loras($("#lora-list"), $("#lora-count"));
  $("#lora-add").addEventListener("click", () => loras.add(f("lora-pick").value, Number(f("lora-weight").value)));
  $("#emb-add").addEventListener("click", () => insertEmbedding(f("prompt"), f("emb-pick").value, Number(f("emb-weight").value) || 1));
  f("prompt-tpl").addEventListener("change", () => applyTemplate("prompts", f("prompt-tpl"), f("prompt")));
  f("neg-tpl").addEventListener("change", () => applyTemplate("neg_prompts", f("neg-tpl"), f("negative")));
  $("#preset-apply").addEventListener("click", () => applyPreset(f("preset").value, applyParams));
  $("#preset-save").addEventListener("click", () => savePreset(f("preset-name"), presetValue()));

  // Images dropped anywhere on the form, or pasted anywhere on this view, go to the first visible slot.
  form.addEventListener("dragover", (e) => e.preventDefault());
  form.addEventListener("drop", (e) => {
    e.preventDefault();
    const slot = targetSlot();
    if (slot) slot.takeDrop(e.dataTransfer);
  });
  document.addEventListener("paste", (e) => {
    if ($("#view-generate").hidden) return;
    const files = [...(e.clipboardData?.files || [])].filter((file) => file.type.startsWith("image/"));
    if (!files.length) return;
    e.preventDefault();
    const inside = e.target.closest && e.target.closest(".slot");
    const slot = inside ? Object.values(slots).find((s) => s.el === inside) : targetSlot();
    if (slot) slot.takeFiles(files);
  });
  ctx.on("saved-names", loadNames);
  restore();
  applyVisibility();
}

/** Read the library and the server's names and limits; enables the Generate button. */
export async function load() {
  const [models, samplers, schedulers, lims, health] = await Promise.all([
    api("models?limit=1000"),
    api("samplers"),
    api("schedulers"),
    api("limits"),
    api("health"),
  ]);
  library = models.models;
  limits = lims;
  for (const id of ["width", "height"]) f(id).max = limits.max_side;
  f("batch").max = limits.max_batch;
  fillSelect(f("sampler"), samplers.names.map((n) => [n, n]), { empty: "Default" });
  fillSelect(f("scheduler"), schedulers.names.map((n) => [n, n]), { empty: "Default" });
  fillModels(health.worker.model);
  modelChanged(true);
  $("#gen-btn").disabled = ctx.me && ctx.me.role === "guest";
  loadNames();
}

function byRole(role) {
  return library.filter((m) => m.role === role && !m.broken);
}

function fillModels(loaded) {
  const select = f("model");
  const generating = library.filter((m) => (m.role === "checkpoint" || m.role === "diffusion_model") && !m.broken);
  const saved = select.dataset.saved;
  select.replaceChildren();
  if (!generating.length) select.append(h("option", { value: "" }, "No models in the library"));
  const groups = new Map();
  for (const m of generating) {
    const label = m.sd_version || m.architecture;
    if (!groups.has(label)) groups.set(label, h("optgroup", { label }));
    groups.get(label).append(h("option", { value: m.name }, stem(m.name) + (m.plan_error ? " (missing files)" : "")));
  }
  select.append(...groups.values());
  const pick = [saved, loaded, select.value].find((name) => name && generating.some((m) => m.name === name));
  const usable = generating.find((m) => !m.plan_error);
  select.value = pick || (usable ? usable.name : select.value);
}

function chosenModel() {
  return library.find((m) => m.name === f("model").value) || null;
}

function modelChanged(first = false) {
  const model = chosenModel();
  arch = archInfo(model ? model.architecture : "");
  const hint = $("#model-hint");
  hint.classList.toggle("error", !!(model && model.plan_error));
  hint.textContent = !model ? "" : model.plan_error || [model.sd_version, ...model.warnings].filter(Boolean).join(" · ");
  if (first !== "keep" && (first === true || arch.family !== family)) {
    if (!(first === true && restored)) {
      f("width").value = arch.size;
      f("height").value = arch.size;
      f("steps").value = arch.steps;
      f("cfg").value = arch.cfg;
    }
    f("sampler").options[0].textContent = `Default (${arch.sampler})`;
  }
  family = arch.family;
  for (const id of ["width", "height"]) f(id).step = arch.multiple;
  for (const side of ["left", "right", "top", "bottom"]) f("out-" + side).step = arch.multiple;
  $('[data-mode="video"]').hidden = !arch.video;
  for (const mode of IMAGE_MODES) $(`[data-mode="${mode}"]`).hidden = arch.video;
  const mode = currentMode();
  if (arch.video && mode !== "video" && mode !== "upscale") setMode("video");
  else if (!arch.video && mode === "video") setMode("txt2img");
  fillLibraryPickers();
  snapSize();
  applyVisibility();
}

function fillLibraryPickers() {
  const pick = (role, kind) =>
    byRole(role).map((m) => [m.name, stem(m.name) + (fits(m.architecture, arch.family) ? "" : ` (for ${m.architecture.replace(kind, "")})`),
      !fits(m.architecture, arch.family)]);
  fillSelect(f("lora-pick"), pick("lora", "lora_"), { empty: byRole("lora").length ? "Choose a LoRA" : "No LoRAs in the library" });
  fillSelect(f("emb-pick"), pick("embedding", "embedding_"), { empty: byRole("embedding").length ? "Choose an embedding" : "No embeddings in the library" });
  fillSelect(f("control-model"), pick("controlnet", "controlnet_"), { empty: byRole("controlnet").length ? "Choose a ControlNet" : "No ControlNets in the library" });
  const upscalers = byRole("upscaler").map((m) => [m.name, stem(m.name)]);
  fillSelect(f("up-model"), upscalers, { empty: upscalers.length ? undefined : "No upscalers in the library" });
  fillSelect(f("hires-upscaler"), [...HIRES_MODES.map((n) => [n, n]), ...upscalers]);
  fillSelect(f("vae"), byRole("vae").map((m) => [m.name, stem(m.name)]), { empty: "the plan's VAE" });
}

function currentMode() {
  return $("input[name=mode]:checked", form).value;
}

function setMode(mode) {
  const radio = $(`input[name=mode][value="${mode}"]`, form);
  if (radio) radio.checked = true;
  applyVisibility();
}

function applyVisibility() {
  const mode = currentMode();
  const image = IMAGE_MODES.includes(mode);
  const on = new Set(["advanced"]);
  const add = (...tokens) => tokens.forEach((t) => on.add(t));
  if (mode !== "upscale") add("model", "prompt", "sampling", "seed", "loras");
  if (image) add("batch", "imgformat", "tiling", "eta");
  if (["txt2img", "img2img", "inpaint", "video"].includes(mode)) add("size");
  if (["img2img", "inpaint", "outpaint"].includes(mode)) add("init", "strength");
  if (mode === "inpaint") add("mask", "maskblur");
  if (mode === "outpaint") add("outpaint", "maskblur");
  if (mode === "upscale") add("init", "upscale", "imgformat");
  if (mode === "video") add("video", "init", "end", "strength", "tiling", "flowshift");
  if (image && arch.control) add("control");
  if (mode === "txt2img") add("hires");
  if (image && arch.refs) add("ref");
  if (image && arch.unet) add("clipskip");
  if (image && arch.dit) add("flowshift");
  if (image && arch.guidance) add("guidance");
  for (const el of $$("[data-show]", form)) el.hidden = !el.dataset.show.split(" ").some((t) => on.has(t));
  $("#init-label").textContent = { upscale: "Image to upscale", video: "First frame (optional)" }[mode] || "Input image";
  $("#gen-btn").textContent = { upscale: "Upscale", video: "Make video" }[mode] || "Generate";
  painter.canvas.hidden = mode !== "inpaint";
  slots.init.el.classList.toggle("painting", mode === "inpaint");
  outpaintHint();
}

function initChanged(slot) {
  const item = slot.item;
  if (!item) return;
  painter.reset(item.width, item.height);
  if (["img2img", "inpaint", "video"].includes(currentMode())) fitTo(item.width, item.height);
  outpaintHint();
}

function refsChanged(slot) {
  const badge = $("#ref-count");
  badge.hidden = !slot.items.length;
  badge.textContent = slot.items.length;
}

/** The model's default area in the image's aspect ratio, on the model's size grid. */
function fitTo(width, height) {
  const scale = Math.sqrt((arch.size * arch.size) / (width * height));
  f("width").value = snap(width * scale, arch.multiple, limits.max_side);
  f("height").value = snap(height * scale, arch.multiple, limits.max_side);
  sizeHint();
}

function aspect(value) {
  if (!value) return;
  const [a, b] = value.split(":").map(Number);
  fitTo(a, b);
  f("aspect").value = "";
}

function snapSize() {
  const notes = [];
  for (const id of ["width", "height"]) {
    const input = f(id);
    const snapped = snap(input.value, arch.multiple, limits.max_side);
    if (String(snapped) !== input.value) {
      notes.push(`${id} ${input.value || "—"} → ${snapped}`);
      input.value = snapped;
    }
  }
  sizeHint(notes.length ? `Snapped to a multiple of ${arch.multiple}: ${notes.join(", ")}` : "");
}

function sizeHint(note = "") {
  const w = Number(f("width").value);
  const h2 = Number(f("height").value);
  const over = w * h2 > limits.max_pixels ? ` · over the ${(limits.max_pixels / 1e6).toFixed(1)} MP limit` : "";
  $("#size-hint").textContent = note || `${w}×${h2} · ${((w * h2) / 1e6).toFixed(2)} MP · multiples of ${arch.multiple}${over}`;
}

function outpaintHint() {
  const fieldset = $("fieldset[data-show=outpaint]");
  let hint = $("#outpaint-hint");
  if (!hint) fieldset.append((hint = h("p", { id: "outpaint-hint", class: "hint wide" })));
  const item = slots.init && slots.init.item;
  if (!item) return (hint.textContent = "Choose the image to extend first.");
  const side = (s) => Number(f("out-" + s).value) || 0;
  const up = (n) => Math.ceil(n / arch.multiple) * arch.multiple;
  hint.textContent = `Result: ${up(item.width + side("left") + side("right"))}×${up(item.height + side("top") + side("bottom"))}`;
}

// -- LoRAs, embeddings, templates, presets ---------------------------------------------------------------------------

/** The generation fields a preset keeps: sizes, sampling, the negative prompt, LoRAs. */
function presetValue() {
  const value = { width: +f("width").value, height: +f("height").value, steps: +f("steps").value, cfg_scale: +f("cfg").value };
  if (f("sampler").value) value.sampling_method = f("sampler").value;
  if (f("scheduler").value) value.scheduler = f("scheduler").value;
  if (f("negative").value.trim()) value.negative_prompt = f("negative").value;
  if (loras.items.length) value.loras = loras.items;
  return value;
}

// -- building and sending the request --------------------------------------------------------------------------------

function num(id) {
  const value = f(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function need(value, field, message) {
  if (!value) throw new ApiError(422, { error: { code: "validation_error", message, field: `$.${field}` } });
  return value;
}

/** [route, body] for the current form. Throws an ApiError naming a field when something is missing. */
export function build() {
  const mode = currentMode();
  const visible = (token) => !$(`[data-show~="${token}"]`, form).hidden;
  if (mode === "upscale") {
    const image = need(slots.init.item, "image", "Choose an image to upscale").value;
    return ["upscale", { image, model: f("up-model").value || undefined, factor: num("up-factor"), tile: num("up-tile"),
      output_format: f("format").value }];
  }
  const body = {
    prompt: f("prompt").value,
    negative_prompt: f("negative").value,
    model: f("model").value || undefined,
    steps: num("steps"),
    cfg_scale: num("cfg"),
    sampling_method: f("sampler").value || undefined,
    scheduler: f("scheduler").value || undefined,
    seed: num("seed") ?? -1,
  };
  if (loras.items.length) body.loras = loras.items.map((l) => ({ name: l.name, weight: l.weight }));
  if (f("vae-tiling").checked) body.vae_tiling = true;
  if (mode === "video") {
    Object.assign(body, { width: num("width"), height: num("height"), frames: num("frames"), fps: num("fps"),
      output_format: f("video-format").value, flow_shift: num("flow-shift") });
    if (slots.init.item) Object.assign(body, { init_image: slots.init.item.value, strength: num("strength") });
    if (slots.end.item) body.end_image = slots.end.item.value;
    return ["video", body];
  }
  Object.assign(body, { batch_count: num("batch"), output_format: f("format").value, eta: num("eta"),
    preview: { interval: 1 } });  // the server previews with a TAESD when the library has one
  if (mode !== "outpaint") Object.assign(body, { width: num("width"), height: num("height") });
  if (visible("guidance")) body.guidance = num("guidance");
  if (visible("clipskip") && num("clip-skip") !== -1) body.clip_skip = num("clip-skip");
  if (visible("flowshift")) body.flow_shift = num("flow-shift");
  if (f("vae").value) body.vae = f("vae").value;
  if (f("decode").value) body.decode = f("decode").value;
  if (f("cache").value) body.cache = { mode: f("cache").value };
  if (mode !== "txt2img") {
    body.init_image = need(slots.init.item, "init_image", "Choose an input image").value;
    body.strength = num("strength");
  }
  if (mode === "inpaint") {
    if (painter.isEmpty()) need(null, "mask", "Paint the area to repaint on the image");
    Object.assign(body, { mask: painter.toDataURL(), mask_blur: num("mask-blur") });
  }
  if (mode === "outpaint") {
    const side = (s) => num("out-" + s) || 0;
    body.outpaint = { left: side("left"), right: side("right"), top: side("top"), bottom: side("bottom") };
    body.mask_blur = num("mask-blur");
  }
  if (visible("control") && f("control-on").checked) {
    body.control = {
      model: need(f("control-model").value, "control.model", "Choose a ControlNet model"),
      image: need(slots.control.item, "control.image", "Choose a control image").value,
      strength: num("control-strength"),
      preprocess: f("control-canny").checked ? "canny" : "none",
    };
  }
  if (visible("hires") && f("hires-on").checked) {
    body.hires = { scale: num("hires-scale"), upscaler: f("hires-upscaler").value, steps: num("hires-steps"),
      denoising_strength: num("hires-denoise") };
  }
  if (visible("ref") && slots.ref.items.length) body.ref_images = slots.ref.items.map((item) => item.value);
  return ["generate", body];
}

async function submit() {
  clearErrors(form, $("#form-error"));
  let route, body;
  try {
    [route, body] = build();
  } catch (e) {
    return showError(form, $("#form-error"), e);
  }
  const button = $("#gen-btn");
  button.disabled = true;
  try {
    const job = await api(route, { method: "POST", body });
    save();
    live.track(job);
    // One column (a phone): the form is long, so bring the progress into view.
    if (matchMedia("(max-width: 899px)").matches) $("#current").scrollIntoView({ behavior: motion(), block: "start" });
  } catch (e) {
    showError(form, $("#form-error"), e);
  } finally {
    button.disabled = false;
  }
}

// Under the button: will this fit, and about how long (POST /api/v1/estimate), a moment after the form changes.
let estimateTimer = null;
let estimateAbort = null;

function scheduleEstimate() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(estimate, 700);
}

async function estimate() {
  const out = $("#estimate");
  let route, body;
  try {
    [route, body] = build();
  } catch {
    out.textContent = ""; // incomplete: the button says what is missing
    return;
  }
  if (route === "upscale" || !ctx.me || ctx.me.role === "guest" || !f("model").value) {
    out.textContent = "";
    return;
  }
  // The model and the size decide; the input images would only be uploaded again on every keystroke.
  for (const key of ["init_image", "end_image", "mask", "ref_images", "control", "outpaint"]) delete body[key];
  estimateAbort?.abort();
  estimateAbort = new AbortController();
  try {
    const answer = await api(`estimate?kind=${route}`, { method: "POST", body, signal: estimateAbort.signal });
    out.textContent = describeEstimate(answer);
    out.classList.toggle("error", !answer.fits);
  } catch (e) {
    if (e.name !== "AbortError") out.textContent = ""; // the button reports errors next to their field
  }
}

const seconds = (s) => (s < 60 ? `${s.toFixed(s < 10 ? 1 : 0)} s` : `${Math.round(s / 60)} min`);

function describeEstimate(e) {
  if (!e.fits) return e.message;
  const s = e.seconds;
  const parts = [];
  if (s.total != null) parts.push(`about ${seconds(s.total)}`);
  else if (s.generate != null) parts.push(`about ${seconds(s.generate)} plus loading the model`);
  else parts.push("no timing yet for this model");
  const chosen = Object.keys(e.memory?.chosen || {});
  if (chosen.length) parts.push(`to fit in memory: ${chosen.join(", ")}`);
  if (e.queue.ahead) parts.push(`${e.queue.ahead} ${e.queue.ahead === 1 ? "job" : "jobs"} ahead`);
  return parts.join(" · ");
}

/** A finished job's seed, for "Reuse last". */
export function rememberSeed(seed) {
  if (seed === undefined || seed === null) return;
  lastSeed = seed;
  $("#seed-last").disabled = false;
  $("#seed-last").title = `Seed ${seed}`;
}

// -- filling the form from elsewhere ---------------------------------------------------------------------------------

function targetSlot() {
  if (currentMode() === "txt2img") setMode(arch.video ? "video" : "img2img");
  return ["init", "control", "ref"].map((k) => slots[k]).find((s) => !s.el.closest("[hidden]")) || slots.init;
}

/** "Use as input" on an output: it becomes the input image (img2img unless the mode already takes one). */
export function useAsInput(item) {
  if (currentMode() === "txt2img") setMode(arch.video ? "video" : "img2img");
  slots.init.set(item);
  $("#slot-init").scrollIntoView({ block: "center" });
}

const set = (id, value) => value !== undefined && value !== null && (f(id).value = value);

/** Fill the form from a job's parameters (and its model and kind), or from a preset. */
export function applyParams(p, job = null) {
  if (job && job.model && library.some((m) => m.name === job.model)) {
    f("model").value = job.model;
    modelChanged("keep");
  }
  set("prompt", p.prompt);
  set("negative", p.negative_prompt);
  set("width", p.width);
  set("height", p.height);
  set("steps", p.steps);
  set("cfg", p.cfg_scale);
  set("guidance", p.guidance);
  set("sampler", p.sampling_method);
  set("scheduler", p.scheduler);
  set("seed", p.seed);
  set("batch", p.batch_count);
  set("clip-skip", p.clip_skip);
  set("eta", p.eta);
  set("flow-shift", p.flow_shift);
  set("strength", p.strength);
  set("mask-blur", p.mask_blur);
  set("frames", p.frames);
  set("fps", p.fps);
  if (p.output_format) set(job && job.kind === "video" ? "video-format" : "format", p.output_format);
  if (p.strength !== undefined) $("#strength-out").value = p.strength;
  if (p.vae_tiling !== undefined) f("vae-tiling").checked = !!p.vae_tiling;
  f("vae").value = p.vae || "";
  f("decode").value = p.decode || "";
  f("cache").value = (p.cache && p.cache.mode) || "";
  if (p.loras) loras.set(p.loras);
  f("hires-on").checked = !!p.hires;
  if (p.hires) {
    set("hires-scale", p.hires.scale);
    set("hires-upscaler", p.hires.upscaler === "model" ? p.hires.model : p.hires.upscaler);
    set("hires-steps", p.hires.steps);
    set("hires-denoise", p.hires.denoising_strength);
  }
  if (p.control) {
    set("control-model", p.control.model);
    set("control-strength", p.control.strength);
    f("control-canny").checked = !!p.control.canny || p.control.preprocess === "canny";
  }
  if (p.outpaint) for (const side of ["left", "right", "top", "bottom"]) set("out-" + side, p.outpaint[side] || 0);
  if (job) setMode(job.kind === "img2img" ? p.mode || "img2img" : job.kind);
  sizeHint();
  applyVisibility();
}

// -- remembering the form between visits -----------------------------------------------------------------------------

const KEPT = ["prompt", "negative", "steps", "cfg", "sampler", "scheduler", "width", "height", "guidance", "batch", "format"];
let restored = false;

function save() {
  try {
    const values = Object.fromEntries(KEPT.map((id) => [id, f(id).value]));
    localStorage.setItem(SAVED, JSON.stringify({ ...values, model: f("model").value }));
  } catch {
    // storage full or blocked: nothing to keep
  }
}

function restore() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(SAVED) || "null");
  } catch {
    saved = null;
  }
  if (!saved) return;
  for (const id of KEPT) if (saved[id] !== undefined) f(id).dataset.saved = saved[id];
  f("model").dataset.saved = saved.model || "";
  for (const id of ["prompt", "negative", "width", "height", "steps", "cfg", "guidance", "batch", "format"]) {
    if (saved[id] !== undefined) f(id).value = saved[id];
  }
  restored = true;
  // samplers and schedulers arrive later: picked when their options exist
  const later = () => {
    for (const id of ["sampler", "scheduler"]) if (saved[id]) f(id).value = saved[id];
  };
  ctx.on("ready", later);
}
