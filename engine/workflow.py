"""The workflow file format ``gouache/1``: pydantic models, lenient parsing into problems, schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, field_validator

from gouache.engine import jsonio
from gouache.engine.importers import PngChunks
from gouache.engine.problems import Problem

FORMAT = "gouache/1"
MUTE, BYPASS = "mute", "bypass"
"""The node modes (``NodeEntry.mode``); a node without a mode runs. Their rules: ``engine/modes.py``."""
JsonLiteral = Union[str, int, float, bool, None, list[Any], dict[str, Any]]


class Link(BaseModel):
    """A wire from another node's named output: ``{"node": ID, "output": NAME}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    node: str
    output: str


class NodeEntry(BaseModel):
    """One node of a workflow: its type, its inputs (links or literal values) and its mode."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: str
    inputs: dict[str, Union[Link, JsonLiteral]] = Field(default_factory=dict)
    mode: Literal["bypass", "mute"] = Field(  # type: ignore[assignment]  # None: absent, never written
        default=None, exclude_if=lambda mode: mode is None, json_schema_extra=lambda schema: schema.pop("default"),
        description="Absent: the node runs. \"mute\": it does not run, nor what only it feeds. \"bypass\": it "
                    "does not run and each output hands on its input of the same type.")

    @field_validator("mode", mode="wrap")
    @classmethod
    def _null_is_no_mode(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """An explicit ``null`` means no mode, as leaving it out does (an editor may send one)."""
        return None if value is None else handler(value)


class Workflow(BaseModel):
    """A workflow file. ``layout``, ``groups`` and ``meta`` are for the editor and people only."""

    # Validators are built on first use (``defer_build``), not at import: `gouache serve` answers
    # /api/nodes without ever reading a workflow.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    format: Literal["gouache/1"] = FORMAT
    nodes: dict[str, NodeEntry]
    layout: dict[str, Any] = Field(default_factory=dict)
    groups: list[Any] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The workflow as a JSON-ready dict, in the file format."""
        return self.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file format, as published in ``docs/``."""
    schema = Workflow.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://gouache.dev/schema/workflow-1.json"
    schema["title"] = "gouache workflow (format gouache/1)"
    return schema


def load_source(source: str | Path | bytes | dict[str, Any] | Workflow) -> Any:
    """Read a workflow from a path (JSON file or a PNG), a file's bytes, a dict or a model.

    A PNG without a gouache workflow comes back as :class:`PngChunks` for the importers.
    """
    if isinstance(source, Workflow):
        return source.to_json()
    if isinstance(source, (bytes, bytearray)):
        return read_bytes(bytes(source), "the file")
    if not isinstance(source, (str, Path)):
        return source  # never mutated: apply_overrides copies what it changes
    return read_bytes(Path(source).read_bytes(), Path(source))


def read_bytes(data: bytes, path: Path | str) -> Any:
    """A JSON workflow file's or a PNG's bytes, read as :func:`load_source` reads a file (``path`` names it
    in errors); a ``ValueError`` when it is neither."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            chunks = png_text(data, path, require_workflow=False)
            if "workflow" in chunks:
                embedded = jsonio.loads(chunks["workflow"])
                if isinstance(embedded, dict) and "format" in embedded:
                    return embedded
            return PngChunks(chunks)  # a ComfyUI or A1111 PNG: the importers decide
        return jsonio.loads(data)
    except jsonio.JsonError as error:
        raise ValueError(f"{path}: {error}") from None


MAX_TEXT_CHUNK = 64 * 1024**2
"""Largest PNG text chunk read, decompressed (a workflow of 5,000 nodes is about 1 MB)."""


def png_text(data: bytes, path: Path | str = "PNG", require_workflow: bool = True) -> dict[str, str]:
    """The tEXt and iTXt chunks of a PNG file, read without an imaging library.

    With ``require_workflow`` a PNG without a ``workflow`` chunk is a ``ValueError``.

    A damaged chunk (cut short, flagged compressed but not, not UTF-8) is a ``ValueError`` naming it.
    """
    import struct
    import zlib

    chunks: dict[str, str] = {}
    offset = 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        try:
            if kind == b"tEXt" and b"\0" in body:
                key, _, text = body.partition(b"\0")
                chunks[key.decode("latin-1")] = text.decode("latin-1")
            elif kind == b"iTXt" and b"\0" in body:
                key, _, rest = body.partition(b"\0")
                if len(rest) < 2:
                    raise ValueError("cut short before its compression flags")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _tkey, _, text = rest.partition(b"\0")
                if compressed:
                    inflater = zlib.decompressobj()
                    text = inflater.decompress(text, MAX_TEXT_CHUNK)
                    if inflater.unconsumed_tail:
                        raise ValueError(f"decompresses to more than {MAX_TEXT_CHUNK // 1024**2} MiB")
                chunks[key.decode("latin-1")] = text.decode("utf-8")
        except (ValueError, zlib.error) as error:  # UnicodeDecodeError is a ValueError
            name = kind.decode("latin-1")
            raise ValueError(f"{path}: its {name} chunk at byte {offset} is damaged ({error})") from None
        offset += 12 + length
    if require_workflow and "workflow" not in chunks:
        raise ValueError(f"{path} is a PNG without an embedded gouache workflow")
    return chunks


def apply_overrides(raw: Any, overrides: dict[str, Any] | None) -> tuple[Any, list[Problem]]:
    """Set ``"node.input": value`` pairs; returns a changed copy (the original is left alone)."""
    problems: list[Problem] = []
    if not overrides or not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict):
        nodes = None
    else:
        raw = {**raw, "nodes": dict(raw["nodes"])}
        nodes = raw["nodes"]
    for target, value in (overrides or {}).items():
        node_id, dot, input_name = str(target).rpartition(".")
        if not dot or not node_id or not input_name:
            problems.append(Problem(None, None, "invalid_override",
                                    f"override {target!r} must look like NODE.INPUT (e.g. sampler.seed)"))
            continue
        entry = nodes.get(node_id) if isinstance(nodes, dict) else None
        if not isinstance(entry, dict):
            problems.append(Problem(node_id, input_name, "unknown_node",
                                    f"override {target!r}: the workflow has no node {node_id!r}"))
            continue
        entry = nodes[node_id] = copy.deepcopy(entry)
        inputs = entry.setdefault("inputs", {})
        if isinstance(inputs, dict):
            inputs[input_name] = value
    return raw, problems


def parse(raw: Any) -> tuple[Workflow | None, list[Problem]]:
    """Parse a raw workflow, returning the model and every structural problem found."""
    if not isinstance(raw, dict):
        return None, [Problem(None, None, "invalid_workflow",
                              f"a workflow is a JSON object, got {type(raw).__name__}")]
    try:  # a workflow from Python skipped jsonio.loads: bound its nesting before anything recurses
        jsonio.check_depth(raw)
    except jsonio.JsonError as error:
        return None, [Problem(None, None, "too_deep", f"the workflow is {error}")]
    fmt = raw.get("format")
    if fmt != FORMAT:
        shown = "no format field" if fmt is None else f"format {jsonio.shorten(fmt)}"
        return None, [Problem(None, None, "unknown_format",
                              f"{shown}: this version of gouache reads {FORMAT!r} files; "
                              "upgrade gouache or set \"format\": \"gouache/1\"")]
    problems: list[Problem] = []
    nodes = raw.get("nodes")
    if not isinstance(nodes, dict):
        return None, [Problem(None, None, "invalid_workflow", "\"nodes\" must be an object of node id -> node")]
    try:  # the common case in one call; node by node only to attribute errors
        return Workflow.model_validate(raw), []
    except ValidationError:
        pass
    parsed: dict[str, NodeEntry] = {}
    for node_id, entry in nodes.items():
        try:
            parsed[node_id] = NodeEntry.model_validate(entry)
        except ValidationError as error:
            for detail in error.errors():
                loc = [str(part) for part in detail["loc"]]
                input_name = loc[1] if len(loc) > 1 and loc[0] == "inputs" else None
                where = ".".join(loc) or "node"
                problems.append(Problem(node_id, input_name, "invalid_node",
                                        f"node {node_id!r}: {where}: {detail['msg']}"))
    rest = {key: value for key, value in raw.items() if key != "nodes"}
    try:
        workflow = Workflow.model_validate({**rest, "nodes": {}})
    except ValidationError as error:
        for detail in error.errors():
            where = ".".join(str(part) for part in detail["loc"])
            problems.append(Problem(None, None, "invalid_workflow", f"{where}: {detail['msg']}"))
        return None, problems
    workflow.nodes = parsed
    return workflow, problems
