"""POST /api/import: the editor's way to open ComfyUI and A1111 files (issue 15), through the pack's importers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web_support import Client, MessageCheck, png_with_text, send_raw

COMFY_FILES = Path(__file__).resolve().parents[1] / "nodes" / "comfy_files"
A1111 = ("a red circle, blue background\nNegative prompt: blurry\n"
         "Steps: 2, Sampler: Euler a, CFG scale: 3, Seed: 7, Size: 64x64, Model: gouache-tiny, Version: v1.10.1")


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    from gouache.engine import Engine
    from gouache.web.background import BackgroundServer

    engine = Engine(home=tmp_path_factory.mktemp("home"))
    with BackgroundServer(engine) as running, MessageCheck(running.url):
        yield running


@pytest.fixture
def http(builtin) -> Client:
    return Client(builtin.url)


def test_a_comfyui_api_file_opens_as_a_gouache_workflow(http):
    reply = http.post("/api/import", raw=(COMFY_FILES / "default_api_tiny.json").read_bytes())
    assert reply.status == 200 and reply.json["problems"] == []
    nodes = reply.json["workflow"]["nodes"]
    assert nodes["3"]["type"] == "Sampler" and nodes["4"]["inputs"]["name"] == "gouache-tiny"


def test_what_has_no_equivalent_and_models_not_here_are_problems_beside_the_workflow(http):
    reply = http.post("/api/import", raw=(COMFY_FILES / "custom_ui.json").read_bytes())
    assert reply.status == 200
    unmapped = {problem["node"] for problem in reply.json["problems"] if problem["code"] == "unmapped_node"}
    assert unmapped == {"20", "21", "22"} and not unmapped & set(reply.json["workflow"]["nodes"])
    reply = http.post("/api/import", raw=(COMFY_FILES / "default_api.json").read_bytes())
    [problem] = reply.json["problems"]
    assert (problem["node"], problem["code"]) == ("4", "not_a_choice") and "gouache-tiny" in problem["message"]


def test_comfyui_and_a1111_pngs_open_from_their_chunks(http):
    ui = (COMFY_FILES / "default_ui.json").read_text()
    reply = http.post("/api/import", raw=png_with_text(workflow=ui, prompt=(COMFY_FILES / "default_api_tiny.json").read_text()))
    assert reply.status == 200 and reply.json["workflow"]["layout"]["6"]["title"] == "Positive prompt"
    reply = http.post("/api/import", raw=png_with_text(parameters=A1111))
    assert reply.status == 200 and reply.json["problems"] == []
    types = sorted(entry["type"] for entry in reply.json["workflow"]["nodes"].values())
    assert types == sorted(["CheckpointLoader", "EmptyLatent", "Sampler", "SaveImage", "TextEncode", "TextEncode", "VAEDecode"])


@pytest.mark.parametrize("body", [b"", b"not json", b"{\"a\": 1}", b"\x89PNG\r\n\x1a\n", png_with_text(other="x")])
def test_what_is_no_workflow_is_a_problem(http, body):
    reply = http.post("/api/import", raw=body)
    assert reply.status == 400
    assert reply.json["problems"][0]["code"] in ("unreadable_workflow", "unknown_format")


def test_the_route_keeps_the_servers_security_rules(builtin):
    reply = send_raw(builtin.url, "POST", "/api/import", (COMFY_FILES / "default_api_tiny.json").read_bytes(),
                     {"Origin": "http://evil.example"})
    assert reply.status == 403 and "evil.example" in json.loads(reply.body)["error"]
    reply = send_raw(builtin.url, "POST", "/api/import", b"{}", announce=64 * 1024 * 1024)
    assert reply.status == 413 and "the limit is 32 MiB" in json.loads(reply.body)["error"]
