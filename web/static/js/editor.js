// The graph editor: node types from the server's registry, widgets from input specs, the
// gouache/1 <-> litegraph conversion, and how a node shows its run state (progress, cache, errors).

import { LiteGraph, LGraph, LGraphNode, LGraphCanvas, LGraphGroup } from "../vendor/litegraph/litegraph.es.js";
import { api } from "./api.js";
import { installLowDetail, isLowDetail } from "./lowdetail.js";
import { installMenus, nodeMenu } from "./menus.js";
import { SEED_CONTROLS, nextSeed, setupNumberWidget } from "./widgets.js";

export const FORMAT = "gouache/1";
const LITERAL_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
const UNKNOWN = "gouache/unknown";
const IMAGE_HEIGHT = 220;
// gouache/1 node modes and litegraph's: a muted node (litegraph's NEVER) does not run, nor what only
// it feeds; a bypassed node passes its inputs through (LGraphEventMode.BYPASS).
const MODES = { mute: 2, bypass: 4 };
const MODE_LOOK = { 2: { label: "muted", fill: "#000a", text: "#bbb" }, 4: { label: "bypassed", fill: "#9b30ff55", text: "#d9b3ff" } };
// Node looks kept in the layout when set (litegraph's names).
const LOOKS = ["color", "bgcolor"];

export function isLink(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    typeof value.node === "string" && typeof value.output === "string" && Object.keys(value).length === 2;
}

function decimals(step) {
  const text = String(step ?? "");
  return text.includes(".") ? text.split(".")[1].length : 0;
}

export class Editor {
  constructor(canvasElement, { onChange, onUpload, onMessage, onCreated, customWidgets }) {
    this.infos = new Map();
    this.types = new Map();
    this.onChange = onChange;
    this.onCreated = onCreated; // a node made anew (not loaded, not a clone): the app may set its values
    this.onUpload = onUpload;
    this.onMessage = onMessage || (() => {});
    this.customWidgets = customWidgets;
    this.meta = {};
    this.otherGroups = [];
    this.status = new Map(); // node id -> {state, progress, errors, images, preview}
    this.loading = false;
    this.settingUp = null; // the node setupNode is adding slots and widgets to
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(canvasElement, this.graph);
    this.canvas.allow_searchbox = false;
    this.canvas.render_canvas_border = false;
    this.canvas.show_info = false;
    this.canvas.low_quality_zoom_threshold = 0.45; // keep titles and widget text legible when fitted
    installLowDetail(this.canvas); // boxes and straight links when zoomed far out; cached text widths
    LiteGraph.isValidConnection = (a, b) => this.compatible(a, b);
    this.graph.onNodeAdded = (node) => { node.getMenuOptions = () => nodeMenu(this, node); this.ensureId(node); };
    this.graph.onNodeRemoved = () => this.changed();
    installMenus(this);
  }

  // ---- registry --------------------------------------------------------------------------

  setRegistry(payload) {
    for (const type of payload.types) {
      this.types.set(type.name, type);
      this.canvas.default_connection_color_byType[type.name] = type.color;
      this.canvas.default_connection_color_byTypeOff[type.name] = type.color;
      LGraphCanvas.link_type_colors[type.name] = type.color;
    }
    const editor = this;
    for (const info of payload.nodes) {
      this.infos.set(info.type, info);
      if (LiteGraph.registered_node_types[info.type]) continue;
      const NodeClass = class extends LGraphNode {
        constructor(title) {
          super(title || info.type);
          editor.setupNode(this, editor.infos.get(info.type));
        }

        // Sized once setupNode has added every slot and widget, not after each one (see there).
        expandToFitContent() {
          if (editor.settingUp !== this) super.expandToFitContent();
        }
      };
      NodeClass.title = info.type;
      NodeClass.desc = info.description;
      LiteGraph.registerNodeType(info.type, NodeClass);
      NodeClass.category = info.category; // litegraph reads it from "a/b/Type" names; ours come from the server
      NodeClass.skip_list = Boolean(info.deprecated);
    }
    if (!LiteGraph.registered_node_types[UNKNOWN]) {
      const Unknown = class extends LGraphNode {
        constructor(title) { super(title || "unknown"); this.properties = { raw: null }; this.color = "#722"; this.bgcolor = "#411"; this.serialize_widgets = true; }
      };
      Unknown.title = "unknown";
      Unknown.skip_list = true; // only ever made by loading a workflow, never from a menu
      LiteGraph.registerNodeType(UNKNOWN, Unknown);
    }
  }

  // Same rule as the engine: exact, a declared conversion, or the wildcard.
  compatible(outputType, inputType) {
    if (!outputType || !inputType) return true;
    if (outputType === inputType || outputType === "*" || inputType === "*") return true;
    return (this.types.get(outputType)?.converts_to || []).includes(inputType);
  }

  // ---- nodes and widgets -----------------------------------------------------------------

  setupNode(node, info) {
    node.gtype = info.type;
    node.serialize_widgets = true;
    // "unset": inputs the workflow leaves out. A new node states every input but optional ones
    // without a default; loading a workflow replaces this with what the file leaves out.
    const unset = info.inputs.filter((spec) => spec.optional && spec.default == null).map((spec) => spec.name);
    node.properties = { id: null, unset, extra: {}, pending: {}, layout: {}, seedControl: {} };
    const editor = this;
    // litegraph sizes the node anew after each input, output and widget added; a node only grows as
    // they are added, so sizing it once at the end gives the same size (and loads big graphs faster).
    // (A flag on the editor, not on the node: deleting a property from a node would make V8 keep it as
    // a slow dictionary object, and every frame reads nodes' properties.)
    this.settingUp = node;
    try {
      for (const spec of info.inputs) {
        const literal = LITERAL_TYPES.has(spec.type) || spec.choices != null;
        if (spec.link !== "widget") node.addInput(spec.name, spec.type, { label: spec.name, nameLocked: true });
        if (spec.link !== "wire" && literal) this.addWidget(node, spec);
      }
      for (const output of info.outputs) node.addOutput(output.name, output.type, { label: output.name, nameLocked: true });
    } finally {
      this.settingUp = null;
    }
    const [width, height] = node.computeSize();
    node.baseHeight = height;
    node.size = [Math.max(node.size[0], width, 240), node.baseHeight];
    node.onWidgetChanged = (name) => {
      node.properties.unset = node.properties.unset.filter((item) => item !== name);
      editor.clearErrors(node.properties.id, name);
      editor.changed();
    };
    node.onConnectionsChange = () => { editor.syncWidgetStates(node); editor.changed(); };
    node.onDrawForeground = (ctx) => editor.drawState(node, ctx);
    node.onDrawBackground = (ctx) => editor.drawImage(node, ctx);
  }

  defaultValue(spec) {
    if (spec.default !== null && spec.default !== undefined) return spec.default;
    if (spec.choices?.length) return spec.choices[0];
    if (spec.type === "INT" || spec.type === "FLOAT") return spec.min ?? 0;
    if (spec.type === "BOOLEAN") return false;
    return "";
  }

  addWidget(node, spec) {
    const value = this.defaultValue(spec);
    const noop = () => {};
    const custom = spec.widget && this.customWidgets.get(spec.widget);
    let widget;
    if (custom) {
      widget = custom(node, spec, value);
    } else if (spec.choices != null) {
      widget = node.addWidget("combo", spec.name, value, noop, { values: [...spec.choices] });
    } else if (spec.type === "INT" || spec.type === "FLOAT") {
      const integer = spec.type === "INT";
      const step = spec.step ?? (integer ? 1 : 0.01);
      widget = node.addWidget("number", spec.name, value, noop, {
        min: spec.min ?? undefined, max: spec.max ?? undefined, step2: step, step: step * 10,
        precision: integer ? 0 : Math.max(decimals(step), 2), round: integer ? 1 : undefined,
      });
      setupNumberWidget(widget, spec, (message) => this.onMessage(message));
    } else if (spec.type === "BOOLEAN") {
      widget = node.addWidget("toggle", spec.name, Boolean(value), noop, {});
    } else {
      widget = node.addWidget("text", spec.name, String(value ?? ""), noop, { multiline: spec.multiline });
    }
    if (spec.seed) {
      const control = node.addWidget("combo", `${spec.name} after run`, "randomize", (v) => {
        node.properties.seedControl[spec.name] = v;
      }, { values: [...SEED_CONTROLS], serialize: false });
      control.gouacheControl = spec.name;
      node.properties.seedControl[spec.name] = "randomize";
    }
    if (spec.upload === "image") {
      const button = node.addWidget("button", `upload ${spec.name}…`, null, () => this.onUpload(node, spec.name), {});
      button.gouacheControl = spec.name;
    }
    return widget;
  }

  widgetFor(node, name) {
    return node.widgets?.find((w) => w.name === name && !w.gouacheControl);
  }

  syncWidgetStates(node) {
    for (const slot of node.inputs || []) {
      const widget = this.widgetFor(node, slot.name);
      if (widget) widget.disabled = slot.link != null;
    }
  }

  setWidgetValue(node, name, value) {
    const widget = this.widgetFor(node, name);
    if (!widget) return false;
    widget.value = value;
    node.properties.unset = node.properties.unset.filter((item) => item !== name);
    this.changed();
    node.setDirtyCanvas(true, true);
    return true;
  }

  ensureId(node) {
    if (this.loading) return;
    if (node.type === UNKNOWN) return;
    const taken = new Set(this.graph._nodes.filter((n) => n !== node).map((n) => n.properties?.id));
    let id = node.properties?.id;
    const fresh = !id;
    if (!id || taken.has(id)) {
      const base = (node.gtype || "node").replace(/[^A-Za-z0-9]+/g, "").toLowerCase() || "node";
      let index = 1;
      while (taken.has(`${base}${index}`)) index++;
      id = `${base}${index}`;
      node.properties.id = id;
    }
    node.title = node.title === node.gtype || !node.title ? node.gtype : node.title;
    if (fresh) this.onCreated?.(node);
    this.changed();
  }

  nodeById(id) {
    return this.graph._nodes.find((node) => node.properties?.id === id) || null;
  }

  addNode(type, pos) {
    const node = LiteGraph.createNode(type);
    if (!node) throw new Error(`unknown node type ${type}`);
    node.pos = [pos[0], pos[1]];
    this.graph.add(node);
    this.canvas.selectNodes([node]);
    this.canvas.setDirty(true, true);
    return node;
  }

  changed() {
    if (!this.loading) this.onChange?.();
  }

  // ---- gouache/1 <-> graph ---------------------------------------------------------------

  load(workflow) {
    if (!workflow || workflow.format !== FORMAT || typeof workflow.nodes !== "object") {
      throw new Error(`not a ${FORMAT} workflow`);
    }
    this.loading = true;
    try {
      this.graph.clear();
      this.status.clear();
      this.meta = workflow.meta || {};
      this.loadGroups(workflow.groups || []);
      const layout = workflow.layout || {};
      const positions = autoLayout(workflow);
      const created = new Map();
      const reroutes = new Map();
      for (const [id, entry] of Object.entries(workflow.nodes)) {
        const info = this.infos.get(entry.type);
        let node;
        if (!info) {
          node = LiteGraph.createNode(UNKNOWN);
          node.title = `${entry.type} (unknown type)`;
          node.properties = { id, raw: entry, layout: {} };
        } else {
          node = LiteGraph.createNode(entry.type);
          node.properties.id = id;
          if (entry.mode in MODES) node.mode = MODES[entry.mode];
          else if (entry.mode != null) node.properties.rawMode = entry.mode; // kept; the engine names it (null: none)
          const inputs = entry.inputs || {};
          node.properties.unset = info.inputs.filter((spec) => !(spec.name in inputs)).map((spec) => spec.name);
          for (const [name, value] of Object.entries(inputs)) {
            const spec = info.inputs.find((s) => s.name === name);
            if (!spec) { node.properties.extra[name] = value; continue; }
            if (isLink(value)) continue;
            const widget = this.widgetFor(node, name);
            if (widget) widget.value = value;
            else node.properties.extra[name] = value;
          }
          const seeds = layout[id]?.seed_control || {};
          for (const widget of node.widgets || []) {
            if (widget.gouacheControl && widget.type === "combo") {
              widget.value = seeds[widget.gouacheControl] || "fixed";
              node.properties.seedControl[widget.gouacheControl] = widget.value;
            }
          }
        }
        const place = layout[id] || {};
        const { pos, size, seed_control: _seed, title, collapsed, pinned, reroutes: _reroutes, ...rest } = place;
        for (const look of LOOKS) {
          if (typeof rest[look] === "string") { node[look] = rest[look]; delete rest[look]; }
        }
        node.properties.layout = rest;
        if (typeof title === "string" && info) node.title = title;
        if (collapsed === true) node.flags.collapsed = true;
        if (pinned === true) node.flags.pinned = true;
        node.pos = Array.isArray(pos) ? [...pos] : positions.get(id);
        if (Array.isArray(size)) {
          // A layout from another editor may be smaller than our widgets need: never cut them off.
          const least = node.computeSize();
          node.size = [Math.max(size[0], least[0]), Math.max(size[1], least[1])];
        }
        this.graph.add(node, true);
        created.set(id, node);
      }
      for (const [id, entry] of Object.entries(workflow.nodes)) {
        const node = created.get(id);
        if (node.type === UNKNOWN) continue;
        for (const [name, value] of Object.entries(entry.inputs || {})) {
          if (!isLink(value)) continue;
          const source = created.get(value.node);
          const outIndex = source?.outputs?.findIndex((o) => o.name === value.output) ?? -1;
          const inIndex = node.inputs?.findIndex((i) => i.name === name) ?? -1;
          const linked = outIndex >= 0 && inIndex >= 0 && source.type !== UNKNOWN && source.connect(outIndex, node, inIndex);
          if (!linked) node.properties.pending[name] = value; // kept as written; the engine reports it
          else this.loadReroutes(linked, layout[id]?.reroutes?.[name], reroutes);
        }
        this.syncWidgetStates(node);
      }
      this.graph.updateExecutionOrder?.();
    } finally {
      this.loading = false;
    }
    this.canvas.setDirty(true, true);
  }

  // Show the whole graph: scale down (never up) so every node fits the canvas.
  fitView() {
    const nodes = this.graph._nodes;
    if (!nodes.length) return;
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const node of nodes) {
      minX = Math.min(minX, node.pos[0]);
      minY = Math.min(minY, node.pos[1] - title);
      maxX = Math.max(maxX, node.pos[0] + node.size[0]);
      maxY = Math.max(maxY, node.pos[1] + node.size[1]);
    }
    for (const group of this.graph._groups || []) {
      const [x, y, w, h] = group._bounding;
      [minX, minY, maxX, maxY] = [Math.min(minX, x), Math.min(minY, y), Math.max(maxX, x + w), Math.max(maxY, y + h)];
    }
    const { width, height } = this.canvas.canvas;
    const margin = 40; // clear of the tab bar along the top
    // Never so small that widget text (NODE_SUBTEXT_SIZE px at scale 1) reads under 11 px: a graph
    // wider than that shows its start (the loaders, on the left) and the minimap shows the rest.
    const readable = 11 / LiteGraph.NODE_SUBTEXT_SIZE;
    const fit = Math.min((width - 2 * margin) / (maxX - minX), (height - 2 * margin) / (maxY - minY));
    const scale = Math.max(readable, Math.min(1, fit));
    this.canvas.ds.scale = scale;
    this.canvas.ds.offset = [-minX + margin / scale, -minY + margin / scale];
    this.canvas.setDirty(true, true);
  }

  export() {
    const nodes = {};
    const layout = {};
    for (const node of this.graph._nodes) {
      const id = node.properties.id;
      if (node.type === UNKNOWN) {
        nodes[id] = node.properties.raw;
      } else {
        const info = this.infos.get(node.gtype);
        const inputs = {};
        for (const spec of info.inputs) {
          const slot = node.inputs?.find((s) => s.name === spec.name);
          const link = slot?.link != null ? this.graph.getLink(slot.link) : null;
          if (link) {
            const source = this.graph.getNodeById(link.origin_id);
            inputs[spec.name] = { node: source.properties.id, output: source.outputs[link.origin_slot].name };
            continue;
          }
          if (node.properties.pending[spec.name]) { inputs[spec.name] = node.properties.pending[spec.name]; continue; }
          if (node.properties.unset.includes(spec.name)) continue;
          const widget = this.widgetFor(node, spec.name);
          if (widget) inputs[spec.name] = widget.value;
          else if (spec.name in node.properties.extra) inputs[spec.name] = node.properties.extra[spec.name];
        }
        for (const [name, value] of Object.entries(node.properties.extra)) {
          if (!(name in inputs)) inputs[name] = value;
        }
        nodes[id] = { type: node.gtype, inputs };
        const mode = Object.keys(MODES).find((name) => MODES[name] === node.mode) ?? node.properties.rawMode;
        if (mode !== undefined) nodes[id].mode = mode;
      }
      const place = { ...(node.properties.layout || {}), pos: [Math.round(node.pos[0]), Math.round(node.pos[1])],
        size: [Math.round(node.size[0]), Math.round(node.size[1])] };
      if (node.type !== UNKNOWN && node.title && node.title !== node.gtype) place.title = node.title;
      for (const look of LOOKS) if (node[look]) place[look] = node[look];
      if (node.flags?.collapsed) place.collapsed = true;
      if (node.flags?.pinned) place.pinned = true;
      const reroutes = this.exportReroutes(node);
      if (reroutes) place.reroutes = reroutes;
      const seeds = node.properties.seedControl || {};
      if (Object.keys(seeds).length) place.seed_control = { ...seeds };
      layout[id] = place;
    }
    return { format: FORMAT, nodes, layout, groups: this.exportGroups(), meta: this.meta };
  }

  // ---- editor data: groups and reroutes ----------------------------------------------------

  // Group entries other editors wrote (not a title and a bounding box) are kept as they were.
  loadGroups(entries) {
    this.otherGroups = [];
    for (const entry of entries) {
      const bounding = entry?.bounding;
      if (!entry || typeof entry !== "object" || !Array.isArray(bounding) || bounding.length !== 4 || !bounding.every(Number.isFinite)) {
        this.otherGroups.push(entry);
        continue;
      }
      const group = new LGraphGroup(String(entry.title ?? "Group"));
      group.configure({ ...entry, id: undefined, title: String(entry.title ?? "Group") });
      if (entry.color === undefined) delete group.color;
      group.gouacheEntry = entry;
      this.graph.add(group);
    }
  }

  exportGroups() {
    const groups = (this.graph._groups || []).map((group) => {
      const { id: _id, flags: _flags, color: _color, font_size: _size, ...kept } = group.gouacheEntry || {};
      const entry = { ...kept, title: group.title, bounding: [...group._bounding].map(Math.round) };
      if (group.color) entry.color = group.color;
      if (group.font_size !== (LiteGraph.DEFAULT_GROUP_FONT || 24) || group.gouacheEntry?.font_size !== undefined) entry.font_size = group.font_size;
      if (group.pinned) entry.flags = { pinned: true };
      return entry;
    });
    return [...groups, ...(this.otherGroups || [])];
  }

  // A link's reroutes, origin side first, as positions; links through the same reroutes share them.
  loadReroutes(link, positions, made) {
    if (!Array.isArray(positions)) return;
    let parent;
    let key = `${link.origin_id}:${link.origin_slot}`;
    for (const pos of positions) {
      if (!Array.isArray(pos) || pos.length !== 2 || !pos.every(Number.isFinite)) return;
      key += `|${pos[0]},${pos[1]}`;
      let reroute = made.get(key);
      if (!reroute) {
        reroute = this.graph.setReroute({ parentId: parent?.id, pos: [...pos], linkIds: [] });
        made.set(key, reroute);
      }
      reroute.linkIds.add(link.id);
      parent = reroute;
    }
    if (parent) link.parentId = parent.id;
  }

  exportReroutes(node) {
    const out = {};
    for (const slot of node.inputs || []) {
      const link = slot.link != null ? this.graph.getLink(slot.link) : null;
      if (!link?.parentId) continue;
      const chain = this.graph.reroutes.get(link.parentId)?.getReroutes() || [];
      if (chain.length) out[slot.name] = chain.map((reroute) => [Math.round(reroute.pos[0]), Math.round(reroute.pos[1])]);
    }
    return Object.keys(out).length ? out : null;
  }

  // ---- node modes --------------------------------------------------------------------------

  /** Set "bypass", "mute" or null (active) on `nodes`. */
  setMode(nodes, mode) {
    for (const node of nodes) {
      if (node.type === UNKNOWN) continue;
      node.mode = MODES[mode] ?? 0;
      delete node.properties.rawMode;
    }
    this.canvas.setDirty(true, true);
    this.changed();
  }

  modeOf(node) {
    return Object.keys(MODES).find((name) => MODES[name] === node.mode) ?? null;
  }

  // Once a run is queued, each seed follows its control: fixed, increment, decrement or randomize
  // (within the input's exact limits from /api/nodes).
  randomizeSeeds() {
    for (const node of this.graph._nodes) {
      for (const [name, control] of Object.entries(node.properties.seedControl || {})) {
        if (control === "fixed") continue;
        const widget = this.widgetFor(node, name);
        const spec = this.infos.get(node.gtype).inputs.find((s) => s.name === name);
        if (!widget) continue;
        widget.value = nextSeed(widget.value, control, spec);
        node.properties.unset = node.properties.unset.filter((item) => item !== name);
      }
    }
    this.canvas.setDirty(true, true);
    this.changed();
  }

  // ---- run state on nodes ----------------------------------------------------------------

  stateOf(id) {
    if (!this.status.has(id)) this.status.set(id, { state: null, progress: null, errors: [], images: [], preview: null });
    return this.status.get(id);
  }

  resetRunState() {
    for (const status of this.status.values()) { status.state = null; status.progress = null; status.note = null; status.errors = []; status.preview = null; }
    this.canvas.setDirty(true, true);
  }

  clearErrors(id, input) {
    const status = this.status.get(id);
    if (!status) return;
    status.errors = input === undefined ? [] : status.errors.filter((error) => error.input !== input);
    this.canvas.setDirty(true, true);
  }

  setImages(id, images) {
    const status = this.stateOf(id);
    status.images = images.map((image) => {
      const element = new Image();
      element.onload = () => this.canvas.setDirty(true, true);
      element.src = api.fileUrl(image);
      element.dataset.path = image.path;
      return element;
    });
    status.preview = null;
    const node = this.nodeById(id);
    if (node && status.images.length) node.size[1] = Math.max(node.size[1], node.baseHeight + IMAGE_HEIGHT);
    this.canvas.setDirty(true, true);
  }

  setPreview(id, blob) {
    const status = this.stateOf(id);
    const element = new Image();
    element.onload = () => {
      if (status.preview?.src) URL.revokeObjectURL(status.preview.src);
      status.preview = element;
      this.canvas.setDirty(true, true);
    };
    element.src = URL.createObjectURL(blob);
    const node = this.nodeById(id);
    if (node) node.size[1] = Math.max(node.size[1], node.baseHeight + IMAGE_HEIGHT);
  }

  // The live preview, else every image the node made (a batch as a grid), fitted below the widgets.
  drawImage(node, ctx) {
    const status = this.status.get(node.properties.id);
    const images = (status?.preview ? [status.preview] : status?.images || []).filter((image) => image.complete && image.naturalWidth);
    if (!images.length) return;
    const top = node.baseHeight + 4;
    const width = node.size[0] - 10;
    const height = node.size[1] - top - 5;
    if (height < 20) return;
    const columns = Math.ceil(Math.sqrt(images.length));
    const rows = Math.ceil(images.length / columns);
    const cellWidth = width / columns;
    const cellHeight = height / rows;
    images.forEach((image, index) => {
      const scale = Math.min((cellWidth - 2) / image.naturalWidth, (cellHeight - 2) / image.naturalHeight);
      const w = image.naturalWidth * scale;
      const h = image.naturalHeight * scale;
      const x = 5 + (index % columns) * cellWidth + (cellWidth - w) / 2;
      const y = top + Math.floor(index / columns) * cellHeight + (cellHeight - h) / 2;
      ctx.drawImage(image, x, y, w, h);
    });
  }

  drawState(node, ctx) {
    const status = this.status.get(node.properties.id);
    const titleHeight = LiteGraph.NODE_TITLE_HEIGHT;
    const [width, height] = node.size;
    const look = MODE_LOOK[node.mode];
    // Zoomed far out (see lowdetail.js): the mode's fill and the state's outline, at least two screen
    // pixels wide; text and the marks on single inputs would be too small to read.
    const low = isLowDetail(this.canvas);
    const least = low ? 2 / this.canvas.ds.scale : 0;
    if (look && !node.flags?.collapsed) {
      ctx.fillStyle = look.fill;
      ctx.fillRect(0, -titleHeight, width, height + titleHeight);
      if (!low) {
        ctx.fillStyle = look.text;
        ctx.font = "bold 12px sans-serif";
        ctx.textAlign = "right";
        ctx.fillText(look.label, width - 6, -titleHeight + 15);
        ctx.textAlign = "left";
      }
    }
    if (!status) return;
    const outline = { running: "#5b9bd5", cached: "#8a8a8a", done: "#6cbf6c", error: "#e05a5a" }[status.state];
    if (status.errors.length) ctx.strokeStyle = "#e05a5a";
    else if (outline) ctx.strokeStyle = outline;
    if (outline || status.errors.length) {
      ctx.lineWidth = Math.max(status.state === "running" || status.errors.length ? 3 : 1.5, least);
      ctx.strokeRect(-2, -titleHeight - 2, width + 4, height + titleHeight + 4);
    }
    if (status.state === "running" && status.progress) {
      const fraction = status.progress.max ? status.progress.value / status.progress.max : 0;
      ctx.fillStyle = "#5b9bd5";
      ctx.fillRect(0, -Math.max(4, least), width * fraction, Math.max(4, least));
    }
    if (low) return;
    if (status.state === "cached") {
      ctx.fillStyle = "#8a8a8a";
      ctx.font = "11px sans-serif";
      ctx.textAlign = "right";
      ctx.fillText("cached", width - 6, -titleHeight + 14);
      ctx.textAlign = "left";
    }
    if (status.state === "running" && status.note) {  // what a node does before it can count steps ("loading ...")
      ctx.fillStyle = "#5b9bd5";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "right";
      ctx.fillText(status.note, width - 6, -titleHeight + 14);
      ctx.textAlign = "left";
    }
    let y = height + 16;
    ctx.font = "12px sans-serif";
    for (const error of status.errors) {
      if (error.input) {
        const index = node.inputs?.findIndex((slot) => slot.name === error.input) ?? -1;
        if (index >= 0) {
          const [x, sy] = node.getInputPos(index);
          ctx.beginPath();
          ctx.arc(x - node.pos[0], sy - node.pos[1], 7, 0, Math.PI * 2);
          ctx.strokeStyle = "#e05a5a";
          ctx.lineWidth = 2;
          ctx.stroke();
        }
        const widget = this.widgetFor(node, error.input);
        if (widget && widget.y) {
          ctx.strokeStyle = "#e05a5a";
          ctx.strokeRect(12, widget.y, width - 24, LiteGraph.NODE_WIDGET_HEIGHT);
        }
      }
      ctx.fillStyle = "#e05a5a";
      const text = (error.input ? `${error.input}: ` : "") + error.message;
      for (const line of wrap(ctx, text, Math.max(width, 240))) {
        ctx.fillText(line, 0, y);
        y += 15;
      }
    }
  }
}

function wrap(ctx, text, width) {
  const lines = [];
  let line = "";
  for (const word of String(text).split(/\s+/)) {
    const candidate = line ? `${line} ${word}` : word;
    if (ctx.measureText(candidate).width > width && line) { lines.push(line); line = word; } else { line = candidate; }
  }
  if (line) lines.push(line);
  return lines.slice(0, 6);
}

// Positions for nodes a workflow gives no layout for: columns by dependency depth.
function autoLayout(workflow) {
  const depth = new Map();
  const entries = workflow.nodes;
  const visit = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id) || !entries[id]) return 0;
    seen.add(id);
    let d = 0;
    for (const value of Object.values(entries[id].inputs || {})) {
      if (isLink(value)) d = Math.max(d, visit(value.node, seen) + 1);
    }
    depth.set(id, d);
    return d;
  };
  const rows = new Map();
  const positions = new Map();
  for (const id of Object.keys(entries)) {
    const d = visit(id);
    const row = rows.get(d) || 0;
    rows.set(d, row + 1);
    positions.set(id, [40 + d * 320, 40 + row * 260]);
  }
  return positions;
}
