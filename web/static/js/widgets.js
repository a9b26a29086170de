// Number widgets that read what people type: a number, or simple arithmetic (+ - * / and
// parentheses) evaluated by a small parser (litegraph's own prompt uses eval, which the editor's
// Content-Security-Policy refuses). INT inputs keep exact integers up to the server's limits, and a
// seed input gets its control: fixed, increment, decrement or randomize after each queued run.

import { exactInteger } from "./json.js";

export const SEED_CONTROLS = ["fixed", "increment", "decrement", "randomize"];

/** Evaluate `text` as a number or an arithmetic expression; throws an Error that says what is wrong. */
export function evaluate(text) {
  const source = String(text).trim();
  if (!source) throw new Error("type a number");
  const tokens = source.match(/\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|[-+*/()]|\S/g);
  let index = 0;
  const peek = () => tokens[index];
  const take = () => tokens[index++];
  const expression = () => {
    let value = term();
    while (peek() === "+" || peek() === "-") value = take() === "+" ? value + term() : value - term();
    return value;
  };
  const term = () => {
    let value = factor();
    while (peek() === "*" || peek() === "/") {
      if (take() === "*") { value *= factor(); continue; }
      const divisor = factor();
      if (divisor === 0) throw new Error("division by zero");
      value /= divisor;
    }
    return value;
  };
  const factor = () => {
    const token = take();
    if (token === "-") return -factor();
    if (token === "+") return factor();
    if (token === "(") {
      const value = expression();
      if (take() !== ")") throw new Error("a parenthesis is not closed");
      return value;
    }
    if (token !== undefined && /^[\d.]/.test(token)) return Number(token);
    throw new Error(token === undefined ? "the expression ends too early" : `unexpected "${token}"`);
  };
  const value = expression();
  if (index < tokens.length) throw new Error(`unexpected "${peek()}"`);
  if (!Number.isFinite(value)) throw new Error("the result is not a finite number");
  return value;
}

/** What `text` means for an INT input: exact digits for a plain integer, else the rounded result. */
export function evaluateInteger(text) {
  const plain = String(text).trim();
  if (/^[-+]?\d+$/.test(plain)) return exactInteger(BigInt(plain));
  const value = evaluate(plain);
  if (!Number.isInteger(value)) throw new Error(`${value} is not a whole number`);
  return exactInteger(BigInt(value));
}

const bigOrNull = (value) => (value === null || value === undefined ? null : BigInt(value));

/**
 * Make a litegraph number widget read typed text through `evaluate`, and (for INT inputs) keep exact
 * integers within the input's `min`/`max` (which may be BigInts: /api/nodes is read with exact digits).
 * `onRefused(message)` is told when typed text is refused.
 */
export function setupNumberWidget(widget, spec, onRefused) {
  const integer = spec.type === "INT";
  const low = integer ? bigOrNull(spec.min) : spec.min;
  const high = integer ? bigOrNull(spec.max) : spec.max;
  const describe = (value) => `${spec.name}: ${value}`;
  const setValue = widget.setValue.bind(widget);
  // Clamp by the exact limits first: litegraph compares with the limits as JS numbers, and 2**64
  // and 2**64 - 1 are the same JS number.
  // litegraph's setValue turns a number widget's value into a JS number; an INT keeps its digits.
  widget.setValue = (value, options) => {
    if (!integer) { setValue(value, options); return; }
    let exact = typeof value === "bigint" ? value : BigInt(Math.round(Number(value)));
    if (low !== null && exact < low) exact = low;
    if (high !== null && exact > high) exact = high;
    const { e, node, canvas } = options || {};
    const old = widget.value;
    const fresh = exactInteger(exact);
    if (fresh === old) return;
    widget.value = fresh;
    widget.callback?.(fresh, canvas, node, canvas?.graph_mouse, e);
    node?.onWidgetChanged?.(widget.name ?? "", fresh, old, widget);
    if (node?.graph) node.graph._version++;
  };
  const step = () => (integer ? BigInt(Math.max(1, Math.round(widget.options.step2 ?? 1))) : widget.options.step2 ?? 0.01);
  const shift = (value, direction) => {
    if (integer) return BigInt(value) + step() * BigInt(direction);
    return Number(value) + step() * direction;
  };
  widget.incrementValue = (options) => widget.setValue(shift(widget.value, 1), options);
  widget.decrementValue = (options) => widget.setValue(shift(widget.value, -1), options);
  widget.canIncrement = () => high === null || widget.value < high;
  widget.canDecrement = () => low === null || widget.value > low;
  widget.onDrag = ({ e, node, canvas }) => {
    const x = e.canvasX - node.pos[0];
    const width = widget.width || node.size[0];
    const arrow = x < 40 ? -1 : x > width - 40 ? 1 : 0;
    if (arrow && x > -3 && x < width + 3) return;
    const delta = Math.round(e.deltaX ?? 0);
    if (delta) widget.setValue(shift(widget.value, delta), { e, node, canvas });
  };
  if (integer) {
    Object.defineProperty(widget, "_displayValue", {
      get() { return widget.computedDisabled ? "" : String(widget.value); },
      configurable: true,
    });
  }
  widget.onClick = ({ e, node, canvas }) => {
    const x = e.canvasX - node.pos[0];
    const width = widget.width || node.size[0];
    const arrow = x < 40 ? -1 : x > width - 40 ? 1 : 0;
    if (arrow) { widget.setValue(shift(widget.value, arrow), { e, node, canvas }); return; }
    canvas.prompt("Value", String(widget.value), (text) => {
      let value;
      try {
        value = integer ? evaluateInteger(text) : evaluate(text);
      } catch (error) {
        onRefused(`${describe(JSON.stringify(text))} refused: ${error.message}`);
        return;
      }
      if (low !== null && low !== undefined && value < low) { onRefused(`${describe(value)} refused: below the minimum ${low}`); return; }
      if (high !== null && high !== undefined && value > high) { onRefused(`${describe(value)} refused: above the maximum ${high}`); return; }
      widget.setValue(value, { e, node, canvas });
    }, e);
  };
  return widget;
}

/** A seed's next value under `control` (see SEED_CONTROLS), within the input's limits. */
export function nextSeed(value, control, spec) {
  const low = BigInt(spec.min ?? 0);
  const high = BigInt(spec.max ?? 2 ** 32 - 1);
  const current = BigInt(value);
  let next = current;
  // At a limit, increment and decrement stay there (as ComfyUI's control does) rather than wrap.
  if (control === "increment") next = current >= high ? high : current + 1n;
  else if (control === "decrement") next = current <= low ? low : current - 1n;
  else if (control === "randomize") next = low + randomBelow(high - low + 1n);
  return exactInteger(next);
}

// A uniform random BigInt in [0, limit): 64 random bits at a time, rejecting the biased top.
function randomBelow(limit) {
  const bits = limit.toString(2).length;
  const words = Math.ceil(bits / 32);
  for (;;) {
    const parts = crypto.getRandomValues(new Uint32Array(words));
    let value = 0n;
    for (const part of parts) value = (value << 32n) | BigInt(part);
    value &= (1n << BigInt(bits)) - 1n;
    if (value < limit) return value;
  }
}
