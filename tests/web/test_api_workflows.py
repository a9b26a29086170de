"""GET/PUT/DELETE /api/workflows: the user's saved workflows and the shipped, read-only ones."""

from __future__ import annotations

import json

from web_support import chain


def test_save_list_read_delete(client, engine):
    workflow = chain(("a", {"type": "Number", "inputs": {"value": 1}}), meta={"title": "Mine"},
                     layout={"a": {"pos": [1, 2]}})
    assert client.put("/api/workflows/mine", workflow).status == 201
    assert client.put("/api/workflows/mine.json", workflow).status == 200
    assert json.loads((engine.settings.home / "workflows" / "mine.json").read_text()) == workflow
    listed = {item["name"]: item for item in client.get("/api/workflows").json["workflows"]}
    assert listed["mine"]["source"] == "user" and listed["mine"]["title"] == "Mine" and not listed["mine"]["read_only"]
    assert client.get("/api/workflows/mine").json == workflow
    assert client.delete("/api/workflows/mine").status == 200
    assert client.get("/api/workflows/mine").status == 404
    assert client.delete("/api/workflows/mine").status == 404


def test_names_are_plain(client, engine):
    workflow = chain()
    for name in ("..", "%2e%2e", "a%2fb", ".hidden", "x" * 200):
        assert client.put(f"/api/workflows/{name}", workflow).status in (400, 404), name
    assert client.get("/api/workflows").json["workflows"] == [] or all(
        not item["name"].startswith(".") for item in client.get("/api/workflows").json["workflows"])
    assert not (engine.settings.home / "workflows").exists() or list((engine.settings.home / "workflows").iterdir()) == []


def test_structurally_invalid_workflows_are_refused(client):
    reply = client.put("/api/workflows/bad", {"format": "gouache/1", "nodes": {"a": {"inputs": {}}}})
    assert reply.status == 400 and reply.json["problems"][0]["node"] == "a"
    assert client.put("/api/workflows/bad", {"nodes": {}}).status == 400


def test_shipped_workflows_are_listed_read_only(client, server, tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "demo.json").write_text(json.dumps(chain(meta={"title": "Demo"})))
    server.state.library.shipped = shipped
    listed = {item["name"]: item for item in client.get("/api/workflows").json["workflows"]}
    assert listed["demo"] == listed["demo"] | {"source": "shipped", "read_only": True, "title": "Demo"}
    assert client.get("/api/workflows/demo").json["meta"]["title"] == "Demo"
    assert client.put("/api/workflows/demo", chain()).status == 409
    assert client.delete("/api/workflows/demo").status == 409


def test_the_repository_workflows_folder_is_found():
    from pathlib import Path

    from gouache.web.workflows import shipped_folder

    assert shipped_folder() == Path(__file__).resolve().parents[2] / "workflows"
