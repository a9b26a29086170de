// A test web extension: a custom "dial" widget for inputs declared with widget="dial".
export default function register(gouache) {
  gouache.addWidget("dial", (node, input, value) => {
    const widget = node.addWidget("slider", input.name, value, () => {}, { min: input.min ?? 0, max: input.max ?? 360 });
    widget.dial = true;
    return widget;
  });
  window.__dialExtensionLoaded = true;
}
