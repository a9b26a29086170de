// gouache-effects: a colour picker for inputs declared with Input(..., widget="gouache-effects.color").
// The editor imports this module and calls its default export with its extension API (docs/api.md).
// The value stays a "#rrggbb" string, so workflows remain plain JSON and run headless.

export const WIDGET = "gouache-effects.color";
const HEX = /^#[0-9a-fA-F]{6}$/;
const MARGIN = 15;

/** The one hidden <input type="color"> that opens the browser's own colour dialog. */
function pickerElement() {
  let picker = document.querySelector("input.gouache-effects-picker");
  if (!picker) {
    picker = document.createElement("input");
    picker.type = "color";
    picker.className = "gouache-effects-picker";
    picker.setAttribute("aria-label", "pick a colour");
    document.body.append(picker);
  }
  return picker;
}

function colorWidget(gouache, node, input, value) {
  const widget = {
    type: WIDGET,
    name: input.name,
    value: HEX.test(String(value)) ? String(value).toLowerCase() : "#ffffff",
    options: {},
    y: 0,
    computeSize(width) {
      return [width, gouache.LiteGraph.NODE_WIDGET_HEIGHT];
    },
    draw(ctx, drawnNode, width, y, height) {
      const inner = width - 2 * MARGIN;
      ctx.fillStyle = gouache.LiteGraph.WIDGET_BGCOLOR;
      ctx.strokeStyle = gouache.LiteGraph.WIDGET_OUTLINE_COLOR;
      ctx.beginPath();
      ctx.roundRect(MARGIN, y, inner, height, height * 0.5);
      ctx.fill();
      ctx.stroke();
      const swatch = Math.min(48, inner / 3);
      ctx.fillStyle = widget.value;
      ctx.fillRect(MARGIN + inner - swatch - height * 0.5, y + 3, swatch, height - 6);
      ctx.fillStyle = gouache.LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
      ctx.textAlign = "left";
      ctx.fillText(widget.name, MARGIN + height * 0.5, y + height * 0.7);
      ctx.fillStyle = gouache.LiteGraph.WIDGET_TEXT_COLOR;
      ctx.textAlign = "right";
      ctx.fillText(widget.value, MARGIN + inner - swatch - height, y + height * 0.7);
    },
    mouse(event, pos, clickedNode) {
      if (event.type !== "pointerdown" || widget.disabled) return false;
      widget.open(event.clientX, event.clientY);
      return true;
    },
    /** Show the colour dialog near (x, y); the chosen colour becomes the input's value. */
    open(x = 0, y = 0) {
      const picker = pickerElement();
      picker.value = widget.value;
      picker.style.left = `${x}px`;
      picker.style.top = `${y}px`;
      picker.oninput = () => widget.set(picker.value);
      picker.onchange = () => widget.set(picker.value);
      picker.dataset.node = node.properties?.id ?? "";
      picker.dataset.input = widget.name;
      try { picker.showPicker(); } catch { picker.click(); }
    },
    set(color) {
      if (!HEX.test(color) || color === widget.value) return;
      const old = widget.value;
      widget.value = color.toLowerCase();
      node.onWidgetChanged?.(widget.name, widget.value, old, widget);
      node.setDirtyCanvas?.(true, true);
      gouache.editor?.changed?.();
    },
  };
  return node.addCustomWidget(widget);
}

export default function register(gouache) {
  gouache.addWidget(WIDGET, (node, input, value) => colorWidget(gouache, node, input, value));
}
