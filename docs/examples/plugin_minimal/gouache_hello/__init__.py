"""gouache-hello: a minimal node pack that uses each of the five hooks once."""

from __future__ import annotations

from pathlib import Path

from gouache.engine import Input, ModelFolder, Node, Output, SocketType, WebExtension, WorkflowImporter, hookimpl


class SplitWords(Node):
    """Split text into words."""

    type_name = "HelloSplitWords"
    category = "text/hello"
    inputs = [Input("text", "STRING", default="", widget="gouache-hello.text")]
    outputs = [Output("words", "WORDS")]

    def run(self, ctx, text):
        return {"words": text.split()}


class CountWords(Node):
    """Count words (an output node: a workflow runs for it)."""

    type_name = "HelloCountWords"
    category = "text/hello"
    output_node = True
    inputs = [Input("words", "WORDS"), Input("minimum_length", "INT", default=1, min=1, max=100)]
    outputs = [Output("count", "INT")]

    def run(self, ctx, words, minimum_length):
        return {"count": sum(1 for word in words if len(word) >= minimum_length)}


@hookimpl
def gouache_register_types():
    """A socket type of our own; the editor draws its links in this colour."""
    return [SocketType("WORDS", "#8e44ad", description="A list of words.")]


@hookimpl
def gouache_register_nodes():
    """Our node types."""
    return [SplitWords, CountWords]


@hookimpl
def gouache_register_model_folders():
    """A kind of model folder: files in models/wordlists/ show up in `gouache models`."""
    return [ModelFolder("wordlists", (".txt",), description="Word lists, one word a line.")]


@hookimpl
def gouache_register_web_extensions():
    """Static files the editor loads: web/hello.js registers a widget."""
    return [WebExtension("gouache-hello", Path(__file__).parent / "web", scripts=("hello.js",))]


def words_workflow(raw):
    """A plain-text file of words, as a workflow that counts them."""
    return {"format": "gouache/1", "nodes": {
        "split": {"type": "HelloSplitWords", "inputs": {"text": raw["words"]}},
        "count": {"type": "HelloCountWords", "inputs": {"words": {"node": "split", "output": "words"}}}}}, []


@hookimpl
def gouache_register_workflow_importers():
    """Another format opens as a workflow: {"words": TEXT} counts the words of TEXT."""
    return [WorkflowImporter("hello-words", lambda raw: isinstance(raw, dict) and "words" in raw, words_workflow)]
