// The server's errors next to the field they name: `{"error": {"field": "$.control.model"}}` finds the visible
// element whose data-field lists "control.model" (or a shorter path), marks it and says why; other errors go to the
// form's banner. Editing a marked field clears its error.

import { ApiError } from "./api.js";
import { $$, h, toast } from "./dom.js";

let errorIds = 0;

/** "smooth" unless the user asked for reduced motion. */
export const motion = () => (matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth");

/** The visible element of `form` that shows JSON path `$.a.b[0].c`, trying shorter paths until one matches. */
export function fieldFor(form, path) {
  let name = path.replace(/^\$\.?/, "");
  while (name) {
    const found = $$("[data-field]", form).find(
      (el) => el.dataset.field.split(" ").includes(name) && !el.closest("[hidden]"),
    );
    if (found) return found;
    name = /\[\d+\]$/.test(name) ? name.replace(/\[\d+\]$/, "") : name.includes(".") ? name.replace(/\.[^.]*$/, "") : "";
  }
  return null;
}

/** Show an error of a submission: next to its field, else in `banner`. */
export function showError(form, banner, e) {
  if (!(e instanceof ApiError)) return toast(e.message, "error");
  if (e.status === 401) return; // the login form is up
  const target = e.field && fieldFor(form, e.field);
  if (target) markError(target.closest(".field, fieldset, details, .chip, .mask-tools, .check") || target, e.message);
  else {
    banner.textContent = e.message;
    banner.hidden = false;
    banner.scrollIntoView({ block: "nearest" });
  }
}

export function markError(box, message) {
  clearError(box);
  const id = `err-${++errorIds}`;
  box.classList.add("invalid");
  box.append(h("p", { class: "field-error", id, role: "alert" }, message));
  const details = box.closest("details");
  if (details) details.open = true;
  const control = box.matches("input, select, textarea") ? box : box.querySelector("input:not([type=file]), select, textarea, canvas, label.btn");
  if (control) {
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", id);
  }
  box.scrollIntoView({ block: "center", behavior: motion() });
  if (control && control.focus) control.focus({ preventScroll: true });
}

export function clearError(box) {
  if (!box) return;
  box.classList.remove("invalid");
  for (const p of $$(":scope > .field-error", box)) p.remove();
  for (const el of $$("[aria-invalid]", box)) {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-describedby");
  }
}

export function clearErrors(form, banner) {
  banner.hidden = true;
  for (const box of $$(".invalid", form)) clearError(box);
}

/** Clear a field's error as soon as the user edits it. */
export function clearOnEdit(form) {
  form.addEventListener("input", (e) => clearError(e.target.closest(".invalid")));
  form.addEventListener("change", (e) => clearError(e.target.closest(".invalid")));
}
