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


def test_a_null_mode_is_saved_as_no_mode(client, engine):
    workflow = chain(("a", {"type": "Number", "inputs": {"value": 1}}))
    sent = {**workflow, "nodes": {"a": {**workflow["nodes"]["a"], "mode": None}}}
    assert client.put("/api/workflows/nulled", sent).status == 201
    served = client.get("/api/workflows/nulled")
    assert served.status == 200 and served.json["nodes"] == workflow["nodes"]


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


def test_the_list_gives_each_workflow_its_description_and_a_thumbnail_from_its_newest_output(client, engine):
    import os

    workflow = chain(("number", {"type": "Number", "inputs": {"value": 1}}),
                     ("save", {"type": "Swatch", "inputs": {"value": {"node": "number", "output": "value"},
                                                            "prefix": "shapes/mine"}}),
                     meta={"title": "Mine", "description": "Draws mine."})
    client.put("/api/workflows/mine", workflow)
    listed = {item["name"]: item for item in client.get("/api/workflows").json["workflows"]}
    assert listed["mine"]["description"] == "Draws mine." and listed["mine"]["thumbnail"] is None
    assert client.get("/api/workflows/mine/thumbnail").status == 404
    folder = engine.settings.folder("output") / "shapes"
    folder.mkdir(parents=True)
    for index, colour in enumerate(((255, 0, 0), (0, 0, 255))):
        from PIL import Image

        path = folder / f"mine_{index:05d}.png"
        Image.new("RGB", (8, 8), colour).save(path)
        os.utime(path, (1000 + index, 1000 + index))
    (folder / "mine-other_00009.png").write_bytes(b"not the workflow's")  # another prefix: never chosen
    listed = {item["name"]: item for item in client.get("/api/workflows").json["workflows"]}
    assert listed["mine"]["thumbnail"] == "/api/workflows/mine/thumbnail"
    reply = client.get("/api/workflows/mine/thumbnail")
    assert reply.status == 200 and reply.headers["Content-Type"] == "image/png"
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(reply.body)).getpixel((0, 0)) == (0, 0, 255)  # the newest


def test_a_shipped_workflow_shows_the_picture_shipped_beside_it(client):
    listed = {item["name"]: item for item in client.get("/api/workflows").json["workflows"]}
    shipped = listed["text-to-image"]
    assert shipped["description"].startswith("Render a 128 px picture")
    assert shipped["thumbnail"] == "/api/workflows/text-to-image/thumbnail"
    reply = client.get(shipped["thumbnail"])
    assert reply.status == 200 and reply.body[:8] == b"\x89PNG\r\n\x1a\n"


def test_shipped_prompts_have_titles(client):
    for name in ("text-to-image", "image-to-image", "hires-fix", "style-lora", "upscale-with-model"):
        layout = client.get(f"/api/workflows/{name}").json["layout"]
        assert (layout["positive"]["title"], layout["negative"]["title"]) == ("Positive prompt", "Negative prompt"), name
