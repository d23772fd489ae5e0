// Input image slots: an image (or several) taken by drag-and-drop, paste, a file picker, or "use as input" on an
// output of this server. A slot's value is what the API accepts: a data URL, or {"output": "<job id>/<file>"}.

import { h } from "./dom.js";

const ACCEPT = "image/png,image/jpeg,image/webp";
export const DRAG_TYPE = "application/x-sdrest-output";

function decode(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the image cannot be read"));
    img.src = url;
  });
}

/** An item for a file the user gave: PNG, JPEG or WebP, read as a data URL. */
export async function fromFile(file) {
  if (!ACCEPT.split(",").includes(file.type)) throw new Error(`${file.name || "that file"} is not a PNG, JPEG or WebP image`);
  const url = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  const img = await decode(url);
  return { value: url, url, width: img.naturalWidth, height: img.naturalHeight, name: file.name || "pasted image" };
}

/** An item for an earlier output of this server: sent by reference, never uploaded again. */
export function fromOutput(jobId, output, url) {
  return { value: { output: `${jobId}/${output.filename}` }, url, width: output.width, height: output.height, name: output.filename };
}

/** Mark an output <img> as draggable onto a slot. */
export function draggable(img, item) {
  img.draggable = true;
  img.addEventListener("dragstart", (e) => e.dataTransfer.setData(DRAG_TYPE, JSON.stringify(item)));
}

let counter = 0;

/** One drop zone. `multi` keeps up to `max` images (reference images); otherwise a new image replaces the old. */
export class ImageSlot {
  constructor(el, { multi = false, max = 8, alt = "Input image", onChange = () => {}, onError = () => {} } = {}) {
    this.el = el;
    this.multi = multi;
    this.max = max;
    this.alt = alt;
    this.items = [];
    this.onChange = onChange;
    this.onError = onError;
    const id = `file-${el.dataset.slot || "slot"}-${++counter}`;
    this.input = h("input", { type: "file", id, accept: ACCEPT, class: "sr-only", multiple: multi, onchange: () => this.takeFiles(this.input.files) });
    this.img = h("img", { alt });
    this.stage = h("div", { class: "stage", hidden: true }, this.img);
    this.thumbs = h("ul", { class: "thumbs", hidden: true });
    this.meta = h("span", { class: "meta" });
    this.clearBtn = h("button", { type: "button", class: "small ghost", onclick: () => this.clear() }, multi ? "Remove all" : "Remove");
    this.bar = h("div", { class: "slot-bar", hidden: true }, this.meta, this.clearBtn);
    const pick = h("label", { class: "btn small", for: id }, multi ? "Choose images" : "Choose an image");
    this.hint = h("div", { class: "drop-hint" }, h("span", {}, "Drop or paste an image, or "), this.input, pick);
    el.append(this.stage, this.thumbs, this.bar, this.hint);
    el.addEventListener("dragover", (e) => {
      e.preventDefault();
      el.classList.add("over");
    });
    el.addEventListener("dragleave", () => el.classList.remove("over"));
    el.addEventListener("drop", (e) => {
      e.preventDefault();
      e.stopPropagation();
      el.classList.remove("over");
      this.takeDrop(e.dataTransfer);
    });
  }

  get item() {
    return this.items[0] || null;
  }

  /** Take what a drop carries: files, or an output dragged from this page. */
  takeDrop(data) {
    const own = data.getData(DRAG_TYPE);
    if (own) this.set(JSON.parse(own));
    else if (data.files && data.files.length) this.takeFiles(data.files);
  }

  async takeFiles(files) {
    try {
      for (const file of [...files].slice(0, this.multi ? this.max : 1)) this.set(await fromFile(file));
    } catch (e) {
      this.onError(e.message);
    }
    this.input.value = "";
  }

  set(item) {
    if (this.multi) this.items = [...this.items, item].slice(-this.max);
    else this.items = [item];
    this.render();
    this.onChange(this);
  }

  remove(index) {
    this.items.splice(index, 1);
    this.render();
    this.onChange(this);
  }

  clear() {
    this.items = [];
    this.render();
    this.onChange(this);
  }

  render() {
    const has = this.items.length > 0;
    this.bar.hidden = !has;
    this.el.classList.toggle("filled", has);
    if (this.multi) {
      this.thumbs.hidden = !has;
      this.thumbs.replaceChildren(
        ...this.items.map((item, i) =>
          h("li", {},
            h("img", { src: item.url, alt: `${this.alt} ${i + 1}` }),
            h("button", { type: "button", class: "icon small", "aria-label": `Remove image ${i + 1}`, onclick: () => this.remove(i) }, "×"),
          ),
        ),
      );
      this.meta.textContent = has ? `${this.items.length} of ${this.max}` : "";
      return;
    }
    this.stage.hidden = !has;
    if (has) {
      this.img.src = this.item.url;
      this.meta.textContent = `${this.item.width}×${this.item.height} · ${this.item.name}`;
    } else {
      this.img.removeAttribute("src");
    }
  }
}
