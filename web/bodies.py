"""Request bodies read whole within a limit, as strict JSON, and refusals that become JSON errors.

``request.content.read(n)`` returns what has arrived so far, up to ``n`` bytes, not ``n`` bytes:
one call cut large bodies wherever a TCP segment ended. :func:`read_body` reads to the end.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gouache.engine import jsonio

PARSE_IN_THREAD_BYTES = 256 * 1024
"""Bodies larger than this are parsed off the event loop (a 7 MiB body takes tens of ms)."""
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
"""A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into decoded text."""


class Refused(Exception):
    """A request the server will not act on: its status and a message that says how to fix it."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def size(count: int) -> str:
    """``count`` bytes for people: ``8 MiB (8,388,608 bytes)``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.4g} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def too_large(what: str, actual: int | None, limit: int) -> Refused:
    """The 413 for ``what`` (``"the body"``) of ``actual`` bytes (``None``: more than the limit)."""
    shown = f"is {size(actual)}" if actual is not None else "is larger than that"
    return Refused(413, f"{what} {shown}; the limit is {size(limit)}")


def check_announced(request: web.Request, limit: int, what: str = "the body", overhead: int = 0) -> None:
    """Refuse, before any byte of it is read, a body whose Content-Length is over ``limit``
    (plus ``overhead``: room for what wraps the content the limit is about)."""
    if request.content_length is not None and request.content_length > limit + overhead:
        raise too_large(what, request.content_length, limit)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, however it arrives (chunked, in many segments); 413 past ``limit``."""
    check_announced(request, limit)
    data = bytearray()
    try:
        while chunk := await request.content.read(limit + 1 - len(data)):
            data += chunk
            if len(data) > limit:
                raise too_large("the body", None, limit)
    except (HttpProcessingError, RequestPayloadError) as error:  # e.g. Content-Encoding: gzip on bytes that are not gzip
        raise Refused(400, f"cannot read the body: {unreadable(error)}") from None
    return bytes(data)


async def json_body(request: web.Request, limit: int) -> Any:
    """The body as strict JSON (:func:`gouache.engine.jsonio.loads`) with valid Unicode text."""
    data = await read_body(request, limit)
    if len(data) > PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse_json, data)
    return parse_json(data)


def unreadable(error: Exception) -> str:
    """What aiohttp's error about a body it could not decode says, on one line."""
    cause = error.__cause__ if isinstance(error, RequestPayloadError) and error.__cause__ else error
    message = getattr(cause, "message", None) or str(cause)
    return jsonio.cut(" ".join(str(message).split()), 300)


def parse_json(data: bytes) -> Any:
    """Parse a body; a :class:`Refused` (400) that names the problem and where it is."""
    if not data.strip():
        raise Refused(400, "the body is empty; send a JSON object")
    try:
        value = jsonio.loads(data)
    except jsonio.JsonError as error:
        raise Refused(400, f"the body is not strict JSON: {error}") from None
    if SURROGATE_ESCAPE.search(data):
        where = lone_surrogate(value)
        if where is not None:
            raise Refused(400, f"the body holds text that is not valid Unicode (a lone UTF-16 surrogate) "
                               f"at {jsonio.cut(where, 200)}; send text as UTF-8 or as escaped surrogate pairs")
    return value


def lone_surrogate(value: Any) -> str | None:
    """Where in ``value`` a key or string holds a lone surrogate (``nodes.a.inputs.text``), or None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path or "the top level"
        elif isinstance(item, dict):
            for key, child in item.items():
                place = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    return f"a key in {path or 'the top level'}"
                stack.append((child, place))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
