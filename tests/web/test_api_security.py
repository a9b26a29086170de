"""Origin, Host and token checks; gouache serve refuses to expose itself without a token."""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from web_support import Client, steps_workflow, toy_engine
from gouache.web.background import BackgroundServer
from gouache.web.server import Security, serve


def ws_status(url: str, headers: dict[str, str]) -> int:
    async def attempt() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url.replace("http", "ws") + "/ws", headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status
    return asyncio.run(attempt())


def test_state_changing_requests_from_another_origin_are_refused(client, server):
    body = {"workflow": steps_workflow(steps=1, delay=0)}
    evil = client.post("/api/runs", body, headers={"Origin": "http://evil.example"})
    assert evil.status == 403 and "--allow-origin" in evil.json["error"]
    assert client.put("/api/workflows/x", {"format": "gouache/1", "nodes": {}},
                      headers={"Origin": "http://evil.example"}).status == 403
    assert client.delete("/api/runs/x", headers={"Origin": "null"}).status == 403
    assert client.post("/api/runs", body, headers={"Origin": server.url}).status == 202
    assert client.post("/api/runs", body).status == 202  # no Origin: not a browser page
    assert client.get("/api/nodes", headers={"Origin": "http://evil.example"}).status == 200


def test_websocket_upgrades_from_another_origin_are_refused(server):
    assert ws_status(server.url, {"Origin": "http://evil.example"}) == 403
    assert ws_status(server.url, {"Origin": server.url}) == 101
    assert ws_status(server.url, {}) == 101


def test_allowed_origins_may_call_the_api(tmp_path):
    security = Security(allow_origins=("http://tool.example",))
    with BackgroundServer(toy_engine(tmp_path / "h"), security=security) as running:
        client = Client(running.url)
        reply = client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0)},
                            headers={"Origin": "http://tool.example"})
        assert reply.status == 202 and reply.headers["Access-Control-Allow-Origin"] == "http://tool.example"
        assert client.request("OPTIONS", "/api/runs", headers={"Origin": "http://tool.example"}).status == 204
        assert ws_status(running.url, {"Origin": "http://tool.example"}) == 101
        assert ws_status(running.url, {"Origin": "http://other.example"}) == 403


def test_other_host_names_are_refused_on_loopback(client):
    # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example
    assert client.get("/api/nodes", headers={"Host": "evil.example:8188"}).status == 403
    assert client.get("/api/nodes", headers={"Host": "localhost"}).status == 200


def test_a_token_is_required_when_set(tmp_path):
    with BackgroundServer(toy_engine(tmp_path / "h"), security=Security(token="s3cret")) as running:
        client = Client(running.url)
        assert client.get("/api/nodes").status == 401
        assert client.get("/").status == 401
        assert client.get("/api/nodes", headers={"Authorization": "Bearer wrong"}).status == 401
        assert client.get("/api/nodes", headers={"Authorization": "Bearer s3cret"}).status == 200
        assert client.get("/api/nodes", headers={"Cookie": "gouache_token=s3cret"}).status == 200
        assert client.get("/?token=wrong").status == 401
        assert ws_status(running.url, {}) == 401
        assert ws_status(running.url, {"Authorization": "Bearer s3cret"}) == 101

        async def login() -> tuple[int, str]:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                async with session.get(running.url + "/?token=s3cret") as reply:
                    await reply.read()
                async with session.get(running.url + "/api/nodes") as after:
                    return after.status, str(reply.url)
        status, landed = asyncio.run(login())
        assert status == 200 and landed.endswith("/")


def args(**overrides):
    values = {"host": "0.0.0.0", "port": 0, "token": None, "allow_origin": [], "home": None,
              "device": None, "safe_mode": False}
    return argparse.Namespace(**(values | overrides))


def test_serve_refuses_other_interfaces_without_a_token(capsys):
    assert serve(args()) == 2
    assert "--token" in capsys.readouterr().err


def test_security_headers(client):
    reply = client.get("/")
    assert reply.status == 200
    assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Frame-Options"] == "DENY"


def test_static_and_extension_files_stay_in_their_folders(client, server):
    from test_api_files import raw_get

    assert client.get("/static/vendor/litegraph/litegraph.es.js").headers["Content-Type"].startswith("text/javascript")
    extensions = client.get("/api/extensions").json["extensions"]
    assert extensions == [{"name": "dial", "scripts": ["/extensions/dial/dial.js"], "styles": ["/extensions/dial/dial.css"]}]
    assert client.get("/extensions/dial/dial.js").headers["Content-Type"].startswith("text/javascript")
    for path in ("/extensions/dial/../web_pack.py", "/extensions/dial/%2e%2e/web_pack.py",
                 "/extensions/dial/..%2fweb_pack.py", "/static/..%2fserver.py", "/static/%2e%2e/server.py",
                 "/extensions/nope/dial.js"):
        status, reply = raw_get(server, path)
        assert status in (400, 404), (path, reply[:200])
        assert b"gouache_register" not in reply and b"create_app" not in reply


def test_an_allowed_origin_preflight_needs_no_token(tmp_path):
    security = Security(allow_origins=("http://tool.example",), token="s3cret")
    with BackgroundServer(toy_engine(tmp_path / "h"), security=security) as running:
        client = Client(running.url)
        assert client.request("OPTIONS", "/api/runs", headers={"Origin": "http://tool.example"}).status == 204
        assert client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0)},
                           headers={"Origin": "http://tool.example"}).status == 401
        assert client.post("/api/runs", {"workflow": steps_workflow(steps=1, delay=0)},
                           headers={"Origin": "http://tool.example", "Authorization": "Bearer s3cret"}).status == 202
