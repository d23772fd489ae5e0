// Small DOM helpers shared by every view: element building, toasts, number formats, downloads.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/**
 * `h("button", {class: "small", onclick}, "Text")`: an element. Attributes starting with "on" become listeners,
 * `text` sets textContent, booleans toggle attributes, anything else is set as an attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** A transient message at the bottom of the screen; `kind` is info, ok or error. */
export function toast(message, kind = "info", seconds = 5) {
  const box = $("#toasts");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null }, message);
  const close = h("button", { class: "icon small", type: "button", "aria-label": "Dismiss", onclick: () => item.remove() }, "×");
  item.append(close);
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), seconds * 1000);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "—";
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtDate(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : "—";
}

/** The last part of a library name without its extension: "lora/pixel.safetensors" → "pixel". */
export function stem(name) {
  return name.split("/").pop().replace(/\.[^.]+$/, "");
}

/** Save a URL or Blob under a file name. */
export function download(source, filename) {
  const url = typeof source === "string" ? source : URL.createObjectURL(source);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  if (typeof source !== "string") setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A <select>'s options from `[value, label, disabled?]` items, keeping the chosen value when it still exists. */
export function fillSelect(select, items, { empty } = {}) {
  const keep = select.value;
  select.replaceChildren();
  if (empty !== undefined) select.append(h("option", { value: "" }, empty));
  for (const [value, label, disabled] of items) select.append(h("option", { value, disabled: !!disabled }, label));
  if ([...select.options].some((o) => o.value === keep && !o.disabled)) select.value = keep;
}
