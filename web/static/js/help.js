// The keyboard and mouse help: a toolbar button and the "?" key open a list of the shortcuts the
// editor has (each one is handled in app.js, menus.js or litegraph itself).

export const SHORTCUTS = [
  ["Ctrl+Enter", "run the workflow"],
  ["Ctrl+S", "save on the server"],
  ["Ctrl+Z", "undo (each tab has its own history)"],
  ["Ctrl+Y / Ctrl+Shift+Z", "redo"],
  ["Ctrl+C / Ctrl+V", "copy / paste the selected nodes"],
  ["Ctrl+A", "select every node"],
  ["Delete / Backspace", "remove the selection"],
  ["Ctrl+B", "bypass the selected nodes (again: stop)"],
  ["Ctrl+M", "mute the selected nodes (again: unmute)"],
  ["Escape", "close a menu, dialog or this panel"],
  ["?", "this list"],
  ["Double-click the canvas", "search for a node to add"],
  ["Right-click", "the canvas, node, group or link menu"],
  ["Drag the canvas / Space+drag", "move the view"],
  ["Mouse wheel", "zoom"],
  ["Ctrl+drag", "select nodes in a rectangle"],
  ["Shift+click", "add a node to the selection"],
  ["Click a link's centre", "add a node or a reroute on it, or delete it"],
  ["Alt+click a link", "add a reroute there"],
  ["Drop a file", ".json or .png workflow: open it; an image on a LoadImage node: upload it"],
];

export function installHelp() {
  const dialog = document.createElement("dialog");
  dialog.id = "shortcuts";
  const form = document.createElement("form");
  form.method = "dialog";
  const title = document.createElement("h2");
  title.textContent = "Keyboard and mouse";
  const table = document.createElement("table");
  for (const [keys, what] of SHORTCUTS) {
    const row = table.insertRow();
    const key = document.createElement("kbd");
    key.textContent = keys;
    row.insertCell().append(key);
    row.insertCell().textContent = what;
  }
  const menu = document.createElement("menu");
  const close = document.createElement("button");
  close.value = "close";
  close.textContent = "Close";
  menu.append(close);
  form.append(title, table, menu);
  dialog.append(form);
  document.body.append(dialog);

  const button = document.createElement("button");
  button.id = "help";
  button.textContent = "?";
  button.title = "keyboard and mouse shortcuts (?)";
  button.onclick = () => dialog.showModal();
  document.querySelector("#toolbar").insertBefore(button, document.querySelector("#connection"));

  window.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) || event.target.isContentEditable;
    if (event.key !== "?" || typing || event.ctrlKey || event.metaKey || event.altKey) return;
    event.preventDefault();
    if (dialog.open) dialog.close();
    else dialog.showModal();
  });
  return dialog;
}
