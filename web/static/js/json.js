// JSON with exact integers: gouache's INT inputs reach 2**64 - 1 (seeds), past the 2**53 a JS
// number holds exactly. An integer literal beyond that range is read as a BigInt and written back
// digit for digit, so the editor never sends a seed the server did not mean (or would refuse).

// Every JSON.stringify in the page (the API, exports, undo snapshots) writes a BigInt as its digits.
if (!BigInt.prototype.toJSON) {
  Object.defineProperty(BigInt.prototype, "toJSON", {
    // Browsers without JSON.rawJSON (before Chromium 114, Firefox 135) get the nearest number.
    value() { return JSON.rawJSON ? JSON.rawJSON(this.toString()) : Number(this); },
    configurable: true, writable: true,
  });
}

/** Parse JSON text; integers outside the safe range become BigInts holding the exact digits. */
export function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  });
}

/** A whole number as a JS number when that is exact, else as a BigInt. */
export function exactInteger(value) {
  const big = typeof value === "bigint" ? value : BigInt(value);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}
