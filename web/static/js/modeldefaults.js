// Defaults that fit the model: a checkpoint listed by GET /api/models may carry the settings it
// suits (``defaults``, by input name: gouache-tiny wants 128 px, CFG 3, 20 Euler steps). A node
// made anew takes them when the graph's checkpoint is that model.

import { api } from "./api.js";

const SIZE_INPUTS = new Set(["width", "height"]);

export class ModelDefaults {
  constructor(editor) {
    this.editor = editor;
    this.byName = new Map(); // checkpoint name -> {input: value}
  }

  async load() {
    const models = await api.get("/api/models");
    this.byName.clear();
    for (const entry of models.checkpoints || []) if (entry.defaults) this.byName.set(entry.name, entry.defaults);
  }

  checkpointSpec(info) {
    return info?.inputs.find((spec) => spec.choices_from === "checkpoints") ?? null;
  }

  /** The graph's checkpoint: its first checkpoint loader's model; with none yet, the one a new loader names. */
  graphCheckpoint() {
    const editor = this.editor;
    for (const node of editor.graph._nodes) {
      const spec = this.checkpointSpec(editor.infos.get(node.gtype));
      const widget = spec && editor.widgetFor(node, spec.name);
      if (widget) return widget.value;
    }
    const loader = editor.infos.get("CheckpointLoader") ?? [...editor.infos.values()].find((info) => this.checkpointSpec(info));
    return this.checkpointSpec(loader)?.default ?? null;
  }

  /** Set a new node's inputs to the model's defaults: sizes on nodes that make a latent from nothing,
   *  sampling settings (steps, cfg, sampler, scheduler) on any node that has them. */
  apply(node) {
    const editor = this.editor;
    const info = editor.infos.get(node.gtype);
    if (!info || this.checkpointSpec(info)) return [];
    const defaults = this.byName.get(this.graphCheckpoint());
    if (!defaults) return [];
    const makesLatent = info.outputs.some((output) => output.type === "LATENT") &&
      !info.inputs.some((spec) => ["LATENT", "IMAGE"].includes(spec.type));
    const set = [];
    for (const [name, value] of Object.entries(defaults)) {
      if (SIZE_INPUTS.has(name) && !makesLatent) continue;
      const spec = info.inputs.find((candidate) => candidate.name === name);
      if (!spec || (spec.choices && !spec.choices.includes(value))) continue;
      if (editor.setWidgetValue(node, name, value)) set.push(name);
    }
    return set;
  }
}
