// Saved presets (JSON objects of generation fields) and prompt templates on the generation form: the pickers, applying
// one, and saving the form's settings as a new preset.

import { api } from "./api.js";
import { $, fillSelect, toast } from "./dom.js";
import { clearError, markError } from "./errors.js";

/** Fill the template and preset pickers (a guest may not list them: they stay empty). */
export async function loadNames() {
  const kinds = [["prompts", "#f-prompt-tpl"], ["neg_prompts", "#f-neg-tpl"], ["presets", "#f-preset"]];
  await Promise.all(kinds.map(async ([kind, selector]) => {
    try {
      const { names } = await api(kind);
      fillSelect($(selector), names.map((n) => [n, n]), { empty: names.length ? "—" : "none saved" });
    } catch {
      // not allowed or not reachable: nothing to pick
    }
  }));
}

/** Add the chosen template's text to `area` (after what is there). */
export async function applyTemplate(kind, select, area) {
  if (!select.value) return;
  try {
    const { value } = await api(`${kind}/${encodeURIComponent(select.value)}`);
    area.value = area.value.trim() ? `${area.value.trim()}, ${value.trim()}` : value.trim();
  } catch (e) {
    toast(e.message, "error");
  }
  select.value = "";
}

/** Read preset `name` and hand its fields to `apply`. */
export async function applyPreset(name, apply) {
  if (!name) return;
  try {
    const { value } = await api(`presets/${encodeURIComponent(name)}`);
    apply(value);
    toast(`Preset ${name} applied`, "ok");
  } catch (e) {
    toast(e.message, "error");
  }
}

/** Save `value` as a new preset named by `input` (its errors shown next to it). */
export async function savePreset(input, value) {
  const box = input.closest(".field");
  clearError(box);
  const name = input.value.trim();
  if (!name) return markError(box, "Give the preset a name");
  try {
    await api(`presets/${encodeURIComponent(name)}`, { method: "POST", body: value });
    toast(`Saved preset ${name}`, "ok");
    input.value = "";
    loadNames();
  } catch (e) {
    markError(box, e.message);
  }
}
