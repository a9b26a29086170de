// The workflow browser of the Open dialog (shipped and saved workflows with their descriptions and
// thumbnails) and the description a workflow shows when it opens.

const $ = (selector) => document.querySelector(selector);

/** One workflow of GET /api/workflows as a button: thumbnail, name, title, description, source. */
export function workflowItem(entry, onOpen) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.name = entry.name;
  button.className = "workflow-card";
  const picture = document.createElement("span");
  picture.className = "picture";
  if (entry.thumbnail) {
    const img = document.createElement("img");
    img.src = `${entry.thumbnail}?t=${Math.round(entry.modified)}`;
    img.alt = `what ${entry.name} makes`;
    img.loading = "lazy";
    picture.append(img);
  }
  const text = document.createElement("span");
  text.className = "text";
  const name = document.createElement("strong");
  name.textContent = entry.title || entry.name;
  const source = document.createElement("small");
  source.textContent = entry.read_only ? `${entry.name} · shipped` : entry.name;
  const description = document.createElement("span");
  description.className = "description";
  description.textContent = entry.description || "";
  text.append(name, source, description);
  button.append(picture, text);
  button.onclick = (event) => { event.preventDefault(); onOpen(entry); };
  item.append(button);
  return item;
}

/** Show what an opened workflow is for (its meta.title and meta.description) above the canvas. */
export function showDescription(meta) {
  const box = $("#workflow-about");
  const description = typeof meta?.description === "string" ? meta.description.trim() : "";
  box.hidden = !description;
  if (!description) return;
  $("#workflow-about-title").textContent = typeof meta.title === "string" ? meta.title : "";
  $("#workflow-about-text").textContent = description;
  $("#workflow-about-close").onclick = () => { box.hidden = true; };
}
