// HTTP and websocket access to the gouache server. No state beyond the connection.

import { parseJson } from "./json.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || (body?.problems ? `${body.problems.length} problem(s)` : `HTTP ${status}`));
    this.status = status;
    this.body = body;
  }
}

async function request(method, path, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData || body instanceof Blob) {  // a Blob (a File): its bytes as they are
    options.body = body;
  } else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try { data = text ? parseJson(text) : null; } catch { data = { error: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body),
  put: (path, body) => request("PUT", path, body),
  delete: (path) => request("DELETE", path),
  fileUrl: (image) => `/api/files/${encodeURIComponent(image.kind)}/${image.path.split("/").map(encodeURIComponent).join("/")}`,
};

// Binary frames: byte 0 = kind (1: preview JPEG), bytes 1-2 = node id length N (big-endian),
// then N bytes of UTF-8 node id, then the JPEG.
export function parsePreviewFrame(buffer) {
  const view = new DataView(buffer);
  const kind = view.getUint8(0);
  if (kind !== 1) return null;
  const length = view.getUint16(1);
  const node = new TextDecoder().decode(new Uint8Array(buffer, 3, length));
  return { node, jpeg: new Blob([new Uint8Array(buffer, 3 + length)], { type: "image/jpeg" }) };
}

// The event stream: reconnects by itself; the server sends a "state" message first each time.
export class Live {
  constructor(onMessage, onStatus) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.delay = 250;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.onStatus("connecting");
    ws.onopen = () => { this.delay = 250; this.onStatus("open"); };
    ws.onmessage = (message) => {
      if (typeof message.data === "string") {
        const parsed = JSON.parse(message.data);
        // A batch holds, in order, messages that piled up while the last frame was being sent.
        if (parsed.type === "batch") {
          for (const event of parsed.data.events) this.onMessage(event);
        } else {
          this.onMessage(parsed);
        }
      } else {
        const preview = parsePreviewFrame(message.data);
        if (preview) this.onMessage({ type: "preview", data: preview });
      }
    };
    ws.onclose = () => {
      this.onStatus("closed");
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }
}
