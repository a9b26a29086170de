// The smallest web extension: the editor imports this module and calls its default export with
// its extension API (see docs/api.md). It provides the widget "gouache-hello.text" that the
// HelloSplitWords node asks for with Input("text", "STRING", widget="gouache-hello.text").

export default function register(gouache) {
  gouache.addWidget("gouache-hello.text", (node, input, value) => {
    // litegraph's own text widget, labelled with how many words it holds.
    const label = (text) => `${input.name} (${String(text).split(/\s+/).filter(Boolean).length} words)`;
    const widget = node.addWidget("text", input.name, String(value ?? ""), (text) => { widget.label = label(text); }, {});
    widget.label = label(widget.value);
    return widget;
  });
}
