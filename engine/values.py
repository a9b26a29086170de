"""Checking a typed-in value against an input's declaration."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gouache.engine.jsonio import shorten
from gouache.engine.declaration import Input


@dataclass(frozen=True)
class ValueProblem:
    """Why a literal value does not fit an input: a problem code and a sentence."""

    code: str
    message: str


MAX_TEXT = 100_000
"""Longest STRING value accepted by default, in characters; an input may set its own ``max_length``."""


def _type_problem(spec: Input, value: Any) -> ValueProblem | None:
    kind = spec.type
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return ValueProblem("wrong_value_type", f"expects a whole number, got {shorten(value)}")
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return ValueProblem("wrong_value_type", f"expects a number, got {shorten(value)}")
    if kind == "FLOAT":
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer literal beyond a float's range
            finite = False
        if not finite:
            return ValueProblem("wrong_value_type", f"expects a finite number, got {shorten(value)}")
    if kind == "STRING":
        if not isinstance(value, str):
            return ValueProblem("wrong_value_type", f"expects text, got {shorten(value)}")
        return _text_problem(spec, value)
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return ValueProblem("wrong_value_type", f"expects true or false, got {shorten(value)}")
    return None


def _text_problem(spec: Input, value: str) -> ValueProblem | None:
    limit = spec.max_length if spec.max_length is not None else MAX_TEXT
    if len(value) > limit:
        return ValueProblem("too_long", f"is {len(value):,} characters long; the limit is {limit:,}")
    if "\0" in value:
        return ValueProblem("invalid_text", f"contains a NUL character at {value.index(chr(0))}; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return ValueProblem("invalid_text", f"is not valid Unicode (a lone surrogate at {error.start}); "
                                            "re-type or re-paste the text")
    return None


def _number(value: float) -> str:
    """A bound as people write it: whole numbers without a decimal point, exactly."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def check_value(spec: Input, value: Any) -> tuple[Any, ValueProblem | None]:
    """Return the value as the node receives it (INT widened to FLOAT) and the problem, if any."""
    problem = _type_problem(spec, value)
    if problem is not None:
        return value, problem
    if spec.choices is not None and value not in spec.choices:
        shown = ", ".join(repr(choice) for choice in spec.choices[:12])
        more = f" (and {len(spec.choices) - 12} more)" if len(spec.choices) > 12 else ""
        return value, ValueProblem("not_a_choice", f"{shorten(value)} is not one of the choices: {shown}{more}")
    if spec.type in ("INT", "FLOAT"):
        if spec.min is not None and value < spec.min:
            return value, ValueProblem("out_of_range", f"{shorten(value)} is below the minimum {_number(spec.min)}")
        if spec.max is not None and value > spec.max:
            return value, ValueProblem("out_of_range", f"{shorten(value)} is above the maximum {_number(spec.max)}")
        if spec.type == "INT" and spec.step:
            base = spec.min if spec.min is not None else 0
            if (value - base) % spec.step:
                where = f"a multiple of {_number(spec.step)}" if base % spec.step == 0 else \
                    f"{_number(base)} plus a multiple of {_number(spec.step)}"
                return value, ValueProblem("not_a_multiple", f"{shorten(value)} is not {where}")
        if spec.type == "FLOAT":
            value = float(value)
    return value, None
