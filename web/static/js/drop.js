// Dropping an image file on the canvas. Onto a node with an image-upload input (LoadImage): the file
// is uploaded and chosen there. Onto empty canvas: a PNG carrying a workflow (gouache's, ComfyUI's or
// A1111's text chunks) opens as before; any other image goes to the one selected image node.

import { pngText } from "./png.js";

const IMAGE = /^image\//;
const WORKFLOW_CHUNKS = ["workflow", "prompt", "parameters"];

/** The first input of `node` that takes an uploaded image, or null. */
export function imageInput(editor, node) {
  const info = editor.infos.get(node?.gtype);
  return info?.inputs.find((spec) => spec.upload === "image")?.name ?? null;
}

async function carriesWorkflow(file) {
  if (file.type !== "image/png" && !/\.png$/i.test(file.name)) return false;
  try {
    const chunks = pngText(await file.arrayBuffer());
    return WORKFLOW_CHUNKS.some((key) => key in chunks);
  } catch {
    return false; // not a readable PNG: it is no workflow, and the upload route judges the image
  }
}

/**
 * Handle a dropped file as an image for a node; false when it is not one (the caller opens it as a
 * workflow). `upload(file, {node, input})` sends it to the server and selects it.
 */
export async function dropImage(editor, event, file, upload) {
  if (!IMAGE.test(file.type) && !/\.(png|jpe?g|webp|gif|bmp|tiff?)$/i.test(file.name)) return false;
  const [x, y] = editor.canvas.convertEventToCanvasOffset(event);
  const over = editor.graph.getNodeOnPos(x, y);
  if (over) {
    const input = imageInput(editor, over);
    if (!input) return false;
    await upload(file, { node: over, input });
    return true;
  }
  if (await carriesWorkflow(file)) return false;
  const targets = Object.values(editor.canvas.selected_nodes || {}).filter((node) => imageInput(editor, node));
  if (targets.length !== 1) return false;
  await upload(file, { node: targets[0], input: imageInput(editor, targets[0]) });
  return true;
}
