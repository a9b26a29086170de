// Drawing and sizing shortcuts for big graphs (issue 16), overriding litegraph on one canvas only.
//
// Level of detail: below LOW_DETAIL_SCALE a node's title, slots and widgets are a few pixels high and
// cannot be read, yet litegraph (even in its own "low quality" mode, which only drops shadows, badges
// and rounded corners) still draws every one of them and every link as a bezier curve: with 2,000
// nodes in view that is 50-60 ms a frame. There each node is drawn as its box in its body colour with
// its title bar in its title colour, plus what the node draws itself over it (run state, images), and
// links as straight lines, one path per colour. At the scales the editor opens at and above, litegraph
// draws everything as before.
//
// Text measuring: litegraph sizes a node (computeSize) each time an input, output or widget is added,
// and each computeSize measures every label with LGraphCanvas._measureText, which sets the canvas
// font twice per call (slow: the font string is parsed each time). Widths are kept per font and text.

import { LiteGraph, LGraphCanvas, LLink } from "../vendor/litegraph/litegraph.es.js";

// Title text (NODE_TEXT_SIZE, 14 px at scale 1) is under 5 px here: not legible, not worth drawing.
export const LOW_DETAIL_SCALE = 0.35;
const MEASURED_MAX = 10_000; // distinct (font, text) pairs kept before the cache starts over

export function isLowDetail(canvas) {
  return canvas.ds.scale < LOW_DETAIL_SCALE;
}

export function installLowDetail(canvas) {
  const drawNode = canvas.drawNode.bind(canvas);
  canvas.drawNode = (node, ctx) => (isLowDetail(canvas) ? drawNodeBox(canvas, node, ctx) : drawNode(node, ctx));
  const drawConnections = canvas.drawConnections.bind(canvas);
  canvas.drawConnections = (ctx) => (isLowDetail(canvas) ? drawStraightLinks(canvas, ctx) : drawConnections(ctx));
  cacheTextWidths();
}

// LGraphCanvas sets the static _measureText in its constructor (bound to that canvas' context):
// wrap it with a cache once each canvas has made its own.
function cacheTextWidths() {
  const measure = LGraphCanvas._measureText;
  if (!measure || measure.cached) return;
  const widths = new Map();
  const cached = (text, fontStyle) => {
    const key = `${fontStyle ?? ""}\n${text}`;
    let width = widths.get(key);
    if (width === undefined) {
      width = measure(text, fontStyle);
      if (widths.size >= MEASURED_MAX) widths.clear();
      widths.set(key, width);
    }
    return width;
  };
  cached.cached = true;
  LGraphCanvas._measureText = cached;
}

function drawNodeBox(canvas, node, ctx) {
  canvas.current_node = node;
  const [x, y, width, height] = node.boundingRect; // title included; a collapsed node's title only
  const left = x - node.pos[0];
  const top = y - node.pos[1];
  const title = Math.min(height, node.pos[1] - y); // none for a node without a title bar
  ctx.globalAlpha = canvas.editor_alpha;
  ctx.shadowColor = "transparent";
  ctx.fillStyle = node.renderingBgColor;
  ctx.fillRect(left, top + title, width, height - title);
  if (title > 0) {
    ctx.fillStyle = node.renderingColor;
    ctx.fillRect(left, top, width, title);
  }
  if (!node.flags.collapsed) node.onDrawBackground?.(ctx);
  if (node.selected) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2 / canvas.ds.scale; // two screen pixels at any scale
    ctx.strokeRect(left, top, width, height);
  }
  node.onDrawForeground?.(ctx, canvas, canvas.canvas);
  ctx.globalAlpha = 1;
}

function drawStraightLinks(canvas, ctx) {
  canvas.renderedPaths.clear(); // no link centres to click at this scale
  const { graph, visible_area: area } = canvas;
  if (!graph || canvas.links_render_mode === LiteGraph.HIDDEN_LINK) return;
  const [minX, minY] = [area[0] - 20, area[1] - 20];
  const [maxX, maxY] = [area[0] + area[2] + 20, area[1] + area[3] + 20];
  const paths = new Map(); // colour -> Path2D
  for (const node of graph._nodes) {
    if (!node.inputs?.length) continue;
    for (let index = 0; index < node.inputs.length; index++) {
      const linkId = node.inputs[index]?.link;
      if (linkId == null) continue;
      const link = graph._links.get(linkId);
      const origin = link && graph.getNodeById(link.origin_id);
      if (!origin?.outputs?.[link.origin_slot]) continue;
      const points = [origin.getOutputPos(link.origin_slot), ...LLink.getReroutes(graph, link).map((reroute) => reroute.pos),
        node.getInputPos(index)];
      const xs = points.map((point) => point[0]);
      const ys = points.map((point) => point[1]);
      if (Math.max(...xs) < minX || Math.min(...xs) > maxX || Math.max(...ys) < minY || Math.min(...ys) > maxY) continue;
      const colour = link.color || LGraphCanvas.link_type_colors[link.type] || canvas.default_link_color;
      let path = paths.get(colour);
      if (!path) paths.set(colour, (path = new Path2D()));
      path.moveTo(points[0][0], points[0][1]);
      for (const point of points.slice(1)) path.lineTo(point[0], point[1]);
    }
  }
  ctx.globalAlpha = canvas.editor_alpha;
  ctx.lineWidth = Math.max(canvas.connections_width, 1 / canvas.ds.scale); // at least a screen pixel
  for (const [colour, path] of paths) {
    ctx.strokeStyle = colour;
    ctx.stroke(path);
  }
  ctx.globalAlpha = 1;
}
