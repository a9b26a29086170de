"""Request bodies are read whole up to their limit, JSON is strict both ways, and no input gets a 5xx.

Regressions from issue 18: bodies cut wherever a TCP segment ended, 500s on a lone surrogate and
on a NUL in an upload's file name, a temporary left behind, a NaN saved and served back, names
ending in a newline, 200 MiB uploads read before being refused.
"""

from __future__ import annotations

import json
import uuid

import pytest
from test_api_files import multipart, png
from web_support import Client, add_chain, chain, send_raw, toy_engine

from gouache.web.background import BackgroundServer

JSON = {"Content-Type": "application/json"}
MiB = 1024 * 1024


def run_body(workflow: dict, padding: int = 0) -> bytes:
    """A POST /api/runs body; ``padding`` characters of notes in the workflow's meta make it larger."""
    if padding:
        workflow = {**workflow, "meta": {"title": "padded", "notes": "x" * padding}}
    return json.dumps({"workflow": workflow}).encode()


def test_a_5000_node_workflow_arriving_in_small_pieces_is_read_whole_and_runs(server):
    body = run_body(add_chain(5000))
    assert len(body) > 524_096  # where the body was cut
    reply = send_raw(server.url, "POST", "/api/runs", body, JSON, piece=16 * 1024, pause=0.0005)
    assert reply.status == 202, reply.body[:500]
    record = Client(server.url).wait_run(reply.json["run_id"], timeout=120)
    assert record["status"] == "succeeded" and len(record["executed"]) == 5000


@pytest.mark.timeout(180)
def test_a_7_mib_body_inside_the_8_mib_limit_is_accepted(server):
    body = run_body(add_chain(20), padding=7 * MiB - 4000)
    assert 7 * MiB - 4096 < len(body) <= 7 * MiB
    reply = send_raw(server.url, "POST", "/api/runs", body, JSON, piece=256 * 1024, pause=0.001)
    assert reply.status == 202, reply.body[:500]
    assert Client(server.url).wait_run(reply.json["run_id"])["status"] == "succeeded"


def test_a_700_kb_body_in_pieces_is_parsed_whole(server):
    body = run_body(add_chain(20), padding=700_000)
    reply = send_raw(server.url, "POST", "/api/runs", body, JSON, piece=1459, pause=0.0001)
    assert reply.status == 202, reply.body[:500]


def test_a_chunked_body_is_read_whole(server):
    import http.client

    body = run_body(add_chain(200), padding=300_000)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/api/runs", body=iter(body[i:i + 5000] for i in range(0, len(body), 5000)),
                       headers={**JSON, "Transfer-Encoding": "chunked"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 202, response.read()[:500]


def test_bodies_over_the_limit_are_refused_naming_it(server):
    announced = send_raw(server.url, "POST", "/api/runs", b"{}", JSON, announce=9 * MiB)
    assert announced.status == 413 and "8 MiB" in announced.json["error"]
    workflow = send_raw(server.url, "PUT", "/api/workflows/big", b" " * (8 * MiB + 1), JSON, piece=MiB)
    assert workflow.status == 413 and "8 MiB" in workflow.json["error"]


@pytest.mark.parametrize("workflow, named", [
    (b'{"format": "gouache/1", "nodes": {"a": {"type": "Number", "inputs": {"value": NaN}}}}', "NaN"),
    (b'{"format": "gouache/1", "nodes": {"a": {"type": "Number", "inputs": {"value": -Infinity}}}}', "Infinity"),
    (b'{"format": "gouache/1", "nodes": {}, "nodes": {"a": {"type": "Number"}}}', "appears twice"),
    (b'{"format": "gouache/1", "nodes": {"a": {"type": "Int", "inputs": {"value": 1' + b"0" * 100 + b"}}}}", "digits"),
    (b'{"format": "gouache/1", "nodes": {}, "meta": ' + b"[" * 100 + b"]" * 100 + b"}", "nested"),
    (b'{"format": "gouache/1", "nodes": {}, "meta": {"title": "\\ud800"}}', "surrogate"),
    (b'{"format": "gouache/1", "nodes": {}, "meta": {"\\udfff": 1}}', "surrogate"),
    (b'{"format": "gouache/1", "nodes": {"a": {"type": "Number"', "not strict JSON"),
])
def test_what_is_not_strict_json_is_refused_naming_the_problem(client, workflow, named):
    for method, path, body in (("POST", "/api/runs", b'{"workflow": ' + workflow + b"}"),
                               ("PUT", "/api/workflows/strict", workflow)):
        reply = client.request(method, path, raw=body, headers=JSON)
        assert reply.status == 400, (method, reply.body)
        assert named in reply.json["error"], reply.json


@pytest.mark.parametrize("body, named", [(b"", "empty"), (b"  \n", "empty"), (b"\xff\xfe{}", "UTF-8"),
                                         (b"\x00", "not strict JSON")])
def test_a_body_that_is_not_text_or_is_empty_is_refused(client, body, named):
    for method, path in (("POST", "/api/runs"), ("PUT", "/api/workflows/strict")):
        reply = client.request(method, path, raw=body, headers=JSON)
        assert reply.status == 400 and named in reply.json["error"], (method, reply.json)


def test_a_lone_surrogate_in_a_saved_workflow_is_refused_and_leaves_nothing(client, engine):
    body = b'{"format": "gouache/1", "nodes": {}, "meta": {"title": "caf\\udce9"}}'
    reply = client.put("/api/workflows/mine", raw=body, headers=JSON)
    assert reply.status == 400 and "meta.title" in reply.json["error"]
    folder = engine.settings.home / "workflows"
    assert not folder.exists() or list(folder.iterdir()) == []
    # a surrogate pair is one character, and fine
    pair = b'{"format": "gouache/1", "nodes": {}, "meta": {"title": "\\ud83c\\udfa8"}}'
    assert client.put("/api/workflows/mine", raw=pair, headers=JSON).status == 201
    assert client.get("/api/workflows/mine").json["meta"]["title"] == "\U0001f3a8"
    assert [path.name for path in folder.iterdir()] == ["mine.json"]


def test_a_nan_written_into_a_saved_file_is_never_served_as_json(client, engine):
    folder = engine.settings.home / "workflows"
    folder.mkdir(parents=True)
    (folder / "edited.json").write_text('{"format": "gouache/1", "nodes": {}, "meta": {"title": NaN}}')
    reply = client.get("/api/workflows/edited")
    assert reply.status == 409 and "NaN" in reply.json["error"]
    listed = {item["name"]: item for item in client.get("/api/workflows").json["workflows"]}
    assert listed["edited"]["title"] is None


@pytest.mark.parametrize("name", ["mine%0A", "mine%0D", "mine%09x", "mine%00", "mine%1b", "%0Amine", "mine%E2%80%8B"])
def test_names_with_line_breaks_or_control_characters_are_refused(client, engine, name):
    reply = client.put(f"/api/workflows/{name}", chain())
    assert reply.status == 400 and "workflow name" in reply.json["error"]
    assert not (engine.settings.home / "workflows").exists()


def test_leftover_temporaries_are_removed_when_the_server_starts(tmp_path):
    engine = toy_engine(tmp_path / "home")
    folder = engine.settings.home / "workflows"
    folder.mkdir(parents=True)
    (folder / "kept.json").write_text(json.dumps(chain()))
    (folder / "kept.json.tmp").write_text('{"format": "gouache/1", "no')
    (folder / ".kept.abc123.json.tmp").write_text("")
    with BackgroundServer(engine) as running:
        assert sorted(path.name for path in folder.iterdir()) == ["kept.json"]
        listed = [w["name"] for w in Client(running.url).get("/api/workflows").json["workflows"] if w["source"] == "user"]
        assert listed == ["kept"]


def test_a_save_is_atomic_and_leaves_no_temporary(client, engine):
    for index in range(3):
        assert client.put("/api/workflows/mine", chain(meta={"title": f"v{index}"})).status in (200, 201)
    folder = engine.settings.home / "workflows"
    assert [path.name for path in folder.iterdir()] == ["mine.json"]
    assert json.loads((folder / "mine.json").read_text())["meta"]["title"] == "v2"


def test_an_upload_announcing_200_mib_is_refused_before_the_bytes_arrive(server):
    boundary = uuid.uuid4().hex
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n").encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    reply = send_raw(server.url, "POST", "/api/uploads", start + b"\0" * 1000, headers, announce=200 * MiB)
    assert reply.status == 413 and "32 MiB" in reply.json["error"]


def test_a_multipart_part_announcing_200_mib_is_refused_before_its_bytes_arrive(client):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
            f"Content-Length: {200 * MiB}\r\nContent-Type: image/png\r\n\r\n").encode() + png() \
        + f"\r\n--{boundary}--\r\n".encode()
    reply = client.post("/api/uploads", raw=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status == 413 and "32 MiB" in reply.json["error"]


@pytest.mark.parametrize("filename", ["a\0b.png", "\0", "a\rb.png", "a\x7fb.png"])
def test_control_characters_in_an_upload_name_are_a_4xx(client, engine, filename):
    body, headers = multipart(filename, png())
    reply = client.post("/api/uploads", raw=body, headers=headers)
    assert 400 <= reply.status < 500 or reply.status == 201, reply.body
    if reply.status == 201:
        assert "\0" not in reply.json["name"] and "\r" not in reply.json["name"]
    else:
        assert reply.json["error"]


def test_an_unknown_api_route_or_method_answers_json(client):
    missing = client.get("/api/nope")
    assert missing.status == 404 and "/api/nope" in missing.json["error"]
    wrong = client.request("PATCH", "/api/runs")
    assert wrong.status == 405 and "PATCH" in wrong.json["error"]
