// The right-click menus, holding only entries gouache supports (litegraph's defaults include
// subgraphs, "On Event"/"On Trigger" modes and a properties panel showing the editor's own
// bookkeeping). Escape closes any open menu or dialog; Ctrl+B bypasses and Ctrl+M mutes the selection.

import { LiteGraph, LGraphCanvas, LGraphGroup } from "../vendor/litegraph/litegraph.es.js";

// Node mode entries: litegraph's names (its NEVER is our "mute") and the gouache/1 value each sets.
const MODE_ENTRIES = [["Always", null], ["Never (mute)", "mute"], ["Bypass", "bypass"]];

function selectedOr(editor, node) {
  const selected = Object.values(editor.canvas.selected_nodes || {});
  return selected.includes(node) ? selected : [node];
}

function modeMenu(editor, node, event, parent) {
  const current = editor.modeOf(node);
  const entries = MODE_ENTRIES.map(([content, mode]) => ({ content: `${mode === current ? "✓ " : ""}${content}`, mode }));
  new LiteGraph.ContextMenu(entries, {
    event, parentMenu: parent, title: "Mode",
    callback: (entry) => editor.setMode(selectedOr(editor, node), entry.mode),
  });
  return false;
}

/** The menu of one node (litegraph appends Clone, the alignment entries and Remove). */
export function nodeMenu(editor, node) {
  const each = (change) => () => {
    for (const target of selectedOr(editor, node)) change(target);
    editor.canvas.setDirty(true, true);
    editor.changed();
  };
  const options = [
    { content: "Title", callback: LGraphCanvas.onShowPropertyEditor },
    { content: "Mode", has_submenu: true, callback: (value, options, event, menu) => modeMenu(editor, node, event, menu) },
    { content: editor.modeOf(node) === "bypass" ? "Stop bypassing" : "Bypass", callback: () => toggleMode(editor, selectedOr(editor, node), "bypass") },
    { content: editor.modeOf(node) === "mute" ? "Unmute" : "Mute", callback: () => toggleMode(editor, selectedOr(editor, node), "mute") },
    null,
    { content: node.collapsed ? "Expand" : "Collapse", callback: each((target) => target.collapse()) },
    { content: node.pinned ? "Unpin" : "Pin", callback: each((target) => target.pin(!node.pinned)) },
    { content: "Colors", has_submenu: true, callback: LGraphCanvas.onMenuNodeColors },
    { content: "Fit size to widgets", callback: each((target) => target.setSize(target.computeSize())) },
    null,
  ];
  return options;
}

function toggleMode(editor, nodes, mode) {
  const all = nodes.every((node) => editor.modeOf(node) === mode);
  editor.setMode(nodes, all ? null : mode);
}

function groupSelected(editor) {
  const nodes = Object.values(editor.canvas.selected_nodes || {});
  if (!nodes.length) return;
  const group = new LGraphGroup("Group");
  editor.graph.add(group);
  group.resizeTo(nodes, 10);
  editor.canvas.setDirty(true, true);
  editor.changed();
}

function canvasMenu(editor) {
  const selected = Object.keys(editor.canvas.selected_nodes || {}).length;
  const options = [
    { content: "Add Node", has_submenu: true, callback: LGraphCanvas.onMenuAdd },
    { content: "Add Group", callback: (...args) => { LGraphCanvas.onGroupAdd(...args); editor.changed(); } },
  ];
  if (selected) options.push({ content: "Group selected nodes", callback: () => groupSelected(editor) });
  if (selected > 1) options.push({ content: "Align", has_submenu: true, callback: LGraphCanvas.onGroupAlign });
  options.push(null, { content: "Fit view", callback: () => editor.fitView() });
  return options;
}

function groupMenu(group, editor) {
  return [
    { content: group.pinned ? "Unpin" : "Pin", callback: () => { group.pin(!group.pinned); editor.canvas.setDirty(true, true); editor.changed(); } },
    null,
    { content: "Title", callback: LGraphCanvas.onShowPropertyEditor },
    { content: "Color", has_submenu: true, callback: LGraphCanvas.onMenuNodeColors },
    { content: "Font size", property: "font_size", type: "Number", callback: LGraphCanvas.onShowPropertyEditor },
    { content: "Fit to its nodes", callback: () => { group.recomputeInsideNodes(); group.resizeTo([...group.children], 10); editor.canvas.setDirty(true, true); editor.changed(); } },
    null,
    { content: "Remove", callback: () => { editor.graph.remove(group); editor.canvas.setDirty(true, true); editor.changed(); } },
  ];
}

/** Close every litegraph menu and dialog (and any element given); true when something was open. */
export function closeMenusAndDialogs(extra = []) {
  const open = [...document.querySelectorAll(".litecontextmenu, .graphdialog, .litegraph.dialog"), ...extra];
  for (const element of open) {
    if (typeof element.close === "function") element.close();
    else element.remove();
  }
  return open.length > 0;
}

export function installMenus(editor) {
  const canvas = editor.canvas;
  canvas.getMenuOptions = () => canvasMenu(editor);
  // A group's menu, with a Remove that removes that group (litegraph's removes the selection).
  LGraphGroup.prototype.getMenuOptions = function getMenuOptions() { return groupMenu(this, editor); };
  // litegraph keeps the focus where it was (often the palette's search box) when the canvas is
  // clicked, so Delete, Ctrl+A and Ctrl+B would go to that box: the canvas takes the focus.
  canvas.canvas.addEventListener("pointerdown", () => canvas.canvas.focus({ preventScroll: true }));
  window.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    if (event.key === "Escape") {
      if (closeMenusAndDialogs()) event.preventDefault();
      return;
    }
    if (typing || !(event.ctrlKey || event.metaKey) || event.shiftKey || event.altKey) return;
    const mode = { b: "bypass", m: "mute" }[event.key.toLowerCase()];
    const nodes = Object.values(canvas.selected_nodes || {});
    if (!mode || !nodes.length) return;
    event.preventDefault();
    toggleMode(editor, nodes, mode);
  });
}
