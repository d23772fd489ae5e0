// What the form needs to know about each architecture (a copy of sdrest/library/architectures.py's table): its
// family, the size multiple sd.cpp wants, default size, CFG scale and steps, and which modes it serves.

// id: [family, size multiple, default size, default cfg, default steps]
const TABLE = {
  sd1: ["sd1", 64, 512, 7, 20],
  sd1_inpaint: ["sd1", 64, 512, 7, 20],
  sd1_pix2pix: ["sd1", 64, 512, 7, 20],
  sd1_tiny_unet: ["sd1", 64, 512, 7, 20],
  sdxs_512_ds: ["sd1", 64, 512, 7, 20],
  sd2: ["sd2", 64, 768, 7, 20],
  sd2_inpaint: ["sd2", 64, 512, 7, 20],
  sd2_tiny_unet: ["sd2", 64, 512, 7, 20],
  sdxs_09: ["sd2", 64, 512, 7, 20],
  sdxl: ["sdxl", 64, 1024, 7, 20],
  sdxl_inpaint: ["sdxl", 64, 1024, 7, 20],
  sdxl_pix2pix: ["sdxl", 64, 1024, 7, 20],
  sdxl_vega: ["sdxl", 64, 1024, 7, 20],
  sdxl_ssd1b: ["sdxl", 64, 1024, 7, 20],
  svd: ["svd", 64, 576, 7, 20],
  sd3: ["sd3", 16, 1024, 4.5, 28],
  flux: ["flux", 16, 1024, 1, 20],
  kontext: ["flux", 16, 1024, 1, 20],
  flux_fill: ["flux", 16, 1024, 1, 20],
  flux_controls: ["flux", 16, 1024, 1, 20],
  flex_2: ["flux", 16, 1024, 1, 20],
  chroma: ["flux", 16, 1024, 4, 26],
  chroma_radiance: ["flux", 16, 1024, 4, 26],
  ovis_image: ["flux", 16, 1024, 5, 20],
  wan2_1_t2v: ["wan", 16, 480, 6, 30],
  wan2_1_i2v: ["wan", 16, 480, 6, 30],
  wan2_1_flf2v: ["wan", 16, 480, 6, 30],
  wan2_1_vace: ["wan", 16, 480, 6, 30],
  wan2_2_t2v: ["wan", 16, 480, 6, 30],
  wan2_2_i2v: ["wan", 16, 480, 6, 30],
  wan2_2_ti2v: ["wan", 32, 704, 6, 30],
  qwen_image: ["qwen_image", 16, 1024, 2.5, 20],
  qwen_image_edit: ["qwen_image", 16, 1024, 2.5, 20],
  anima: ["anima", 16, 1024, 6, 20],
  flux2: ["flux2", 16, 1024, 1, 20],
  flux2_klein: ["flux2", 16, 1024, 1, 4],
  z_image: ["z_image", 16, 1024, 1, 8],
  ernie_image: ["ernie_image", 16, 1024, 5, 20],
};
const UNET = ["sd1", "sd2", "sdxl", "svd"];
const REF_IMAGES = ["kontext", "qwen_image_edit", "flux2", "flux2_klein"];
const CONTROL = ["sd1", "sd2", "sdxl"];

/** Everything the form asks about an architecture id; unknown ids get DiT-like defaults. */
export function archInfo(id) {
  const [family, multiple, size, cfg, steps] = TABLE[id] || ["unknown", 16, 1024, 7, 20];
  const unet = UNET.includes(family);
  return {
    id,
    family,
    multiple,
    size,
    cfg,
    steps,
    unet,
    video: family === "wan",
    dit: !unet,
    refs: REF_IMAGES.includes(id),
    control: CONTROL.includes(family),
    guidance: family === "flux" || family === "flux2",
    sampler: unet ? "euler_a" : "euler",
  };
}

/** `value` rounded to the nearest multiple of `multiple`, at least 64 and at most `max`. */
export function snap(value, multiple, max = 2048) {
  const n = Math.round((Number(value) || 0) / multiple) * multiple;
  const floor = Math.ceil(64 / multiple) * multiple;
  return Math.min(Math.max(n, floor), Math.floor(max / multiple) * multiple);
}

/** Whether a LoRA (architecture `lora_<target>`) , embedding (`embedding_<family>`) or ControlNet fits a model family. */
export function fits(architecture, family) {
  const target = (architecture || "").replace(/^(lora|embedding|controlnet)_/, "");
  return !target || target === "unknown" || target === family;
}
