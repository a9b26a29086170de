"""Strict JSON in and out: what gouache reads and writes is standard JSON within set limits.

Python's ``json`` accepts ``NaN`` and ``Infinity`` (not JSON), lets a repeated key silently win
(a second ``"nodes": {}`` would empty a workflow), turns a 5,000-digit number into a ``ValueError``
about Python's digit limit, and overflows the stack on deep nesting. Here each of those is a
:class:`JsonError` that says what and where, and :func:`dumps` refuses to write NaN or Infinity.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (workflows need about 6)."""
MAX_INT_DIGITS = 64
"""Longest integer literal accepted, in digits (a 64-bit seed has 20)."""


class JsonError(ValueError):
    """Text that is not strict JSON within gouache's limits; the message says what and where."""


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON value; write a finite number")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonError(f"an integer of {digits} digits is longer than the {MAX_INT_DIGITS} digits accepted")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"the key {shorten(key)} appears twice in one object; keep one")
        out[key] = value
    return out


def loads(text: str | bytes) -> Any:
    """Parse strict JSON: no NaN/Infinity, no repeated keys, bounded integers and nesting."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise JsonError(f"not UTF-8 text (byte {error.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                           parse_int=_bounded_int)
    except RecursionError:
        raise JsonError(f"nested deeper than the {MAX_DEPTH} levels accepted") from None
    except json.JSONDecodeError as error:
        raise JsonError(f"not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    check_depth(value)
    return value


_CONTAINERS = (dict, list, tuple)


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonError` if ``value`` nests lists and dicts deeper than ``limit`` (no recursion)."""
    # Level by level, keeping only the containers of the next level: an HTTP body is checked here and
    # again as a workflow, and this walk costs less than half of one that visits every value
    # (7,000 nodes: 8 ms against 19 ms).
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise JsonError(f"nested deeper than the {limit} levels accepted")
        below: list[Any] = []
        for item in level:
            below += [child for child in (item.values() if isinstance(item, dict) else item)
                      if isinstance(child, _CONTAINERS)]
        level = below


def dumps(value: Any, **kwargs: Any) -> str:
    """Write strict JSON; NaN or Infinity anywhere is a ``ValueError`` rather than invalid output."""
    return json.dumps(value, allow_nan=False, **kwargs)


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for quoting user values in messages."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's digit limit, a self-referencing list
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def cut(text: str, limit: int = 80) -> str:
    """``text`` cut to about ``limit`` characters, unquoted, for names quoted in messages."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
