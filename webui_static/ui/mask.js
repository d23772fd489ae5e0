// The inpainting mask, painted on a canvas over the input image with pointer events (mouse, pen and touch alike).
// The canvas has the image's own pixel size; what is painted is sent as a black PNG with the painted area white.

const INK = "#ff3d7f"; // shown at half opacity over the image; only the alpha matters for the mask

export class MaskPainter {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.size = 32; // brush diameter in screen pixels
    this.erasing = false;
    this.last = null;
    this.painted = false;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, () => (this.last = null));
  }

  /** A fresh, empty mask of the image's size. */
  reset(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.clear();
  }

  clear() {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.painted = false;
  }

  /** Swap painted and unpainted areas. */
  invert() {
    const { width, height } = this.canvas;
    const copy = document.createElement("canvas");
    copy.width = width;
    copy.height = height;
    const c = copy.getContext("2d");
    c.fillStyle = INK;
    c.fillRect(0, 0, width, height);
    c.globalCompositeOperation = "destination-out";
    c.drawImage(this.canvas, 0, 0);
    this.ctx.globalCompositeOperation = "copy";
    this.ctx.drawImage(copy, 0, 0);
    this.ctx.globalCompositeOperation = "source-over";
    this.painted = true;
  }

  point(e) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - rect.left) * this.canvas.width) / rect.width,
      y: ((e.clientY - rect.top) * this.canvas.height) / rect.height,
      scale: this.canvas.width / rect.width,
    };
  }

  down(e) {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.last = this.point(e);
    this.stroke(this.last, this.last);
  }

  move(e) {
    if (!this.last) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = this.point(ev);
      this.stroke(this.last, p);
      this.last = p;
    }
  }

  stroke(a, b) {
    const ctx = this.ctx;
    ctx.globalCompositeOperation = this.erasing ? "destination-out" : "source-over";
    ctx.strokeStyle = INK;
    ctx.lineWidth = this.size * b.scale;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
    ctx.globalCompositeOperation = "source-over";
    if (!this.erasing) this.painted = true;
  }

  /** Whether anything is painted (looked up in the pixels, since erasing can empty the mask again). */
  isEmpty() {
    if (!this.painted || !this.canvas.width) return true;
    const { data } = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    for (let i = 3; i < data.length; i += 4) if (data[i]) return false;
    return true;
  }

  /** The mask as the API takes it: a PNG data URL, white where painted, black elsewhere. */
  toDataURL() {
    const { width, height } = this.canvas;
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const c = out.getContext("2d");
    c.drawImage(this.canvas, 0, 0);
    c.globalCompositeOperation = "source-in";
    c.fillStyle = "#fff";
    c.fillRect(0, 0, width, height);
    c.globalCompositeOperation = "destination-over";
    c.fillStyle = "#000";
    c.fillRect(0, 0, width, height);
    return out.toDataURL("image/png");
  }
}
