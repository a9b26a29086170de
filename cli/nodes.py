"""``gouache nodes [NAME]``: the node types a user can put in a workflow, as a terminal reads them.

The listing gives each type's signature and the first sentence of its description; ``NAME`` gives
one type in full: its description, and every input with its type, default, bounds, choices (or
where they come from) and whether it is typed in or wired. ``--json`` prints the registry's own
:class:`~gouache.engine.declaration.NodeInfo` (the same payload as ``/api/nodes``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shutil
import sys
import textwrap
from typing import Any

from gouache.engine.api import Engine
from gouache.engine.declaration import Input, NodeInfo
from gouache.engine.validate import _did_you_mean

EXIT_OK, EXIT_INVALID = 0, 2

MAX_CHOICES_SHOWN = 12
"""A long list of choices (every image in the input folder) is cut to this many, saying how many more."""

_LITERAL = re.compile(r"``(.+?)``")
_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+?)`")
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?](?=\s|$)")


class UnknownNodeType(LookupError):
    """``gouache nodes NAME`` named no registered type; the message suggests the closest."""


def plain(text: str) -> str:
    """Docstring text as a terminal shows it: ````x```` and ``:class:`X``` become ``x`` and ``X``."""
    return _ROLE.sub(r"\1", _LITERAL.sub(r"\1", text))


def paragraphs(description: str) -> list[str]:
    """A docstring's paragraphs, dedented, markup removed, each joined into one line."""
    text = plain(inspect.cleandoc(description))
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def first_sentence(description: str) -> str:
    """The first sentence of a description's first paragraph, whole (never cut mid-sentence)."""
    found = paragraphs(description)
    if not found:
        return ""
    end = _SENTENCE_END.search(found[0])
    return found[0][: end.end()] if end else found[0]


def find(engine: Engine, name: str) -> NodeInfo:
    """The node type called ``name`` (exactly, else ignoring case), or :class:`UnknownNodeType`."""
    known = engine.registry.node_types()
    matches = [name] if name in known else [t for t in known if t.lower() == name.lower()]
    if len(matches) != 1:
        hint = _did_you_mean(name, known)
        raise UnknownNodeType(f"no node type {name!r}; {hint}`gouache nodes` lists all {len(known)}")
    node_class = engine.registry.get(matches[0])
    return node_class.info(engine.registry.pack_of(matches[0]))


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 100))


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def _how_given(spec: Input) -> str:
    if spec.accepts_literal and spec.accepts_link:
        return "typed in or linked"
    return "typed in only" if spec.accepts_literal else "linked only"


def _bounds(spec: Input) -> list[str]:
    found = []
    if spec.min is not None and spec.max is not None:
        found.append(f"from {spec.min} to {spec.max}")
    elif spec.min is not None:
        found.append(f"at least {spec.min}")
    elif spec.max is not None:
        found.append(f"at most {spec.max}")
    if spec.step is not None:
        found.append(f"step {spec.step}")
    if spec.max_length is not None:
        found.append(f"at most {spec.max_length} characters")
    return found


def _listed(values: list[Any]) -> str:
    shown = ", ".join(_value(value) for value in values[:MAX_CHOICES_SHOWN])
    more = len(values) - MAX_CHOICES_SHOWN
    return f"{shown}, and {more} more" if more > 0 else shown or "none found"


def _choices(engine: Engine, spec: Input) -> str | None:
    if spec.choices is not None:
        return f"choices: {_listed(list(spec.choices))}"
    if spec.choices_from is None:
        return None
    kind = spec.choices_from
    folder = engine.models.kinds.get(kind)
    found = f"choices: the {kind} found now ({_listed(engine.models.names(kind))})"
    if folder is not None and folder.home_folder is not None:
        return f"{found}, in {', '.join(str(path) for path in engine.models.directories(kind))}"
    return f"{found}; `gouache models` shows the folders searched"


def input_facts(engine: Engine, spec: Input) -> list[str]:
    """What a user needs to set one input: required or default, bounds, choices, how it is given."""
    facts = [_how_given(spec)]
    if spec.default is not None:
        facts.append(f"default {_value(spec.default)}")
    elif spec.optional:
        facts.append("optional")
    else:
        facts.append("required")
    facts += _bounds(spec)
    choices = _choices(engine, spec)
    if choices:
        facts.append(choices)
    if spec.seed:
        facts.append("a seed (the editor can randomise it)")
    if spec.multiline:
        facts.append("multi-line text")
    if spec.upload:
        facts.append(f"the editor can upload an {spec.upload}")
    if spec.widget:
        facts.append(f"editor widget {spec.widget!r}")
    return facts


def _wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    # Names such as gouache-tiny and paths stay whole on one line.
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False, break_long_words=False)


def describe(engine: Engine, info: NodeInfo) -> str:
    """One node type in full, wrapped to the terminal."""
    width = _width()
    lines = [f"{info.type} (category {info.category}, version {info.version}, pack {info.pack})"]
    if info.deprecated:
        lines.append("deprecated: kept so old workflows run; not offered for new graphs")
    for paragraph in paragraphs(info.description):
        lines += ["", *_wrap(paragraph, width)]
    cache = {"never": "runs every time (not deterministic)",
             "fingerprint": "cached by its inputs and the files it reads"}.get(info.cache.value)
    if info.output_node or cache:
        lines.append("")
    if info.output_node:
        lines.append("An output node: runs are pruned to the output nodes by default.")
    if cache:
        lines.append(f"Caching: {cache}.")
    lines += ["", "inputs:" if info.inputs else "inputs: none"]
    for spec in info.inputs:
        lines += _wrap(f"{spec.name}: {spec.type}; {'; '.join(input_facts(engine, spec))}", width, "  ", "      ")
        lines += _wrap(plain(spec.description), width, "      ", "      ")
    lines.append("outputs:" if info.outputs else "outputs: none")
    for out in info.outputs:
        lines.append(f"  {out.name}: {out.type}")
        lines += _wrap(plain(out.description), width, "      ", "      ")
    return "\n".join(lines)


def summary(info: NodeInfo) -> str:
    """The listing's entry for one type: header, signature, first sentence."""
    ins = ", ".join(f"{spec.name}: {spec.type}" for spec in info.inputs)
    outs = ", ".join(f"{out.name}: {out.type}" for out in info.outputs)
    deprecated = " (deprecated)" if info.deprecated else ""
    text = f"{info.category}/{info.type} v{info.version} [{info.pack}]{deprecated}\n  ({ins}) -> ({outs})"
    sentence = first_sentence(info.description)
    return f"{text}\n  {sentence}" if sentence else text


def main(args: argparse.Namespace, engine: Engine) -> int:
    """``gouache nodes [NAME] [--json]``."""
    if args.name:
        try:
            info = find(engine, args.name)
        except UnknownNodeType as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_INVALID
        print(json.dumps(info.model_dump(mode="json"), indent=2) if args.json else describe(engine, info))
        return EXIT_OK
    infos = engine.registry.infos()
    if args.json:
        print(json.dumps([info.model_dump(mode="json") for info in infos], indent=2))
    else:
        print("\n".join(summary(info) for info in infos))
        print(f"\n{len(infos)} node types; `gouache nodes NAME` describes one in full.")
    return EXIT_OK
