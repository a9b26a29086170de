// The editor page: palette and search, toolbar, queue and problems panels, live run state,
// undo/redo, copy/paste, drag-and-drop, and the extension API (window.gouache).

import { LiteGraph } from "../vendor/litegraph/litegraph.es.js";
import { api, ApiError, Live } from "./api.js";
import { Editor, FORMAT, isLink } from "./editor.js";
import { pngText } from "./png.js";
import { dropImage } from "./drop.js";
import { Tabs } from "./tabs.js";
import { parseJson } from "./json.js";
import { Minimap } from "./minimap.js";
import { installHelp } from "./help.js";
import { Outputs } from "./outputs.js";
import { ModelDefaults } from "./modeldefaults.js";
import { showDescription, workflowItem } from "./library.js";
import { seedSweep } from "./batch.js";

const $ = (selector) => document.querySelector(selector);
const customWidgets = new Map();
const listeners = new Map();
let editor;
let currentName = null;
let tabs;
const queue = new Map(); // run_id -> {status, position, node, progress}
let outputs;
let modelDefaults;
// What the websocket last said of each run: the status line never goes back to "queued" once the
// run started or ended, whichever of the POST reply and the events comes first.
const runStates = new Map(); // run_id -> queued | running | succeeded | failed | interrupted | cancelled

// ---- undo / redo -----------------------------------------------------------------------------

const history = { stack: [], index: -1, pending: false, restoring: false };

// One snapshot per gesture: changes made while handling one event coalesce in a microtask.
function checkpoint() {
  if (history.restoring || history.pending) return;
  history.pending = true;
  queueMicrotask(() => {
    history.pending = false;
    const snapshot = JSON.stringify(editor.export());
    if (snapshot === history.stack[history.index]) return;
    history.stack = history.stack.slice(0, history.index + 1);
    history.stack.push(snapshot);
    if (history.stack.length > 200) history.stack.shift();
    history.index = history.stack.length - 1;
  });
}

function resetHistory() {
  history.stack = [JSON.stringify(editor.export())];
  history.index = 0;
}

function restore(step) {
  const snapshot = JSON.stringify(editor.export());
  if (snapshot !== history.stack[history.index]) {  // keep what was not checkpointed yet
    history.stack = history.stack.slice(0, history.index + 1);
    history.stack.push(snapshot);
    history.index = history.stack.length - 1;
  }
  const target = history.index + step;
  if (target < 0 || target >= history.stack.length) return;
  history.index = target;
  history.restoring = true;
  try {
    const statuses = new Map(editor.status);
    editor.load(parseJson(history.stack[target]));  // exact big integers (seeds) survive undo
    for (const [id, status] of statuses) editor.status.set(id, status);
  } finally {
    history.restoring = false;
  }
}

// ---- messages and problems -------------------------------------------------------------------

function say(text) {
  $("#message").textContent = text;
}

function showProblems(problems) {
  for (const status of editor.status.values()) status.errors = [];
  const list = $("#problems");
  list.replaceChildren();
  for (const problem of problems) {
    if (problem.node) editor.stateOf(problem.node).errors.push({ input: problem.input, message: problem.message });
    const item = document.createElement("li");
    item.dataset.node = problem.node ?? "";
    item.dataset.input = problem.input ?? "";
    item.dataset.code = problem.code ?? "";
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = [problem.node, problem.input].filter(Boolean).join(".") || "workflow";
    item.append(where, document.createTextNode(problem.message));
    item.onclick = () => { const node = editor.nodeById(problem.node); if (node) { editor.canvas.centerOnNode(node); editor.canvas.selectNodes([node]); } };
    list.append(item);
  }
  editor.canvas.setDirty(true, true);
}

function showPackErrors(packs) {
  // A pack that failed to import or register: its nodes are missing, and the user should know why.
  const list = $("#pack-errors");
  list.replaceChildren();
  for (const pack of packs.filter((p) => p.status === "error")) {
    const item = document.createElement("li");
    item.dataset.pack = pack.name;
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = `pack ${pack.name}`;
    item.append(where, document.createTextNode(`failed to load: ${pack.error}`));
    list.append(item);
  }
}

// ---- running ---------------------------------------------------------------------------------

async function run() {
  const workflow = editor.export();
  showProblems([]);  // before posting: a fast run may report its own errors before the reply comes
  const count = Math.max(1, Math.min(100, Math.floor(Number($("#run-count").value)) || 1));
  try {
    if (count > 1) { await runMany(workflow, count); return; }
    const queued = await api.post("/api/runs", { workflow });
    if ((runStates.get(queued.run_id) ?? "queued") === "queued") say(`queued (position ${queued.position})`);
    editor.randomizeSeeds();
  } catch (error) {
    if (error instanceof ApiError && error.body?.problems) {
      showProblems(error.body.problems);
      say(`cannot run: ${error.body.problems.length} problem(s)`);
    } else {
      say(`cannot run: ${error.message}`);
    }
  }
}

// N runs, the seeds going up by one from run to run; each seed then follows its control once per run.
async function runMany(workflow, count) {
  const batch = seedSweep(editor, count);
  if (!batch) { say(`cannot queue ${count} runs: the graph has no typed-in seed to vary`); return; }
  const { runs } = await api.post("/api/runs", { workflow, sweep: batch.sweep, zip: batch.zip });
  const [first] = Object.values(batch.sweep);
  // As for one run: the line says "queued" only while no event has told that one of them started.
  if (runs.every((queued) => (runStates.get(queued.run_id) ?? "queued") === "queued")) {
    say(`queued ${runs.length} runs, seeds ${first[0]} to ${first[first.length - 1]}`);
  }
  for (let index = 0; index < runs.length; index++) editor.randomizeSeeds();
}

function renderQueue() {
  const list = $("#queue");
  list.replaceChildren();
  const entries = [...queue.entries()].sort((a, b) => (a[1].status === "running" ? -1 : 0) - (b[1].status === "running" ? -1 : 0) || (a[1].position ?? 0) - (b[1].position ?? 0));
  for (const [runId, entry] of entries) {
    const item = document.createElement("li");
    item.dataset.run = runId;
    item.dataset.status = entry.status;
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = runId.slice(0, 8);
    const state = document.createElement("span");
    const note = entry.node ? editor.status.get(entry.node)?.note : null;
    state.textContent = entry.status === "running" ? `running ${entry.node ?? ""}${note ? ` (${note})` : ""}` : "queued";
    const cancel = document.createElement("button");
    cancel.textContent = entry.status === "running" ? "stop" : "cancel";
    cancel.className = "cancel";
    cancel.onclick = () => api.delete(`/api/runs/${runId}`).catch((error) => say(error.message));
    item.append(id, state, cancel);
    if (entry.status === "running" && entry.progress) {
      const bar = document.createElement("progress");
      bar.max = entry.progress.max;
      bar.value = entry.progress.value;
      item.append(bar);
    }
    list.append(item);
  }
}

function nodeTitle(id) {
  const node = editor.nodeById(id);
  return node && node.title && node.title !== node.gtype ? `${node.title} (${id})` : id;
}

// What a node is doing as it starts: a loader says which model it loads (seconds on a first run).
function startNote(id) {
  const node = editor.nodeById(id);
  const info = node && editor.infos.get(node.gtype);
  if (!info || info.category !== "loaders") return null;
  const named = info.inputs.find((spec) => spec.choices_from && editor.widgetFor(node, spec.name));
  return named ? `loading ${editor.widgetFor(node, named.name).value}…` : "loading…";
}

function setNode(id, change) {
  if (!editor.nodeById(id)) return;
  Object.assign(editor.stateOf(id), change);
  editor.canvas.setDirty(true, true);
}

function handle(message) {
  const { type, data } = message;
  switch (type) {
    case "state": {
      queue.clear();
      for (const entry of data.queue) queue.set(entry.run_id, { status: entry.status, position: entry.position });
      const running = data.running;
      if (running) {
        editor.resetRunState();
        runStates.set(running.run_id, "running");
        for (const id of running.cached) setNode(id, { state: "cached" });
        for (const id of running.executed) setNode(id, { state: "done" });
        for (const [id, images] of Object.entries(running.images)) if (editor.nodeById(id)) editor.setImages(id, images);
        if (running.node) setNode(running.node, { state: "running", progress: running.progress, note: running.progress ? null : startNote(running.node) });
        const note = running.node ? editor.stateOf(running.node).note : null;
        say(running.node ? `running ${nodeTitle(running.node)}${running.progress ? `: ${running.progress.value}/${running.progress.max}` : note ? `: ${note}` : ""}` : `running ${running.run_id.slice(0, 8)}`);
        queue.set(running.run_id, { ...(queue.get(running.run_id) || {}), status: "running", node: running.node, progress: running.progress });
      }
      renderQueue();
      break;
    }
    case "queued":
      queue.set(data.run_id, { status: "queued", position: data.position });
      if (!runStates.has(data.run_id)) runStates.set(data.run_id, "queued");
      renderQueue();
      break;
    case "cancelled":
      queue.delete(data.run_id);
      runStates.set(data.run_id, "cancelled");
      outputs.ended(data);
      renderQueue();
      break;
    case "started":
      editor.resetRunState();
      queue.set(data.run_id, { status: "running" });
      runStates.set(data.run_id, "running");
      say(`running ${data.run_id.slice(0, 8)}`);
      renderQueue();
      break;
    case "node_started":
      setNode(data.node, { state: "running", progress: null, note: startNote(data.node) });
      queue.set(data.run_id, { status: "running", node: data.node });
      say(`running ${nodeTitle(data.node)}${editor.stateOf(data.node).note ? `: ${editor.stateOf(data.node).note}` : ""}`);
      renderQueue();
      break;
    case "progress":
      setNode(data.node, { state: "running", progress: { value: data.value, max: data.max }, note: null });
      say(`running ${nodeTitle(data.node)}: ${data.value}/${data.max}`);
      queue.set(data.run_id, { status: "running", node: data.node, progress: { value: data.value, max: data.max } });
      renderQueue();
      break;
    case "preview":
      if (editor.nodeById(data.node)) editor.setPreview(data.node, data.jpeg);
      break;
    case "node_cached":
      setNode(data.node, { state: "cached" });
      if (data.images?.length && editor.nodeById(data.node)) editor.setImages(data.node, data.images);
      break;
    case "node_finished":
      setNode(data.node, { state: "done", progress: null, note: null });
      if (data.images?.length && editor.nodeById(data.node)) editor.setImages(data.node, data.images);
      break;
    case "node_error":
      // A run-time error that names its input rings that input, as a validation problem does.
      setNode(data.node, { state: "error" });
      if (editor.nodeById(data.node)) showProblems([{ node: data.node, input: data.input, code: data.code, message: data.message }]);
      break;
    case "interrupted":
      say("interrupted");
      break;
    case "finished":
      queue.delete(data.run_id);
      runStates.set(data.run_id, data.status);
      renderQueue();
      outputs.ended(data);
      for (const status of editor.status.values()) if (status.state === "running") { status.state = null; status.note = null; }
      say(`run ${data.status} in ${Number(data.seconds).toFixed(1)} s`);
      editor.canvas.setDirty(true, true);
      break;
    default:
      break;
  }
  for (const handler of listeners.get(type) || []) {
    try { handler(data); } catch (error) { console.error(error); }
  }
}

// ---- palette and search ----------------------------------------------------------------------

function matches(info, query) {
  const text = `${info.type} ${info.category} ${info.description}`.toLowerCase();
  return query.toLowerCase().split(/\s+/).every((word) => text.includes(word));
}

function addAtCenter(type) {
  const canvas = editor.canvas;
  let [x, y] = canvas.convertOffsetToCanvas([canvas.canvas.clientWidth / 3, canvas.canvas.clientHeight / 4]);
  // Step down and right until the new node covers no other node's top-left corner area.
  const busy = (px, py) => editor.graph._nodes.some((n) => Math.abs(n.pos[0] - px) < 200 && Math.abs(n.pos[1] - py) < 120);
  for (let step = 0; step < 60 && busy(x, y); step++) {
    if (step % 4 === 3) { x += 280; y -= 3 * 140; } else { y += 140; }
  }
  const node = editor.addNode(type, [x, y]);
  checkpoint();
  return node;
}

function renderPalette() {
  const query = $("#palette-search").value.trim();
  const list = $("#palette-list");
  list.replaceChildren();
  const byCategory = new Map();
  for (const info of editor.infos.values()) {
    if (info.deprecated || (query && !matches(info, query))) continue;
    if (!byCategory.has(info.category)) byCategory.set(info.category, []);
    byCategory.get(info.category).push(info);
  }
  for (const category of [...byCategory.keys()].sort()) {
    const details = document.createElement("details");
    details.open = Boolean(query) || byCategory.size < 8;
    details.dataset.category = category;
    const summary = document.createElement("summary");
    summary.textContent = category;
    details.append(summary);
    for (const info of byCategory.get(category)) {
      const button = document.createElement("button");
      button.className = "node-item";
      button.dataset.type = info.type;
      button.textContent = info.type;
      button.title = info.description;
      button.onclick = () => addAtCenter(info.type);
      details.append(button);
    }
    list.append(details);
  }
}

const search = { pos: [0, 0], active: 0, results: [] };

function openSearch(clientX, clientY) {
  const box = $("#canvas-box").getBoundingClientRect();
  const popup = $("#search-popup");
  search.pos = editor.canvas.convertOffsetToCanvas([clientX - box.left, clientY - box.top]);
  popup.style.left = `${clientX - box.left}px`;
  popup.style.top = `${clientY - box.top}px`;
  popup.hidden = false;
  $("#search-input").value = "";
  renderSearch();
  $("#search-input").focus();
}

function renderSearch() {
  const query = $("#search-input").value.trim();
  const q = query.toLowerCase();
  const rank = (info) => {
    const name = info.type.toLowerCase();
    return name === q ? 0 : name.startsWith(q) ? 1 : name.includes(q) ? 2 : 3;
  };
  search.results = [...editor.infos.values()]
    .filter((info) => !info.deprecated && (!query || matches(info, query)))
    .sort((a, b) => rank(a) - rank(b) || a.type.localeCompare(b.type))
    .slice(0, 30);
  search.active = 0;
  const list = $("#search-results");
  list.replaceChildren();
  search.results.forEach((info, index) => {
    const item = document.createElement("li");
    item.dataset.type = info.type;
    item.textContent = info.type;
    const category = document.createElement("small");
    category.textContent = info.category;
    item.append(category);
    item.onmousedown = (event) => { event.preventDefault(); chooseSearch(index); };
    list.append(item);
  });
  highlightSearch();
}

function highlightSearch() {
  [...$("#search-results").children].forEach((item, index) => item.classList.toggle("active", index === search.active));
}

function chooseSearch(index) {
  const info = search.results[index];
  $("#search-popup").hidden = true;
  if (info) { editor.addNode(info.type, search.pos); checkpoint(); }
  $("#graph").focus();
}

// ---- files: open, save, export, drop, upload -------------------------------------------------

function loadWorkflow(workflow, name = null) {
  tabs?.beforeOpen(name);
  editor.load(workflow);
  editor.fitView();
  currentName = name;
  $("#workflow-name").textContent = name || workflow.meta?.title || "untitled";
  showDescription(workflow.meta);
  showProblems([]);
  resetHistory();
  tabs?.afterOpen();
}

// A finished run's workflow, its nodes showing the images that run made.
function openRunWorkflow(workflow, title, record) {
  loadWorkflow(workflow, null);
  $("#workflow-name").textContent = title;
  for (const [id, output] of Object.entries(record.outputs || {})) {
    if (output.images?.length && editor.nodeById(id)) editor.setImages(id, output.images);
  }
}

// A gouache workflow (JSON, or a PNG carrying one) opens here; anything else (ComfyUI's JSON or PNGs,
// A1111's PNGs) goes to the server's importers, and what they could not convert is listed as problems.
async function openFile(file) {
  try {
    const isPng = file.type === "image/png" || /\.png$/i.test(file.name);
    let workflow = isPng ? gouacheWorkflowInPng(await file.arrayBuffer()) : parseJson(await file.text());
    let problems = [];
    if (!workflow || typeof workflow !== "object" || !("format" in workflow)) {
      ({ workflow, problems } = await api.post("/api/import", file));
    }
    loadWorkflow(workflow, file.name.replace(/\.(json|png)$/i, ""));
    showProblems(problems);
    say(problems.length ? `imported ${file.name}: ${problems.length} problem(s) to fix` : `opened ${file.name}`);
  } catch (error) {
    if (error instanceof ApiError && error.body?.problems) showProblems(error.body.problems);
    say(`cannot open ${file.name}: ${error.message}`);
  }
}

function gouacheWorkflowInPng(buffer) {
  const text = pngText(buffer).workflow;
  if (!text) return null;
  try { return parseJson(text); } catch { return null; }  // not JSON: the server's importers judge it
}

async function showOpenDialog() {
  const dialog = $("#open-dialog");
  const list = $("#workflow-list");
  list.replaceChildren();
  const { workflows } = await api.get("/api/workflows");
  for (const entry of workflows) {
    list.append(workflowItem(entry, async () => {
      loadWorkflow(await api.get(`/api/workflows/${encodeURIComponent(entry.name)}`), entry.name);
      dialog.close();
    }));
  }
  dialog.showModal();
}

async function save() {
  let name = currentName;
  for (;;) {
    name = prompt("Save the workflow as:", name || "my-workflow");
    if (!name) return;
    try {
      await api.put(`/api/workflows/${encodeURIComponent(name)}`, editor.export());
      currentName = name;
      $("#workflow-name").textContent = name;
      say(`saved as ${name}`);
      tabs.saved();
      return;
    } catch (error) {
      if (error.status === 409) { say(error.message); name = `${name}-copy`; continue; }
      say(`cannot save: ${error.message}`);
      return;
    }
  }
}

function exportFile() {
  const blob = new Blob([JSON.stringify(editor.export(), null, 2)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${currentName || "workflow"}.json`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

let uploadTarget = null;

function requestUpload(node, input) {
  uploadTarget = { node, input };
  $("#upload-file").click();
}

async function uploadImage(file, target) {
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const uploaded = await api.post("/api/uploads", form);
    const spec = editor.infos.get(target.node.gtype).inputs.find((s) => s.name === target.input);
    const widget = editor.widgetFor(target.node, target.input);
    if (spec.choices && !spec.choices.includes(uploaded.name)) spec.choices.push(uploaded.name);
    if (widget?.options?.values && Array.isArray(widget.options.values) && !widget.options.values.includes(uploaded.name)) widget.options.values.push(uploaded.name);
    editor.setWidgetValue(target.node, target.input, uploaded.name);
    editor.setImages(target.node.properties.id, [uploaded]);
    checkpoint();
    say(`uploaded ${uploaded.name}`);
  } catch (error) {
    say(`upload refused: ${error.message}`);
  }
}

// ---- copy / paste ----------------------------------------------------------------------------

const CLIPBOARD_KEY = "gouache.clipboard";

function copySelection() {
  const selected = Object.values(editor.canvas.selected_nodes || {});
  if (!selected.length) return;
  const ids = new Set(selected.map((node) => node.properties.id));
  const whole = editor.export();
  const nodes = {};
  const layout = {};
  for (const id of ids) {
    nodes[id] = whole.nodes[id];
    layout[id] = whole.layout[id];
  }
  localStorage.setItem(CLIPBOARD_KEY, JSON.stringify({ format: FORMAT, nodes, layout }));
  say(`copied ${ids.size} node(s)`);
}

function paste() {
  const text = localStorage.getItem(CLIPBOARD_KEY);
  if (!text) return;
  const clip = parseJson(text);
  const whole = editor.export();
  const taken = new Set(Object.keys(whole.nodes));
  const rename = new Map();
  for (const id of Object.keys(clip.nodes)) {
    let fresh = id;
    for (let index = 2; taken.has(fresh); index++) fresh = `${id.replace(/_\d+$/, "")}_${index}`;
    taken.add(fresh);
    rename.set(id, fresh);
  }
  const [mx, my] = editor.canvas.graph_mouse || [0, 0];
  const positions = Object.values(clip.layout).map((place) => place.pos);
  const minX = Math.min(...positions.map((p) => p[0]));
  const minY = Math.min(...positions.map((p) => p[1]));
  for (const [id, entry] of Object.entries(clip.nodes)) {
    const inputs = {};
    for (const [name, value] of Object.entries(entry.inputs)) {
      if (isLink(value)) {
        if (rename.has(value.node)) inputs[name] = { node: rename.get(value.node), output: value.output };
        else if (value.node in whole.nodes) inputs[name] = value;
      } else {
        inputs[name] = value;
      }
    }
    const fresh = rename.get(id);
    whole.nodes[fresh] = { ...entry, inputs };  // its mode (bypass, mute) comes along
    // Reroute points stay where they were drawn: a pasted node's links go straight.
    const { reroutes: _bends, ...place } = clip.layout[id];
    whole.layout[fresh] = { ...place, pos: [place.pos[0] - minX + mx, place.pos[1] - minY + my] };
  }
  const statuses = new Map(editor.status);
  editor.load(whole);
  for (const [id, status] of statuses) editor.status.set(id, status);
  editor.canvas.selectNodes([...rename.values()].map((id) => editor.nodeById(id)));
  checkpoint();
}

// ---- extension API ---------------------------------------------------------------------------

const gouache = {
  version: 1,
  LiteGraph,
  api,
  get editor() { return editor; },
  get graph() { return editor.graph; },
  get canvas() { return editor.canvas; },
  /** Provide a widget for inputs declared with ``widget=name``: factory(node, input, value) -> widget. */
  addWidget(name, factory) { customWidgets.set(name, factory); },
  /** Call handler(data) for every websocket event of this type. */
  on(type, handler) {
    if (!listeners.has(type)) listeners.set(type, []);
    listeners.get(type).push(handler);
  },
  loadWorkflow: (workflow, name) => loadWorkflow(workflow, name),
  exportWorkflow: () => editor.export(),
  run: () => run(),
  ready: null,
  // Screen positions for tests and tools (client coordinates).
  slotPosition(id, kind, name) {
    editor.canvas.draw(true, true);
    const node = editor.nodeById(id);
    const slots = kind === "input" ? node.inputs : node.outputs;
    const index = slots.findIndex((slot) => slot.name === name);
    const pos = kind === "input" ? node.getInputPos(index) : node.getOutputPos(index);
    return toClient(pos);
  },
  widgetPosition(id, name) {
    editor.canvas.draw(true, true); // widget positions are laid out while drawing: make them current
    const node = editor.nodeById(id);
    const widget = editor.widgetFor(node, name) || node.widgets.find((w) => w.name === name);
    const at = () => toClient([node.pos[0] + node.size[0] / 2, node.pos[1] + widget.y + LiteGraph.NODE_WIDGET_HEIGHT / 2]);
    const [x, y] = at();
    if (document.elementFromPoint(x, y) !== $("#graph")) {  // off the visible canvas, or under a panel: bring it in
      editor.canvas.centerOnNode(node);
      editor.canvas.draw(true, true);
    }
    return at();
  },
  nodeState(id) {
    const status = editor.status.get(id);
    if (!status) return null;
    return { state: status.state, progress: status.progress, errors: status.errors, note: status.note ?? null,
      images: status.images.map((image) => image.dataset.path), preview: Boolean(status.preview) };
  },
  nodeIds: () => editor.graph._nodes.map((node) => node.properties.id),
  links: () => [...editor.graph._links.values()].map((link) => ({
    from: editor.graph.getNodeById(link.origin_id).properties.id,
    to: editor.graph.getNodeById(link.target_id).properties.id,
    type: link.type })),
};

function toClient([x, y]) {
  const [cx, cy] = editor.canvas.ds.convertOffsetToCanvas([x, y]);
  const rect = $("#graph").getBoundingClientRect();
  return [rect.left + cx, rect.top + cy];
}

async function loadExtensions() {
  let extensions = [];
  try { ({ extensions } = await api.get("/api/extensions")); } catch (error) { say(`extensions unavailable: ${error.message}`); }
  for (const extension of extensions) {
    for (const href of extension.styles) {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      document.head.append(link);
    }
    for (const src of extension.scripts) {
      try {
        const module = await import(src);
        await module.default?.(gouache);
      } catch (error) {
        console.error(`extension ${extension.name} failed`, error);
        say(`extension ${extension.name} failed: ${error.message}`);
      }
    }
  }
}

// ---- boot ------------------------------------------------------------------------------------

function fitCanvas() {
  const element = $("#graph");
  const box = $("#canvas-box");
  element.width = box.clientWidth;
  element.height = box.clientHeight;
  editor?.canvas.setDirty(true, true);
}

function bindKeys() {
  window.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    const ctrl = event.ctrlKey || event.metaKey;
    if (!ctrl || typing) return;
    const key = event.key.toLowerCase();
    const actions = { z: () => restore(event.shiftKey ? 1 : -1), y: () => restore(1), c: copySelection, v: paste,
      s: save, enter: run };
    if (actions[key]) {
      event.preventDefault();
      event.stopImmediatePropagation();
      actions[key]();
    }
  }, true);
  // Any gesture on the canvas may have changed the graph (moved, linked, deleted): checkpoint.
  for (const type of ["pointerup", "keyup"]) window.addEventListener(type, () => checkpoint());
}

function bindUi() {
  $("#run").onclick = run;
  $("#open").onclick = showOpenDialog;
  $("#save").onclick = save;
  $("#export").onclick = exportFile;
  $("#undo").onclick = () => restore(-1);
  $("#redo").onclick = () => restore(1);
  $("#palette-search").oninput = renderPalette;
  $("#open-file").onchange = (event) => { if (event.target.files[0]) openFile(event.target.files[0]); $("#open-dialog").close(); };
  $("#upload-file").onchange = (event) => {
    if (event.target.files[0] && uploadTarget) uploadImage(event.target.files[0], uploadTarget);
    event.target.value = "";
  };
  $("#graph").addEventListener("dblclick", (event) => {
    const [x, y] = editor.canvas.convertEventToCanvasOffset(event);
    if (!editor.graph.getNodeOnPos(x, y)) openSearch(event.clientX, event.clientY);
  });
  $("#search-input").oninput = renderSearch;
  $("#search-input").onkeydown = (event) => {
    if (event.key === "ArrowDown") { search.active = Math.min(search.active + 1, search.results.length - 1); highlightSearch(); event.preventDefault(); }
    else if (event.key === "ArrowUp") { search.active = Math.max(search.active - 1, 0); highlightSearch(); event.preventDefault(); }
    else if (event.key === "Enter") { chooseSearch(search.active); event.preventDefault(); }
    else if (event.key === "Escape") { $("#search-popup").hidden = true; }
  };
  $("#search-input").onblur = () => { $("#search-popup").hidden = true; };
  const box = $("#canvas-box");
  box.addEventListener("dragover", (event) => { event.preventDefault(); box.classList.add("dropping"); });
  box.addEventListener("dragleave", () => box.classList.remove("dropping"));
  box.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    box.classList.remove("dropping");
    const file = event.dataTransfer?.files?.[0];
    if (file) dropImage(editor, event, file, uploadImage).then((uploaded) => { if (!uploaded) openFile(file); });
  }, true);
  new ResizeObserver(fitCanvas).observe(box);
}

async function boot() {
  fitCanvas();
  editor = new Editor($("#graph"), { onChange: checkpoint, onUpload: requestUpload, onMessage: say, customWidgets,
    onCreated: (node) => modelDefaults?.apply(node) });
  modelDefaults = new ModelDefaults(editor);
  window.gouache = gouache;
  tabs = new Tabs({ editor, history, name: { get: () => currentName, set: (name) => { currentName = name; } } });
  new Minimap(editor, $("#canvas-box"));
  installHelp();
  outputs = new Outputs({ openWorkflow: openRunWorkflow, say });
  bindUi();
  bindKeys();
  await loadExtensions();
  const registry = await api.get("/api/nodes");
  editor.setRegistry(registry);
  showPackErrors(registry.packs);
  try { await modelDefaults.load(); } catch (error) { say(`model list unavailable: ${error.message}`); }
  renderPalette();
  const params = new URLSearchParams(location.search);
  const { workflows } = await api.get("/api/workflows");
  const fallback = workflows.some((w) => w.name === "text-to-image") ? "text-to-image" : null;
  const restored = tabs.restore();  // the tabs open before a reload come back
  const name = params.has("new") ? null : params.get("workflow") || (restored ? null : fallback);
  if (name) {
    try { loadWorkflow(await api.get(`/api/workflows/${encodeURIComponent(name)}`), name); } catch (error) { say(`cannot open ${name}: ${error.message}`); resetHistory(); }
  } else if (params.has("new") && restored) {
    if (!tabs.blank(tabs.active)) tabs.add();  // ?new=1 adds an empty tab beside them, losing nothing
  } else if (!restored) {
    resetHistory();
    tabs.afterOpen();
  }
  // ?workflow= and ?new= are done: a reload now brings back the tabs as they are, not the query.
  if (location.search) window.history.replaceState(null, "", location.pathname);
  try {
    const { history: finished } = await api.get("/api/runs?limit=20");
    outputs.load(finished);
  } catch (error) { say(error.message); }
  new Live(handle, (state) => { const element = $("#connection"); element.dataset.state = state; element.textContent = state === "open" ? "connected" : state; });
  document.body.dataset.ready = "true";
}

gouache.ready = boot().catch((error) => { say(`the editor failed to start: ${error.message}`); console.error(error); throw error; });
