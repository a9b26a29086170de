// Queue N runs at once, the seeds going up by one from run to run (POST /api/runs with a sweep:
// the server validates every run first and queues all of them or none).

/** The sweep that gives each seed widget of the graph ``count`` values from its current one, paired
 *  run by run (``zip``); ``null`` when the graph has no typed-in seed. Stops at an input's maximum. */
export function seedSweep(editor, count) {
  const sweep = {};
  let runs = count;
  for (const node of editor.graph._nodes) {
    const info = editor.infos.get(node.gtype);
    if (!info || node.mode === 2) continue; // a muted node does not run
    for (const spec of info.inputs) {
      if (!spec.seed) continue;
      const widget = editor.widgetFor(node, spec.name);
      const slot = node.inputs?.find((candidate) => candidate.name === spec.name);
      if (!widget || slot?.link != null) continue;
      const first = BigInt(widget.value ?? spec.default ?? 0);
      const high = BigInt(spec.max ?? 2 ** 32 - 1);
      const values = [];
      for (let index = 0n; index < BigInt(count) && first + index <= high; index++) values.push(exact(first + index));
      runs = Math.min(runs, values.length);
      sweep[`${node.properties.id}.${spec.name}`] = values;
    }
  }
  if (!Object.keys(sweep).length) return null;
  for (const key of Object.keys(sweep)) sweep[key] = sweep[key].slice(0, runs);
  return { sweep, zip: true, runs };
}

function exact(big) {
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}
