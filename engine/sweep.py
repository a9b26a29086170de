"""Sweeps: one workflow run for every combination of a few inputs' values.

An axis is ``NODE.INPUT=SPEC``; a spec is one of

- ``A..B`` or ``A..B:STEP``: numbers from A to B inclusive (``1..64``, ``0.5..2:0.5``);
- ``@FILE``: one value per line of a text file, blank lines skipped (the CLI reads it; HTTP refuses it);
- ``[...]``: a JSON list of values;
- anything else: that one value.

Each value written as text is read by the ``--set`` rule (:func:`typed_value`): JSON where it parses,
except that an input taking text keeps the text as typed (``positive.text=5`` is the prompt ``"5"``).
Axes combine as their product (every combination, the first axis varying slowest) or, zipped, value
by value (every axis as long as the others). Every run's output files are named by its values
(:func:`output_overrides`). Nothing here runs anything or touches a file unless given ``read``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gouache.engine.declaration import Input
from gouache.engine.registry import Registry

MAX_RUNS = 10_000
"""The most runs one sweep may make: a typo such as ``1..1000000`` is refused, not queued."""
PREFIX_INPUT = "filename_prefix"
"""The input through which nodes that save files (``SaveImage``) take the start of their file names."""
LABEL_CHARS = 40
"""The most characters one value adds to a file name."""

_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\s*(?::\s*(\d+(?:\.\d+)?)\s*)?$")


class SweepError(ValueError):
    """A sweep that cannot be expanded; the message says how to write it."""


@dataclass(frozen=True)
class Axis:
    """One swept input: its ``NODE.INPUT`` and its values as typed (texts) or as JSON gave them."""

    target: str
    values: tuple[Any, ...]
    typed: bool = False
    """Whether ``values`` are already typed (a JSON list); texts are read by :func:`typed_value`."""

    @property
    def input(self) -> str:
        """The input's name, without its node."""
        return self.target.rpartition(".")[2]


def split_axis(text: str) -> tuple[str, str]:
    """``NODE.INPUT=SPEC`` as its target and spec, or :class:`SweepError`."""
    target, equals, spec = text.partition("=")
    if not equals or not _is_target(target.strip()):
        raise SweepError(f"--sweep {text!r}: expected NODE.INPUT=VALUES, e.g. --sweep sampler.seed=1..64")
    return target.strip(), spec


def _is_target(target: str) -> bool:
    node, dot, name = target.rpartition(".")
    return bool(dot and node and name)


def number_range(spec: str) -> list[int | float] | None:
    """The numbers ``A..B[:STEP]`` names, inclusive; ``None`` when ``spec`` is not a range."""
    found = _RANGE.match(spec)
    if found is None:
        return None
    start_text, stop_text, step_text = found.groups()
    integral = all(part is None or "." not in part for part in (start_text, stop_text, step_text))
    kind: Callable[[str], int | float] = int if integral else float
    start, stop = kind(start_text), kind(stop_text)
    step = kind(step_text) if step_text is not None else 1
    if step <= 0:
        raise SweepError(f"{spec!r}: the step after ':' must be above 0")
    count = math.floor((abs(stop - start) + 1e-9 * step) / step) + 1
    if count > MAX_RUNS:
        raise SweepError(f"{spec!r} makes {count} values; a sweep may make at most {MAX_RUNS} runs")
    sign = 1 if stop >= start else -1
    values = [start + sign * index * step for index in range(count)]
    return values if integral else [round(value, 12) for value in values]


def parse_axis(text: str, read: Callable[[str], str] | None = None) -> Axis:
    """One ``NODE.INPUT=SPEC`` as an :class:`Axis`; ``read`` reads ``@FILE`` (``None`` refuses files)."""
    target, spec = split_axis(text)
    return axis(target, spec, read)


def axis(target: str, spec: Any, read: Callable[[str], str] | None = None) -> Axis:
    """The axis of ``target`` from a spec (text as on the command line) or a list of typed values."""
    if not _is_target(target):
        raise SweepError(f"{target!r}: a swept input is named NODE.INPUT, e.g. sampler.seed")
    if isinstance(spec, list):
        values: tuple[Any, ...] = tuple(spec)
        typed = True
    elif not isinstance(spec, str):
        values, typed = (spec,), True
    elif spec.startswith("@"):
        if read is None:
            raise SweepError(f"{target}: values from a file ({spec!r}) are read only by the command line; "
                             "send the values as a JSON list")
        try:
            content = read(spec[1:])
        except OSError as error:
            raise SweepError(f"{target}: cannot read {spec[1:]!r}: {error.strerror or error}") from None
        values, typed = tuple(line.strip() for line in content.splitlines() if line.strip()), False
    elif spec.lstrip().startswith("["):
        try:
            parsed = json.loads(spec)
        except json.JSONDecodeError as error:
            raise SweepError(f"{target}: {spec!r} starts like a JSON list but is not one ({error.msg})") from None
        values, typed = tuple(parsed), True
    else:
        numbers = number_range(spec)
        values, typed = (tuple(numbers), True) if numbers is not None else ((spec,), False)
    if not values:
        raise SweepError(f"{target}: the sweep has no values")
    return Axis(target, values, typed)


def takes_text(spec: Input) -> bool:
    """Whether an input's values are text: STRING, or a choice among names (models, files, words)."""
    if spec.type == "STRING":
        return True
    return spec.type == "COMBO" and (spec.choices_from is not None or
                                     all(isinstance(choice, str) for choice in spec.choices or ()))


def declared_input(raw: Any, target: str, registry: Registry) -> Input | None:
    """The declaration of ``NODE.INPUT`` in a raw workflow, if its node and type are known."""
    node_id, _, input_name = target.rpartition(".")
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    entry = nodes.get(node_id) if isinstance(nodes, dict) else None
    type_name = entry.get("type") if isinstance(entry, dict) else None
    node_class = registry.get(type_name) if isinstance(type_name, str) else None
    return next((spec for spec in node_class.inputs if spec.name == input_name), None) if node_class else None


def typed_value(text: str, spec: Input | None) -> Any:
    """The ``--set`` rule: ``text`` as JSON where it parses, but an input taking text keeps it as typed.

    A link (``{"node": ..., "output": ...}``) or a list stays as parsed even for a text input.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if spec is not None and takes_text(spec) and (value is None or isinstance(value, (bool, int, float))):
        return text
    return value


def _value_for(value: Any, typed: bool, spec: Input | None) -> Any:
    if not typed:
        return typed_value(value, spec)
    if spec is not None and takes_text(spec) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # positive.text=1..3 sweeps the prompts "1", "2", "3"
    return value


def points(axes: list[Axis], raw: Any, registry: Registry, *, zipped: bool = False) -> list[dict[str, Any]]:
    """Every run's overrides (``{"sampler.seed": 5, ...}``), in order; :class:`SweepError` when they cannot be made."""
    if not axes:
        return []
    targets = [a.target for a in axes]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise SweepError(f"{', '.join(repeated)} is swept twice; give each input one --sweep")
    columns = []
    for a in axes:
        spec = declared_input(raw, a.target, registry)
        columns.append([_value_for(value, a.typed, spec) for value in a.values])
    if zipped:
        lengths = {a.target: len(column) for a, column in zip(axes, columns)}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{target} has {n}" for target, n in lengths.items())
            raise SweepError(f"zipped axes must have as many values each: {shown}")
        combos: list[tuple[Any, ...]] = list(zip(*columns))
    else:
        total = math.prod(len(column) for column in columns)
        if total > MAX_RUNS:
            raise SweepError(f"the sweep makes {total} runs; at most {MAX_RUNS} (sweep fewer values, or --zip them)")
        combos = list(itertools.product(*columns))
    if len(combos) > MAX_RUNS:
        raise SweepError(f"the sweep makes {len(combos)} runs; at most {MAX_RUNS}")
    return [dict(zip(targets, combo)) for combo in combos]


def slug(value: Any) -> str:
    """A value as a short, file-name-safe word: ``a red circle`` -> ``a-red-circle``."""
    text = value if isinstance(value, str) else json.dumps(value)
    cleaned = re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-.") or "empty"
    return cleaned[:LABEL_CHARS].rstrip("-.")


def label(point: dict[str, Any]) -> str:
    """The part of a run's file names its values make: ``seed-5_text-a-red-circle``.

    Inputs are named without their node unless two axes share an input name.
    """
    names = [target.rpartition(".")[2] for target in point]
    shown = [name if names.count(name) == 1 else target.replace(".", "-") for name, target in zip(names, point)]
    return "_".join(f"{name}-{slug(value)}" for name, value in zip(shown, point.values()))


def output_overrides(raw: Any, registry: Registry, point: dict[str, Any]) -> dict[str, Any]:
    """Overrides that name this run's output files by its values: ``PREFIX_INPUT`` + ``_`` + :func:`label`.

    Every node declaring :data:`PREFIX_INPUT` that the sweep does not itself set gets one.
    """
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    if not isinstance(nodes, dict) or not point:
        return {}
    out = {}
    for node_id, entry in nodes.items():
        target = f"{node_id}.{PREFIX_INPUT}"
        spec = declared_input(raw, target, registry)
        if spec is None or target in point:
            continue
        current = (entry.get("inputs") or {}).get(PREFIX_INPUT, spec.default)
        if not isinstance(current, str):
            continue  # wired from another node: its value is not known before the run
        out[target] = f"{current or 'gouache'}_{label(point)}"
    return out


def run_overrides(raw: Any, registry: Registry, point: dict[str, Any]) -> dict[str, Any]:
    """Everything one run of a sweep sets: its point and the names of its output files."""
    return {**point, **output_overrides(raw, registry, point)}
