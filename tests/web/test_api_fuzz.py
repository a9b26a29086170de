"""No input gets a 5xx: seeded fuzzing of every route's path, query, headers and body, and of
websocket messages, against one live server. Every /api/ error names the problem in JSON.

Seeded (``derandomize=True``): the same cases every run, so a failure reproduces. About 3,000
requests and 300 websocket sessions, bounded by the test's time limit.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_files import png
from web_support import Client, MessageCheck, Reply, chain, check_reply, toy_engine

from gouache.web.background import BackgroundServer

SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
QUICK_TYPES = ["Number", "Int", "Add", "Sum", "Scale", "Record", "Fail", "Lookup", "Dial", "Picture", "Blob",
               "BlobSize", "Span", "Swatch"]
"""Node types that finish at once (Steps, Busy and Slow take as long as their inputs say)."""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    engine = toy_engine(tmp_path_factory.mktemp("fuzz") / "home")
    with BackgroundServer(engine) as running, MessageCheck(running.url):
        client = Client(running.url)
        client.put("/api/workflows/saved", chain(("a", {"type": "Number", "inputs": {"value": 1}})))
        (engine.settings.folder("output") / "a.png").write_bytes(png())
        yield running


# ---- strategies -------------------------------------------------------------------------------

printable = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
segments = st.one_of(
    any_text.map(lambda text: quote(text, safe="")),
    st.binary(max_size=24).map(lambda data: quote(data, safe="")),  # bytes that are not UTF-8, %00, %2F
    st.sampled_from(["..", "%2e%2e", ".", "", "saved", "saved.json", "a.png", "x" * 300, "%ED%A0%80", "%00",
                     "nul%00.png", "saved%0A", "con", "a/b", "a%2Fb", "%C0%AE%C0%AE", "~", "%25", "output",
                     "input", "temp", "models"]),
)
paths = st.one_of(
    st.tuples(st.sampled_from(["/api/runs/", "/api/workflows/", "/api/files/output/", "/api/files/",
                               "/api/files/input/", "/api/", "/static/", "/extensions/dial/", "/"]),
              segments).map("".join),
    st.tuples(st.just("/api/files/"), segments, st.just("/"), segments).map("".join),
    st.sampled_from(["/api/nodes", "/api/models", "/api/runs", "/api/uploads", "/api/workflows",
                     "/api/extensions", "/api/runs/", "/api/workflows/", "/ws", "/", "/api"]),
)
queries = st.dictionaries(st.sampled_from(["limit", "before", "workflow", "token", "x"]),
                          st.one_of(any_text, st.integers().map(str), st.just("9" * 3000)), max_size=2)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])

leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                   st.floats(allow_nan=False, allow_infinity=False), any_text)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
                      max_leaves=12)
node_ids = st.one_of(st.sampled_from(["a", "b", "c", "n0"]), any_text)
links = st.fixed_dictionaries({"node": node_ids, "output": st.sampled_from(["value", "sum", "x", "y", "nope"])})
input_names = st.one_of(st.sampled_from(["value", "a", "b", "x", "factor", "label", "key", "angle", "seed"]), any_text)
nodes = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(QUICK_TYPES + ["Nope", ""]), any_text)},
                              optional={"inputs": st.dictionaries(input_names, st.one_of(links, leaves), max_size=4)})
workflows = st.fixed_dictionaries(
    {"format": st.one_of(st.just("gouache/1"), st.sampled_from(["gouache/2", "", 1]), values),
     "nodes": st.one_of(st.dictionaries(node_ids, nodes, max_size=6), values)},
    optional={"meta": values, "layout": values, "groups": values, "extra": values})
sweeps = st.dictionaries(
    st.one_of(st.sampled_from(["a.value", "b.value", "a.x", "n0.value", "a", ".value", "a.", ""]), any_text),
    st.one_of(st.lists(leaves, max_size=4), st.sampled_from(["1..4", "0..1:0.5", "4..1", "1..99999999", "a..b", "1..",
                                                             "..", "1..3:0", "1e9..1e9", ""]), any_text, values),
    max_size=3)
run_bodies = st.fixed_dictionaries({"workflow": st.one_of(workflows, values)},
                                   optional={"outputs": st.one_of(st.lists(node_ids, max_size=3), values),
                                             "sweep": st.one_of(sweeps, values), "zip": st.one_of(st.booleans(), values)})
# Text that is JSON-like but not strict JSON, put where a value (or a key) of a workflow was.
poison = st.sampled_from(["NaN", "-Infinity", "1e999", "1" * 80, '"\\ud800"', '"\\udfff\\ud800"', "[" * 80 + "]" * 80,
                          '{"a": 1, "a": 2}', '"\\u0000"', '"\\u0000\\n\\u001b"', "\x00", "\ufeff", "tru", "01", "'x'",
                          "[1,]", '"caf\\udce9"'])
SENTINEL = "\u2603poison\u2603"
poisonable = st.one_of(st.just(SENTINEL), leaves)
poisonable_values = st.recursive(poisonable, lambda inner: st.lists(inner, max_size=3)
                                 | st.dictionaries(st.one_of(st.just(SENTINEL), any_text), inner, max_size=3), max_leaves=8)
poisonable_nodes = st.fixed_dictionaries(
    {"type": st.sampled_from(QUICK_TYPES)},
    optional={"inputs": st.dictionaries(input_names, st.one_of(links, poisonable), max_size=3)})
simple_ids = st.sampled_from(["a", "b", "c"])
# Otherwise valid, so that the poison is what the server meets (meta, layout and groups take anything).
poisonable_workflows = st.fixed_dictionaries(
    {"format": st.just("gouache/1"), "nodes": st.dictionaries(simple_ids, poisonable_nodes, max_size=3)},
    optional={"meta": st.dictionaries(st.sampled_from(["title", "description", SENTINEL]), poisonable_values, max_size=3),
              "layout": st.dictionaries(simple_ids, st.fixed_dictionaries({"pos": st.lists(poisonable, max_size=2)})),
              "groups": st.lists(poisonable_values, max_size=2)})


@st.composite
def poisoned(draw: Any, run: bool | None = None) -> bytes:
    """A workflow (or a run body holding one) with poison where some values or keys were."""
    workflow = draw(poisonable_workflows)
    wrap = draw(st.booleans()) if run is None else run
    text = json.dumps({"workflow": workflow} if wrap else workflow)
    marker, token = json.dumps(SENTINEL), draw(poison)
    if marker not in text:  # nothing to replace: poison a new meta entry
        text = text[:-1] + f', "meta": {token}}}'
    return text.replace(marker, token).encode("utf-8", "surrogatepass")


@st.composite
def multipart_bodies(draw: Any) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0undary", "x" * 70, "--", ""]))
    filename = draw(st.one_of(any_text, st.sampled_from(["a\x00b.png", "\x00", "../../a.png", "a\rb.png", ""])))
    field = draw(st.sampled_from(["image", "other", "", "image\x00"]))
    extra = draw(st.sampled_from(["", f"Content-Length: {200 * 1024 * 1024}\r\n", "Content-Length: -1\r\n",
                                  "Content-Length: x\r\n", "Content-Type: text/plain; charset=nope\r\n",
                                  "Content-Transfer-Encoding: base64\r\n", "Content-Encoding: gzip\r\n"]))
    data = draw(st.one_of(st.just(png()), st.binary(max_size=64)))
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n{extra}\r\n'
    tail = draw(st.sampled_from([f"\r\n--{boundary}--\r\n", "", f"\r\n--{boundary}", "\r\n--other--\r\n"]))
    body = head.encode("utf-8", "surrogatepass") + data + tail.encode()
    content_type = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                         f"multipart/mixed; boundary={boundary}", "multipart/form-data; boundary="]))
    return body, content_type


bodies = st.one_of(
    run_bodies.map(lambda body: (json.dumps(body).encode(), "application/json")),
    workflows.map(lambda body: (json.dumps(body).encode(), "application/json")),
    values.map(lambda body: (json.dumps(body).encode(), "application/json")),
    poisoned().map(lambda body: (body, "application/json")),
    st.binary(max_size=300).map(lambda body: (body, "application/json")),
    multipart_bodies(),
    st.tuples(st.binary(max_size=100), st.one_of(st.text(printable, max_size=40),
                                                 st.sampled_from(["text/plain", "application/x-www-form-urlencoded"]))),
)
extra_headers = st.dictionaries(
    st.sampled_from(["Origin", "Authorization", "Cookie", "Accept", "Accept-Encoding", "X-Anything", "Range",
                     "If-Modified-Since", "Upgrade", "Connection-Extra", "Content-Encoding"]),
    st.one_of(st.text(printable, max_size=60), st.sampled_from(["null", "http://evil.example", "Bearer x",
                                                                "bytes=0-1", "bytes=99999-", "websocket", "gzip"])),
    max_size=3)


# ---- one request --------------------------------------------------------------------------------


def send(server: BackgroundServer, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        headers = {"Host": f"127.0.0.1:{server.port}", **headers}
        if body or method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            connection.putheader(name, value.encode("latin-1"))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def check(method: str, path: str, reply: Reply) -> None:
    assert reply.status < 500, f"{method} {path} -> {reply.status}: {reply.body[:500]!r}"
    if not path.startswith("/api/") or reply.status < 400 or method == "HEAD":
        return
    assert reply.headers.get("Content-Type", "").startswith("application/json"), (method, path, reply.status, reply.body[:300])
    body = json.loads(reply.body)
    assert (isinstance(body.get("error"), str) and body["error"].strip()) or body.get("problems"), body
    check_reply(method, path, reply)


ROUTE_BODIES = {
    ("POST", "/api/runs"): st.one_of(
        run_bodies.map(lambda body: (json.dumps(body).encode(), "application/json")),
        poisoned(run=True).map(lambda body: (body, "application/json"))),
    ("PUT", "/api/workflows/{name}"): st.one_of(
        workflows.map(lambda body: (json.dumps(body).encode(), "application/json")),
        poisoned(run=False).map(lambda body: (body, "application/json"))),
    ("POST", "/api/uploads"): multipart_bodies(),
}
ROUTE_TEMPLATES = [("GET", "/api/nodes"), ("GET", "/api/models"), ("GET", "/api/runs"), ("POST", "/api/runs"),
                   ("GET", "/api/runs/{id}"), ("DELETE", "/api/runs/{id}"), ("GET", "/api/files/{kind}/{path}"),
                   ("POST", "/api/uploads"), ("GET", "/api/workflows"), ("GET", "/api/workflows/{name}"),
                   ("PUT", "/api/workflows/{name}"), ("DELETE", "/api/workflows/{name}"), ("GET", "/api/extensions"),
                   ("GET", "/static/{path}"), ("GET", "/extensions/{name}/{path}"), ("GET", "/")]


@st.composite
def requests(draw: Any) -> tuple[str, str, bytes, dict[str, str]]:
    """A request to one of the routes: mostly its own method and the body it takes, with fuzzed
    path parts, query, headers; sometimes anything at all."""
    method, template = draw(st.sampled_from(ROUTE_TEMPLATES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(methods)
    path = template
    for part in ("{id}", "{kind}", "{path}", "{name}"):
        if part in path:
            path = path.replace(part, draw(segments) if part != "{kind}" else draw(
                st.one_of(st.sampled_from(["output", "input", "temp"]), segments)))
    if draw(st.integers(0, 19)) == 0:
        path = draw(paths)
    query = draw(queries)
    target = path + ("?" + urlencode(query) if query else "")
    own = ROUTE_BODIES.get((method, template))
    if own is not None and draw(st.integers(0, 4)):
        data, content_type = draw(own)
    elif method in ("POST", "PUT", "PATCH") or draw(st.integers(0, 4)) == 0:
        data, content_type = draw(bodies)
    else:
        data, content_type = b"", draw(st.sampled_from(["application/json", "text/plain", ""]))
    headers = {"Content-Type": content_type, **draw(extra_headers)} if content_type else draw(extra_headers)
    host = draw(st.sampled_from(["own"] * 12 + ["evil.example", "", "[::1]", "localhost:1"]))
    if host != "own":
        headers["Host"] = host
    return method, target, data, headers


@pytest.mark.timeout(600)
@settings(max_examples=2500, **SETTINGS)
@given(request=requests())
def test_no_request_gets_a_5xx(live, request):
    method, target, data, headers = request
    check(method, target, send(live, method, target, data, headers))


@pytest.mark.timeout(300)
@settings(max_examples=500, **SETTINGS)
@given(name=st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,20}", fullmatch=True).map(quote), segments),
       body=st.one_of(workflows.map(lambda w: json.dumps(w).encode()), poisoned(run=False), poisoned(run=False)))
def test_no_saved_workflow_gets_a_5xx_and_what_is_saved_reads_back(live, name, body):
    target = f"/api/workflows/{name}"
    saved = send(live, "PUT", target, body, {"Content-Type": "application/json"})
    check("PUT", target, saved)
    if saved.status in (200, 201):
        read = send(live, "GET", target, b"", {})
        check("GET", target, read)
        assert read.status == 200 and read.json == json.loads(body)
        send(live, "DELETE", target, b"", {})


# ---- websocket ----------------------------------------------------------------------------------

frames = st.lists(st.one_of(
    st.text(max_size=200).map(lambda text: ("text", text)),
    poisoned().map(lambda data: ("text", data.decode("utf-8", "replace"))),
    st.binary(max_size=200).map(lambda data: ("binary", data)),
    st.sampled_from([("text", "x" * 70_000), ("binary", b"\0" * 70_000), ("ping", b""), ("text", "")]),
), min_size=1, max_size=5)


@pytest.mark.timeout(300)
@settings(max_examples=300, **SETTINGS)
@given(sent=frames, origin=st.sampled_from([None, "own", "http://evil.example", "null"]))
def test_no_websocket_message_breaks_the_server(live, sent, origin):
    async def session() -> None:
        headers = {} if origin is None else {"Origin": live.url if origin == "own" else origin}
        async with aiohttp.ClientSession() as http_session:
            try:
                ws = await http_session.ws_connect(live.url.replace("http", "ws", 1) + "/ws", headers=headers,
                                                   autoping=False)
            except aiohttp.WSServerHandshakeError as refused:
                assert refused.status == 403 and origin not in (None, "own")
                return
            async with ws:
                first = await ws.receive(timeout=10)
                assert json.loads(first.data)["type"] == "state"
                # What a client sends is ignored; only a message over the 64 KiB limit closes the socket.
                too_big = any(len(data) > 64 * 1024 for _, data in sent)
                try:
                    for kind, data in sent:
                        if kind == "text":
                            await ws.send_str(data)
                        elif kind == "binary":
                            await ws.send_bytes(data)
                        else:
                            await ws.ping()
                    await ws.ping(b"done")
                except ConnectionError:  # the server closed it after a message over the limit
                    assert too_big
                    return
                while True:
                    reply = await ws.receive(timeout=10)
                    if reply.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY) or (
                            reply.type == aiohttp.WSMsgType.PONG and reply.data != b"done"):
                        continue  # events of runs other tests queued; a pong to an earlier ping
                    break
                if too_big:  # closed with 1009 (message too big), or torn down before that frame was read
                    assert (reply.type == aiohttp.WSMsgType.CLOSE and reply.data == 1009) or (
                        reply.type == aiohttp.WSMsgType.CLOSED), (reply, ws.close_code)
                else:
                    assert reply.type == aiohttp.WSMsgType.PONG, reply

    asyncio.run(session())
    assert send(live, "GET", "/api/runs", b"", {}).status == 200
