// A small overview of the whole graph in a corner of the canvas: every node as a block in its colour,
// the visible part as a frame. Click or drag in it to move the view there.

const WIDTH = 200;
const HEIGHT = 140;
const PAD = 6;

export class Minimap {
  constructor(editor, box) {
    this.editor = editor;
    this.element = document.createElement("canvas");
    this.element.id = "minimap";
    this.element.width = WIDTH;
    this.element.height = HEIGHT;
    this.element.title = "overview: click or drag to move the view";
    box.append(this.element);
    this.transform = null;
    this.signature = "";
    this.element.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      event.stopPropagation();
      this.element.setPointerCapture(event.pointerId);
      this.panTo(event);
    });
    this.element.addEventListener("pointermove", (event) => { if (event.buttons & 1) this.panTo(event); });
    // Redraw only when the view or the graph moved: a cheap signature, checked a few times a second.
    setInterval(() => this.refresh(), 150);
    this.refresh();
  }

  view() {
    const { ds, canvas } = this.editor.canvas;
    const [x, y] = [-ds.offset[0], -ds.offset[1]];
    return [x, y, canvas.width / ds.scale, canvas.height / ds.scale];
  }

  refresh() {
    const nodes = this.editor.graph._nodes;
    let sum = 0;
    for (const node of nodes) sum += node.pos[0] * 3 + node.pos[1] * 7 + node.size[0] + node.size[1];
    const signature = `${nodes.length}:${sum}:${this.view().join(",")}`;
    if (signature === this.signature) return;
    this.signature = signature;
    this.draw();
  }

  draw() {
    const ctx = this.element.getContext("2d");
    const nodes = this.editor.graph._nodes;
    const [vx, vy, vw, vh] = this.view();
    let [minX, minY, maxX, maxY] = [vx, vy, vx + vw, vy + vh];
    for (const node of nodes) {
      minX = Math.min(minX, node.pos[0]);
      minY = Math.min(minY, node.pos[1] - 30);
      maxX = Math.max(maxX, node.pos[0] + node.size[0]);
      maxY = Math.max(maxY, node.pos[1] + node.size[1]);
    }
    const scale = Math.min((WIDTH - 2 * PAD) / (maxX - minX), (HEIGHT - 2 * PAD) / (maxY - minY));
    const x0 = PAD + ((WIDTH - 2 * PAD) - (maxX - minX) * scale) / 2 - minX * scale;
    const y0 = PAD + ((HEIGHT - 2 * PAD) - (maxY - minY) * scale) / 2 - minY * scale;
    this.transform = { scale, x0, y0 };
    this.element.dataset.transform = JSON.stringify(this.transform); // for tools and tests
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    ctx.fillStyle = "#15161acc";
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    for (const node of nodes) {
      ctx.fillStyle = node.color || "#6b6f76";
      ctx.fillRect(x0 + node.pos[0] * scale, y0 + (node.pos[1] - 30) * scale,
        Math.max(2, node.size[0] * scale), Math.max(2, (node.size[1] + 30) * scale));
    }
    ctx.strokeStyle = "#5b9bd5";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x0 + vx * scale, y0 + vy * scale, vw * scale, vh * scale);
  }

  /** Centre the main view on the graph point under the pointer. */
  panTo(event) {
    if (!this.transform) return;
    const rect = this.element.getBoundingClientRect();
    const { scale, x0, y0 } = this.transform;
    const gx = (event.clientX - rect.left - x0) / scale;
    const gy = (event.clientY - rect.top - y0) / scale;
    const { ds, canvas } = this.editor.canvas;
    ds.offset = [canvas.width / ds.scale / 2 - gx, canvas.height / ds.scale / 2 - gy];
    this.editor.canvas.setDirty(true, true);
    this.refresh();
  }
}
