// Several workflows open at once, one tab each with its own undo history, view and run marks. The
// tabs survive a reload of the page (sessionStorage), and closing a tab, or the page, with unsaved
// changes asks first.

import { FORMAT } from "./editor.js";
import { parseJson } from "./json.js";

const KEY = "gouache.tabs";
const EMPTY = { format: FORMAT, nodes: {} };
let keys = 0;

export class Tabs {
  /**
   * `history` is the app's undo record ({stack, index}): each tab keeps its own and swaps it in.
   * `name` reads and sets the app's current workflow name (what Save writes to).
   */
  constructor({ editor, history, name }) {
    this.editor = editor;
    this.history = history;
    this.name = name;
    this.label = document.querySelector("#workflow-name");
    this.bar = document.createElement("nav");
    this.bar.id = "tabs";
    this.bar.setAttribute("aria-label", "open workflows");
    document.querySelector("#canvas-box").prepend(this.bar);
    this.active = this.make(null, "untitled");
    this.tabs = [this.active];
    this.timer = null;
    // A gesture may have changed the graph: refresh the unsaved marks and the stored copy soon after.
    for (const type of ["pointerup", "keyup"]) window.addEventListener(type, () => this.soon());
    window.addEventListener("beforeunload", (event) => {
      this.persist();
      if (this.tabs.some((tab) => this.dirty(tab))) {
        event.preventDefault();
        event.returnValue = "";  // the browser asks before leaving; a reload brings the tabs back
      }
    });
    this.render();
  }

  make(name, title) {
    return { key: ++keys, name, title, snapshot: null, saved: null, history: { stack: [], index: -1 }, view: null, status: new Map() };
  }

  // The active graph as JSON. Rendering the tabs, their unsaved marks and the stored copy all want it
  // at once: it is made once per task (a 2,000-node export is worth not repeating), and forgotten
  // whenever another graph is loaded.
  current() {
    if (this.memo === null || this.memo === undefined) {
      this.memo = JSON.stringify(this.editor.export());
      queueMicrotask(() => { this.memo = null; });
    }
    return this.memo;
  }

  snapshotOf(tab) {
    return tab === this.active ? this.current() : tab.snapshot;
  }

  /** Whether the tab differs from what was last opened or saved in it. */
  dirty(tab) {
    const now = this.snapshotOf(tab);
    if (tab.saved !== null) return now !== tab.saved;
    return Object.keys(parseJson(now).nodes).length > 0;
  }

  blank(tab) {
    if (tab === this.active && this.editor.graph._nodes.length) return false;
    return Object.keys(parseJson(this.snapshotOf(tab)).nodes).length === 0 && !this.dirty(tab);
  }

  // Keep the active tab's live state in its record, before another tab takes the editor.
  stash() {
    this.memo = null;
    const tab = this.active;
    tab.snapshot = this.current();
    tab.history = { stack: this.history.stack, index: this.history.index };
    tab.view = { offset: [...this.editor.canvas.ds.offset], scale: this.editor.canvas.ds.scale };
    tab.status = new Map(this.editor.status);
    tab.name = this.name.get();
    tab.title = this.label.textContent;
  }

  show(tab) {
    this.memo = null;
    this.active = tab;
    this.editor.load(parseJson(tab.snapshot || JSON.stringify(EMPTY)));
    if (tab.view) {
      this.editor.canvas.ds.offset = [...tab.view.offset];
      this.editor.canvas.ds.scale = tab.view.scale;
    } else {
      this.editor.fitView();
    }
    this.editor.status = new Map(tab.status);
    if (!tab.history.stack.length) tab.history = { stack: [this.current()], index: 0 };
    this.history.stack = tab.history.stack;
    this.history.index = tab.history.index;
    this.name.set(tab.name);
    this.label.textContent = tab.title;
    this.editor.canvas.setDirty(true, true);
    this.render();
    this.persist();
  }

  /** Switch to `tab` (the active one's state is kept). */
  select(tab) {
    if (tab === this.active) return;
    this.stash();
    this.show(tab);
  }

  /** A new, empty tab. */
  add() {
    this.stash();
    const tab = this.make(null, "untitled");
    this.tabs.push(tab);
    this.show(tab);
    tab.saved = this.current();
    this.render();
    return tab;
  }

  /**
   * Called before a workflow is loaded into the editor: it goes into the active tab when that is
   * empty and unchanged, into the unchanged tab already holding the same saved workflow, or else a new tab.
   */
  beforeOpen(name) {
    if (this.blank(this.active)) return;
    const same = name && this.tabs.find((tab) => tab.name === name && !this.dirty(tab));
    this.stash();
    const tab = same || this.make(name, name || "untitled");
    if (!same) this.tabs.push(tab);
    this.active = tab;
    this.history.stack = tab.history.stack = [];
    this.history.index = tab.history.index = -1;
    this.editor.status = new Map();
  }

  /** Called once a workflow is loaded: it is what the tab holds unchanged. */
  afterOpen() {
    this.memo = null;
    this.active.saved = this.current();
    this.active.name = this.name.get();
    this.active.title = this.label.textContent;
    this.render();
    this.persist();
  }

  /** Called after Save: the active tab is saved under the app's current name. */
  saved() {
    this.afterOpen();
  }

  close(tab) {
    const title = tab === this.active ? this.label.textContent : tab.title;
    if (this.dirty(tab) && !window.confirm(`"${title}" has unsaved changes. Close it anyway?`)) return false;
    const index = this.tabs.indexOf(tab);
    this.tabs.splice(index, 1);
    if (!this.tabs.length) {
      const fresh = this.make(null, "untitled");
      this.tabs.push(fresh);
      this.show(fresh);
      fresh.saved = this.current();
    } else if (tab === this.active) {
      this.show(this.tabs[Math.min(index, this.tabs.length - 1)]);
    }
    this.render();
    this.persist();
    return true;
  }

  soon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.render(); this.persist(); }, 150);
  }

  persist() {
    const tabs = this.tabs.map((tab) => {
      const live = tab === this.active;
      return {
        name: live ? this.name.get() : tab.name,
        title: live ? this.label.textContent : tab.title,
        workflow: this.snapshotOf(tab),
        saved: tab.saved,
        view: live ? { offset: [...this.editor.canvas.ds.offset], scale: this.editor.canvas.ds.scale } : tab.view,
      };
    });
    try {
      sessionStorage.setItem(KEY, JSON.stringify({ active: this.tabs.indexOf(this.active), tabs }));
    } catch (error) {
      console.warn("cannot keep the open tabs for a reload", error);
    }
  }

  /** Bring back the tabs this browser tab had open before a reload; false when there were none. */
  restore() {
    let stored;
    try { stored = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { stored = null; }
    if (!stored?.tabs?.length) return false;
    this.tabs = stored.tabs.map((entry) => {
      const tab = this.make(entry.name ?? null, entry.title || "untitled");
      tab.snapshot = entry.workflow;
      tab.saved = entry.saved ?? null;
      tab.view = entry.view ?? null;
      return tab;
    });
    try {
      this.show(this.tabs[Math.max(0, Math.min(stored.active ?? 0, this.tabs.length - 1))]);
    } catch (error) {
      // A stored graph the editor cannot show (node types gone): start over rather than fail to start.
      this.tabs = [this.make(null, "untitled")];
      this.show(this.tabs[0]);
      return false;
    }
    return true;
  }

  render() {
    const buttons = this.tabs.map((tab) => {
      const item = document.createElement("span");
      item.className = "tab";
      item.dataset.key = tab.key;
      item.classList.toggle("active", tab === this.active);
      const title = tab === this.active ? this.label.textContent : tab.title;
      const dirty = this.dirty(tab);
      item.classList.toggle("dirty", dirty);
      const open = document.createElement("button");
      open.className = "tab-title";
      open.textContent = `${title}${dirty ? " •" : ""}`;
      open.title = dirty ? `${title} (unsaved changes)` : title;
      open.onclick = () => this.select(tab);
      const close = document.createElement("button");
      close.className = "tab-close";
      close.textContent = "×";
      close.title = `close ${title}`;
      close.setAttribute("aria-label", `close ${title}`);
      close.onclick = () => this.close(tab);
      item.append(open, close);
      return item;
    });
    const add = document.createElement("button");
    add.id = "tab-new";
    add.textContent = "+";
    add.title = "a new, empty workflow";
    add.onclick = () => this.add();
    this.bar.replaceChildren(...buttons, add);
  }
}
