// LoRAs picked from the library with a weight each (sent as the request's `loras`), and embeddings, which apply
// where their name appears in a prompt (inserted at the cursor, with a weight as "(name:0.8)").

import { h, stem } from "./dom.js";

/** The chosen LoRAs, shown as chips with their weights in `list`. */
export class Loras {
  constructor(list, badge) {
    this.list = list;
    this.badge = badge;
    this.items = []; // [{name, weight}]
  }

  add(name, weight) {
    if (!name) return;
    const found = this.items.find((l) => l.name === name);
    if (found) found.weight = weight;
    else this.items.push({ name, weight });
    this.render();
  }

  set(items) {
    this.items = items.map((l) => ({ name: l.name, weight: l.weight }));
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.items.map((lora, i) => {
        const id = `lora-w-${i}`;
        const weight = h("input", { id, type: "number", min: -10, max: 10, step: 0.05, value: lora.weight,
          oninput: () => (lora.weight = Number(weight.value)) });
        return h("li", { class: "chip", "data-field": `loras[${i}] loras[${i}].name loras[${i}].weight` },
          h("label", { for: id }, stem(lora.name)),
          weight,
          h("button", { type: "button", class: "icon small", "aria-label": `Remove ${stem(lora.name)}`,
            onclick: () => { this.items.splice(i, 1); this.render(); } }, "×"),
        );
      }),
    );
    this.badge.hidden = !this.items.length;
    this.badge.textContent = this.items.length;
  }
}

/** Insert an embedding's name into a textarea at the cursor. */
export function insertEmbedding(area, name, weight) {
  if (!name) return;
  const token = weight === 1 ? stem(name) : `(${stem(name)}:${weight})`;
  const at = area.selectionStart ?? area.value.length;
  const before = area.value.slice(0, at);
  const glue = before && !/[\s,]$/.test(before) ? ", " : "";
  area.value = before + glue + token + area.value.slice(at);
  area.focus();
}
