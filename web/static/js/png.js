// Reading a PNG's tEXt (and uncompressed iTXt) chunks: the workflow gouache or ComfyUI writes into one
// named "workflow", ComfyUI's "prompt", A1111's "parameters".

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

export function pngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (!SIGNATURE.every((value, index) => bytes[index] === value)) throw new Error("not a PNG file");
  const view = new DataView(buffer);
  const chunks = {};
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const kind = latin1.decode(bytes.subarray(offset + 4, offset + 8));
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    if (kind === "tEXt" || kind === "iTXt") {
      const zero = body.indexOf(0);
      if (zero > 0) {
        const key = latin1.decode(body.subarray(0, zero));
        if (kind === "tEXt") {
          chunks[key] = latin1.decode(body.subarray(zero + 1));
        } else if (body[zero + 1] === 0) {  // uncompressed iTXt: skip language and translated keyword
          let rest = body.subarray(zero + 3);
          rest = rest.subarray(rest.indexOf(0) + 1);
          rest = rest.subarray(rest.indexOf(0) + 1);
          chunks[key] = utf8.decode(rest);
        }
      }
    }
    if (kind === "IEND") break;
    offset += 12 + length;
  }
  return chunks;
}
