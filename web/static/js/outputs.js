// Outputs and history: the history list (status, duration, executed/cached counts), the gallery of
// recent images, an enlarged view of one image, and a run's details (its images, its workflow).
// Everything is read from the server's run records (GET /api/runs, /api/runs/{id}).

import { api } from "./api.js";

const $ = (selector) => document.querySelector(selector);
const HISTORY_SIZE = 20;
const GALLERY_SIZE = 48;

function count(value) {
  return Array.isArray(value) ? value.length : Number(value ?? 0);
}

function imagesOf(record) {
  // Every image of a run, in the order of its nodes: {node, kind, path}.
  const found = [];
  for (const [node, outputs] of Object.entries(record.outputs || {})) {
    for (const image of outputs.images || []) found.push({ node, kind: image.kind, path: image.path });
  }
  return found;
}

function thumb(image, onClick) {
  const button = document.createElement("button");
  button.className = "thumb";
  button.type = "button";
  button.dataset.run = image.run_id ?? "";
  button.dataset.path = image.path;
  button.title = `${image.path} (${image.node})`;
  const img = document.createElement("img");
  img.src = api.fileUrl(image);
  img.alt = image.path;
  img.loading = "lazy";
  button.append(img);
  button.onclick = onClick;
  return button;
}

export function describeDuration(seconds) {
  if (seconds == null) return "";
  const value = Number(seconds);
  return value >= 60 ? `${Math.floor(value / 60)} min ${Math.round(value % 60)} s` : `${value.toFixed(1)} s`;
}

export class Outputs {
  /** ``openWorkflow(workflow, name, record)`` loads a run's workflow into the editor. */
  constructor({ openWorkflow, say }) {
    this.openWorkflow = openWorkflow;
    this.say = say;
    this.records = new Map(); // run_id -> record (what the history shows)
    this.gallery = []; // newest first: {run_id, seq, node, kind, path}
    $("#image-dialog").addEventListener("click", (event) => { if (event.target.id === "image-dialog") $("#image-dialog").close(); });
    $("#run-dialog").addEventListener("click", (event) => { if (event.target.id === "run-dialog") $("#run-dialog").close(); });
  }

  /** Show the finished runs the server has (newest first), as the page opens. */
  load(records) {
    for (const record of [...records].reverse()) this.add(record);
  }

  /** A run ended (``finished`` or ``cancelled`` event): read its record and show it. */
  async ended(data) {
    let record;
    try {
      record = await api.get(`/api/runs/${encodeURIComponent(data.run_id)}`);
    } catch (error) {
      // The record is the truth; without it show what the event said.
      record = { run_id: data.run_id, status: data.status ?? "cancelled", seconds: data.seconds ?? null,
        executed: data.executed ?? 0, cached: data.cached ?? 0, outputs: {}, seq: Number.MAX_SAFE_INTEGER };
      this.say(`cannot read run ${data.run_id.slice(0, 8)}: ${error.message}`);
    }
    this.add(record);
    return record;
  }

  add(record) {
    this.records.set(record.run_id, record);
    this.renderEntry(record);
    const fresh = imagesOf(record).map((image) => ({ ...image, run_id: record.run_id, seq: record.seq }));
    if (fresh.length) {
      this.gallery = [...fresh.reverse(), ...this.gallery.filter((image) => image.run_id !== record.run_id)]
        .sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0))
        .slice(0, GALLERY_SIZE);
      this.renderGallery();
    }
  }

  renderEntry(record) {
    const list = $("#history");
    list.querySelector(`li[data-run="${CSS.escape(record.run_id)}"]`)?.remove();
    const item = document.createElement("li");
    item.dataset.run = record.run_id;
    item.dataset.status = record.status;
    item.dataset.seq = String(record.seq ?? 0);
    item.tabIndex = 0;
    item.title = "open this run";
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = record.run_id.slice(0, 8);
    const status = document.createElement("span");
    status.className = "st";
    status.textContent = record.status;
    const seconds = document.createElement("span");
    seconds.className = "seconds";
    seconds.textContent = describeDuration(record.seconds);
    const counts = document.createElement("span");
    counts.className = "counts";
    counts.textContent = record.status === "cancelled" ? "" : `${count(record.executed)} ran · ${count(record.cached)} cached`;
    item.append(id, status, seconds, counts);
    item.onclick = () => this.openRun(record.run_id);
    item.onkeydown = (event) => { if (event.key === "Enter") this.openRun(record.run_id); };
    // Newest (highest seq) first, whatever order the records arrive in.
    const after = [...list.children].find((other) => Number(other.dataset.seq) < Number(item.dataset.seq));
    list.insertBefore(item, after ?? null);
    while (list.children.length > HISTORY_SIZE) list.lastChild.remove();
  }

  renderGallery() {
    const box = $("#gallery");
    box.replaceChildren(...this.gallery.map((image) => thumb(image, () => this.enlarge(image))));
  }

  /** The enlarged image with what can be done with it: open its run, load its workflow, download it. */
  enlarge(image) {
    const dialog = $("#image-dialog");
    const big = $("#image-big");
    big.src = api.fileUrl(image);
    big.alt = image.path;
    $("#image-caption").textContent = `${image.path} · node ${image.node} · run ${image.run_id.slice(0, 8)}`;
    const download = $("#image-download");
    download.href = api.fileUrl(image);
    download.download = image.path.split("/").pop();
    $("#image-open-run").onclick = () => { dialog.close(); this.openRun(image.run_id); };
    $("#image-load").onclick = () => { dialog.close(); this.loadRun(image.run_id); };
    dialog.dataset.run = image.run_id;
    dialog.dataset.path = image.path;
    if (!dialog.open) dialog.showModal();
  }

  /** A run's details: status, times, counts, its error, its images; its workflow one click away. */
  async openRun(runId) {
    let record;
    try {
      record = await api.get(`/api/runs/${encodeURIComponent(runId)}`);
    } catch (error) {
      this.say(`cannot open run ${runId.slice(0, 8)}: ${error.message}`);
      return;
    }
    const dialog = $("#run-dialog");
    dialog.dataset.run = runId;
    dialog.dataset.status = record.status;
    $("#run-title").textContent = `Run ${runId.slice(0, 8)}: ${record.status}`;
    const facts = $("#run-facts");
    facts.replaceChildren();
    const fact = (name, value) => {
      if (value === "" || value == null) return;
      const term = document.createElement("dt");
      term.textContent = name;
      const detail = document.createElement("dd");
      detail.textContent = value;
      detail.dataset.fact = name;
      facts.append(term, detail);
    };
    fact("status", record.status);
    fact("queued", new Date(record.created * 1000).toLocaleString());
    fact("duration", describeDuration(record.seconds));
    fact("executed", `${count(record.executed)}${record.executed?.length ? `: ${record.executed.join(", ")}` : ""}`);
    fact("cached", `${count(record.cached)}${record.cached?.length ? `: ${record.cached.join(", ")}` : ""}`);
    if (record.error) fact("error", [record.error.node, record.error.input].filter(Boolean).join(".") + (record.error.node ? ": " : "") + record.error.message);
    const images = imagesOf(record).map((image) => ({ ...image, run_id: runId, seq: record.seq }));
    $("#run-images").replaceChildren(...images.map((image) => thumb(image, () => { dialog.close(); this.enlarge(image); })));
    $("#run-load").onclick = () => { dialog.close(); this.loadRun(runId); };
    if (!dialog.open) dialog.showModal();
  }

  /** Load the workflow a run was queued with, its nodes showing the images the run made. */
  async loadRun(runId) {
    try {
      const record = await api.get(`/api/runs/${encodeURIComponent(runId)}?workflow=1`);
      const name = record.workflow?.meta?.title || `run ${runId.slice(0, 8)}`;
      this.openWorkflow(record.workflow, name, record);
      this.say(`loaded the workflow of run ${runId.slice(0, 8)}`);
    } catch (error) {
      this.say(`cannot load the workflow of run ${runId.slice(0, 8)}: ${error.message}`);
    }
  }
}
