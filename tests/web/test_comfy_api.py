"""ComfyUI's HTTP and websocket API on gouache serve: ComfyUI's own style of client runs unchanged.

The example-style client (``comfy_websockets_client.py``) runs as a subprocess against a real ``gouache serve``
rendering with the embedded model. The queue, interrupt, messaging and security rules are told on the toy nodes
(through a toy importer registered under the built-in one's name, ``comfy_toy_pack.py``); object_info,
node_errors and uploads on the real built-in pack, whose mapping they are derived from.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
import websocket
from PIL import Image

import comfy_toy_pack
import toy_pack
import web_pack
from web_support import Client, Reply, conforms

from gouache.engine import Engine
from gouache.web.background import BackgroundServer
from gouache.web.comfy import messages as shapes
from gouache.web.server import Security

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PREVIEW_HEAD = [0, 0, 0, 1, 0, 0, 0, 1]  # >I 1 (preview image), >I 1 (JPEG)


# ---- helpers ----------------------------------------------------------------------------------


def toy_comfy_engine(home: Path) -> Engine:
    return Engine(packs={"toy": toy_pack, "web": web_pack, "comfy": comfy_toy_pack}, entry_points=False, home=home)


@pytest.fixture
def toy(tmp_path):
    with BackgroundServer(toy_comfy_engine(tmp_path / "home")) as running:
        yield running


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    engine = Engine(home=tmp_path_factory.mktemp("real") / "home")
    if "Sampler" not in engine.registry or "gouache-tiny" not in engine.models.names("checkpoints"):
        pytest.fail("the built-in pack or its embedded model gouache-tiny did not load")
    with BackgroundServer(engine) as running:
        yield running


class Comfy:
    """A ComfyUI-style client: JSON over urllib, ComfyUI's websocket via websocket-client."""

    def __init__(self, url: str, client_id: str | None = None, headers: dict[str, str] | None = None,
                 origin: str | None = None) -> None:
        self.url, self.http = url, Client(url)
        self.client_id = client_id or str(uuid.uuid4())
        options = {"origin": origin} if origin else {}
        self.ws = websocket.create_connection(f"{url.replace('http', 'ws', 1)}/ws?clientId={self.client_id}",
                                              timeout=60, header=headers or {}, **options)
        first = self.receive()
        assert first["type"] == "status" and first["data"]["sid"] == self.client_id, first

    def receive(self) -> Any:
        """The next frame: a message (checked against its model) or a binary frame's bytes."""
        frame = self.ws.recv()
        if isinstance(frame, bytes):
            return frame
        message = json.loads(frame)
        assert set(message) == {"type", "data"}, message
        conforms((shapes.MESSAGES[message["type"]],), message["data"], f"the ComfyUI message {message['type']!r}")
        return message

    def queue(self, prompt: dict[str, Any], **extra: Any) -> Reply:
        return self.http.post("/prompt", {"prompt": prompt, "client_id": self.client_id, **extra})

    def until_done(self, prompt_id: str, timeout: float = 120) -> list[Any]:
        """Every frame until ``executing`` with node null for ``prompt_id``."""
        frames, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.receive()
            frames.append(frame)
            if isinstance(frame, dict) and frame["type"] == "executing" and frame["data"]["node"] is None \
                    and frame["data"]["prompt_id"] == prompt_id:
                return frames
        raise AssertionError(f"no end of {prompt_id} in {timeout} s: {frames}")

    def close(self) -> None:
        self.ws.close()


def types(frames: list[Any]) -> list[str]:
    return [frame["type"] if isinstance(frame, dict) else "binary" for frame in frames]


def history(client: Client, prompt_id: str) -> dict[str, Any]:
    entry = client.get(f"/history/{prompt_id}").json[prompt_id]
    conforms((shapes.HistoryEntry,), entry, "a history entry")
    return entry


def toy_prompt(steps: int = 3, delay: float = 0.0, value: float = 1.0, prefix: str = "toy") -> dict[str, Any]:
    return {"1": {"class_type": "ToyNumber", "inputs": {"value": value}},
            "2": {"class_type": "ToySteps", "inputs": {"x": ["1", 0], "count": steps, "delay": delay}},
            "3": {"class_type": "ToySwatch", "inputs": {"value": ["2", 0], "prefix": prefix}}}


def text_to_image(**sampler: Any) -> dict[str, Any]:
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "cfg": 3, "denoise": 1, "latent_image": ["5", 0], "model": ["4", 0], "negative": ["7", 0],
            "positive": ["6", 0], "sampler_name": "euler", "scheduler": "normal", "seed": 5, "steps": 2, **sampler}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "gouache-tiny.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 128, "width": 128}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a red circle"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": ""}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def multipart(fields: dict[str, str], image: tuple[str, bytes] | None) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    if image is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{image[0]}"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + image[1] + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(client: Client, image: tuple[str, bytes] | None, path: str = "/upload/image", **fields: str) -> Reply:
    body, headers = multipart(fields, image)
    return client.post(path, raw=body, headers=headers)


def chunked_upload_status(url: str, part_bytes: int, parts: int) -> int:
    """POST /upload/image with ``parts`` file parts of ``part_bytes`` each, chunked: no Content-Length."""
    import asyncio
    import concurrent.futures

    import aiohttp

    boundary = uuid.uuid4().hex

    async def body():
        for index in range(parts):
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="image{index}"; filename="p{index}.png"'
                   "\r\n\r\n").encode()
            for _ in range(part_bytes // (1024 * 1024)):
                yield b"x" * (1024 * 1024)
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    async def send() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(url + "/upload/image", data=body(),
                                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as reply:
                    return reply.status
            except aiohttp.ClientError:
                return -1  # the server answered and closed before taking everything

    # In a thread of its own: the browser tests' Playwright (session-wide) keeps an event loop running in
    # this one, where asyncio.run refuses to start.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(send())).result()


def png(colour: tuple[int, ...], size: tuple[int, int] = (64, 64), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- ComfyUI's example client against gouache serve --------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_comfyui_example_client_runs_unchanged_against_gouache_serve(tmp_path):
    port, out = free_port(), tmp_path / "images"
    out.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "gouache", "serve", "--home", str(tmp_path / "home"),
                               "--port", str(port)], cwd=ROOT)
    try:
        client = Client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/system_stats").status == 200:
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "gouache serve did not start"
                time.sleep(0.2)
        ran = subprocess.run([sys.executable, str(HERE / "comfy_websockets_client.py"), f"127.0.0.1:{port}", str(out)],
                             capture_output=True, text=True, timeout=500)
        assert ran.returncode == 0, ran.stderr
        report = json.loads(ran.stdout.strip().splitlines()[-1])
        seen = report["seen"]
        assert seen[0] == "status" and seen[-1] == "executing"
        assert seen.index("execution_start") < seen.index("executing") < seen.index("progress")
        assert seen.count("progress") == 6 and seen.index("executed") < seen.index("execution_success")
        assert report["binary_heads"] and all(head == PREVIEW_HEAD for head in report["binary_heads"])
        [written] = report["written"]
        with Image.open(written) as image:
            assert image.format == "PNG" and image.size == (128, 128)
            low, high = image.convert("L").getextrema()
            assert high - low > 40, "the picture is flat: nothing was drawn"
        entry = history(client, report["prompt_id"])
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
        assert entry["prompt"][4] == ["9"] and entry["outputs"]["9"]["images"][0]["type"] == "output"
        assert client.get("/queue").json == {"queue_running": [], "queue_pending": []}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---- messages, history, files (toy nodes) ------------------------------------------------------


def test_a_prompt_tells_its_own_client_and_lists_its_outputs(toy):
    mine, other = Comfy(toy.url), Comfy(toy.url)
    try:
        reply = mine.queue(toy_prompt(steps=3))
        assert reply.status == 200
        queued = reply.json
        conforms((shapes.PromptQueued,), queued, "the /prompt answer")
        assert queued["node_errors"] == {} and queued["warnings"] == []
        frames = mine.until_done(queued["prompt_id"])
        seen = types(frames)
        assert seen[-2:] == ["execution_success", "executing"]
        assert seen.index("execution_start") < seen.index("executing")
        assert [f["data"]["node"] for f in frames if isinstance(f, dict) and f["type"] == "executing"] == \
            ["1", "2", "3", None]
        assert [(f["data"]["value"], f["data"]["max"]) for f in frames
                if isinstance(f, dict) and f["type"] == "progress"] == [(1, 3), (2, 3), (3, 3)]
        previews = [f for f in frames if isinstance(f, bytes)]
        assert len(previews) == 3 and all(list(f[:8]) == PREVIEW_HEAD and f[8:10] == b"\xff\xd8" for f in previews)
        [executed] = [f["data"] for f in frames if isinstance(f, dict) and f["type"] == "executed"]
        assert executed["node"] == "3" and executed["output"]["images"][0]["filename"].startswith("toy_")

        entry = history(mine.http, queued["prompt_id"])
        assert entry["outputs"] == {"3": executed["output"]}
        assert entry["prompt"][:2] == [queued["number"], queued["prompt_id"]]
        assert entry["prompt"][3] == {"client_id": mine.client_id} and entry["prompt"][4] == ["3"]
        assert [kind for kind, _ in entry["status"]["messages"]] == ["execution_start", "execution_cached",
                                                                   "execution_success"]
        image = entry["outputs"]["3"]["images"][0]
        viewed = mine.http.get("/view?" + urllib.parse.urlencode(image))
        assert viewed.status == 200 and viewed.headers["Content-Type"] == "image/png"
        assert viewed.body == (toy.engine.settings.folder("output") / image["filename"]).read_bytes()
        assert mine.http.get("/history").json == {queued["prompt_id"]: entry}

        # The other client hears only how long the queue is.
        other.ws.settimeout(0.5)
        heard = []
        try:
            while True:
                heard.append(other.receive())
        except websocket.WebSocketTimeoutException:
            pass
        assert heard and set(types(heard)) == {"status"}

        # Run again: the cached number node is announced, then the prompt runs as before.
        again = mine.queue(toy_prompt(steps=1)).json["prompt_id"]
        cached = [f["data"] for f in mine.until_done(again) if isinstance(f, dict) and f["type"] == "execution_cached"]
        assert cached and cached[0]["nodes"] == ["1"]
    finally:
        mine.close()
        other.close()


def test_a_failing_node_sends_execution_error_and_history_says_error(toy):
    comfy = Comfy(toy.url)
    try:
        prompt = {"1": {"class_type": "ToyLookup", "inputs": {"key": "three"}},
                  "2": {"class_type": "ToySwatch", "inputs": {"value": ["1", 0]}}}
        prompt_id = comfy.queue(prompt).json["prompt_id"]
        frames = comfy.until_done(prompt_id)
        [error] = [f["data"] for f in frames if isinstance(f, dict) and f["type"] == "execution_error"]
        assert error["node_id"] == "1" and error["node_type"] == "ToyLookup"
        assert error["exception_type"] == "unknown_key" and "no entry 'three'" in error["exception_message"]
        assert "execution_success" not in types(frames)
        entry = history(comfy.http, prompt_id)
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
        assert entry["status"]["messages"][-1][0] == "execution_error"
    finally:
        comfy.close()


def test_the_queue_lists_clears_deletes_and_interrupt_stops_the_running_prompt(toy):
    comfy = Comfy(toy.url)
    try:
        running = comfy.queue(toy_prompt(steps=2000, delay=0.02, prefix="long")).json["prompt_id"]
        pending = [comfy.queue(toy_prompt(steps=1, value=i)).json["prompt_id"] for i in range(3)]
        while not (isinstance(frame := comfy.receive(), dict) and frame["type"] == "progress"):
            pass
        # A client reconnecting under its id is told which node of its prompt runs, and gets what follows.
        again = Comfy(toy.url, client_id=comfy.client_id)
        caught_up = again.receive()
        assert caught_up["type"] == "executing" and caught_up["data"] == {
            "node": "2", "display_node": "2", "prompt_id": running}
        comfy.close()
        comfy = again
        listing = comfy.http.get("/queue").json
        conforms((shapes.QueueListing,), listing, "GET /queue")
        assert [item[1] for item in listing["queue_running"]] == [running]
        assert [item[1] for item in listing["queue_pending"]] == pending
        number, prompt_id, prompt, extra, outputs = listing["queue_pending"][0]
        assert prompt == toy_prompt(steps=1, value=0) and extra == {"client_id": comfy.client_id} and outputs == ["3"]
        assert comfy.http.get("/prompt").json == {"exec_info": {"queue_remaining": 4}}

        assert comfy.http.post("/queue", {"delete": [pending[1], running]}).json == {
            "deleted": [pending[1]], "not_pending": [running]}
        assert [item[1] for item in comfy.http.get("/queue").json["queue_pending"]] == [pending[0], pending[2]]
        assert comfy.http.post("/queue", {"clear": True}).json["deleted"] == [pending[0], pending[2]]
        assert comfy.http.get("/queue").json["queue_pending"] == []
        assert comfy.http.get(f"/api/runs/{running}").json["status"] == "running"  # clearing never stops it
        assert comfy.http.get(f"/history/{pending[0]}").json == {}  # a deleted prompt never ran

        assert comfy.http.post("/interrupt", {"prompt_id": "someone-else"}).json == {"interrupted": None}
        assert comfy.http.post("/interrupt").json == {"interrupted": running}
        frames = comfy.until_done(running)
        [stopped] = [f["data"] for f in frames if isinstance(f, dict) and f["type"] == "execution_interrupted"]
        assert stopped["prompt_id"] == running and stopped["node_id"] == "2" and stopped["node_type"] == "ToySteps"
        entry = history(comfy.http, running)
        assert entry["status"]["status_str"] == "error" and entry["status"]["messages"][-1][0] == "execution_interrupted"
        assert comfy.http.post("/queue", {"clear": "yes"}).status == 400
    finally:
        comfy.close()


def test_partial_execution_targets_run_only_the_outputs_named(toy):
    comfy = Comfy(toy.url)
    try:
        prompt = toy_prompt() | {"4": {"class_type": "ToySwatch", "inputs": {"value": ["1", 0], "prefix": "other"}}}
        prompt_id = comfy.queue(prompt, partial_execution_targets=["4"]).json["prompt_id"]
        frames = comfy.until_done(prompt_id)
        assert [f["data"]["node"] for f in frames if isinstance(f, dict) and f["type"] == "executing"] == ["1", "4", None]
        entry = history(comfy.http, prompt_id)
        assert entry["prompt"][4] == ["4"] and list(entry["outputs"]) == ["4"]
        unknown = comfy.queue(prompt, partial_execution_targets=["9"])
        assert unknown.status == 400 and "'9'" in unknown.json["error"]["details"]
    finally:
        comfy.close()


def test_fields_gouache_does_not_act_on_are_named(toy):
    http = Client(toy.url)
    front = http.post("/prompt", {"prompt": toy_prompt(), "front": True})
    assert front.status == 400 and front.json["error"]["type"] == "unsupported" and "front" in front.json["error"]["message"]
    assert http.post("/prompt", {"prompt": toy_prompt(), "number": 3}).json["error"]["message"].startswith("number")
    assert http.post("/prompt", {"client_id": "x"}).json["error"]["type"] == "no_prompt"
    warned = http.post("/prompt", {"prompt": toy_prompt(), "colour": "red",
                                   "extra_data": {"extra_pnginfo": {"workflow": {}}, "api_key": "k"}})
    assert warned.status == 200
    assert warned.json["warnings"] == [
        "colour: not a field of ComfyUI's /prompt body gouache knows; not acted on",
        "extra_data.api_key: gouache does not act on it",
        "extra_data.extra_pnginfo is not written into saved PNGs: gouache's SaveImage embeds the gouache/1 workflow "
        "the prompt became"]
    chosen = http.post("/prompt", {"prompt": toy_prompt(), "prompt_id": "my-own-id"})
    assert chosen.json["prompt_id"] == "my-own-id"
    assert http.post("/prompt", {"prompt": toy_prompt(), "prompt_id": "my-own-id"}).json["error"]["type"] == "invalid_prompt"
    assert http.post("/prompt", {"prompt": {"1": {"inputs": {}}}}).json["node_errors"] == {
        "1": {"errors": [{"type": "invalid_prompt", "message": "node '1' has no class_type; each node is "
                          "{\"class_type\", \"inputs\"}", "details": "", "extra_info": {"code": "invalid_prompt"}}],
              "dependent_outputs": [], "class_type": ""}}


# ---- security ---------------------------------------------------------------------------------


def test_the_comfyui_routes_keep_the_security_rules(toy):
    http = Client(toy.url)
    evil = {"Origin": "http://evil.example"}
    assert http.post("/prompt", {"prompt": toy_prompt()}, headers=evil).status == 403
    assert http.post("/interrupt", headers=evil).status == 403
    assert http.post("/queue", {"clear": True}, headers=evil).status == 403
    body, headers = multipart({}, ("x.png", png((1, 2, 3))))
    assert http.post("/upload/image", raw=body, headers={**headers, **evil}).status == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Comfy(toy.url, origin="http://evil.example")
    assert refused.value.status_code == 403
    for path in ("/history", "/object_info", "/view?filename=x.png", "/system_stats"):
        assert http.get(path, headers={"Host": "evil.example:8188"}).status == 403, path


def test_a_token_guards_the_comfyui_routes(tmp_path):
    with BackgroundServer(toy_comfy_engine(tmp_path / "home"), security=Security(token="s3cret")) as running:
        http = Client(running.url)
        assert http.post("/prompt", {"prompt": toy_prompt()}).status == 401
        assert http.get("/history").status == 401
        assert http.get("/view?filename=x.png").status == 401
        with pytest.raises(websocket.WebSocketBadStatusException):
            Comfy(running.url)
        comfy = Comfy(running.url, headers={"Authorization": "Bearer s3cret"})
        comfy.close()
        assert http.post("/prompt", {"prompt": toy_prompt()}, headers={"Authorization": "Bearer s3cret"}).status == 200


def test_view_and_upload_never_leave_their_folder(toy):
    http = Client(toy.url)
    home = toy.engine.settings.home
    (home / "secret.png").write_bytes(png((9, 9, 9)))
    toy.engine.settings.folder("output")
    attempts = [{"filename": "../secret.png"}, {"filename": "secret.png", "subfolder": ".."},
                {"filename": "secret.png", "subfolder": "../output/.."}, {"filename": str(home / "secret.png")},
                {"filename": "..\\secret.png"}, {"filename": "secret.png", "subfolder": "/" + str(home)},
                {"filename": "secret.png", "type": "../"}, {"filename": "../secret.png [output]"},
                {"filename": "secret.png\x00.png"}]
    for query in attempts:
        reply = http.get("/view?" + urllib.parse.urlencode(query))
        assert reply.status in (400, 404) and b"error" in reply.body, (query, reply.status)
    os.symlink(home / "secret.png", toy.engine.settings.folder("output") / "link.png")
    assert http.get("/view?filename=link.png").status == 404
    for fields in ({"subfolder": "../escaped"}, {"subfolder": "/tmp"}, {"type": "../output"}):
        assert upload(http, ("x.png", png((1, 2, 3))), **fields).status == 400, fields
    assert not (home / "escaped").exists()


def test_uploads_follow_comfyui_naming_and_overwrite(toy):
    http = Client(toy.url)
    first = upload(http, ("photo.png", png((255, 0, 0))))
    assert first.status == 200 and first.json == {"name": "photo.png", "subfolder": "", "type": "input"}
    assert upload(http, ("photo.png", png((255, 0, 0)))).json["name"] == "photo.png"  # the same bytes again
    assert upload(http, ("photo.png", png((0, 255, 0)))).json["name"] == "photo-1.png"
    replaced = upload(http, ("photo.png", png((0, 0, 255))), overwrite="true", subfolder="masks")
    assert replaced.json == {"name": "photo.png", "subfolder": "masks", "type": "input"}
    again = upload(http, ("photo.png", png((0, 0, 200))), overwrite="1", subfolder="masks")
    assert again.json["name"] == "photo.png"
    viewed = http.get("/view?filename=photo.png&subfolder=masks&type=input")
    assert Image.open(io.BytesIO(viewed.body)).getpixel((0, 0)) == (0, 0, 200)
    assert upload(http, ("x.txt", b"not an image")).status == 415
    assert upload(http, None).status == 400
    assert upload(http, ("photo.png", png((1, 1, 1))), colour="red").status == 400
    broken = http.post("/upload/image", raw=b"--x\r\nnot a part", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status == 400 and "multipart" in broken.json["error"]
    assert chunked_upload_status(toy.url, part_bytes=20 * 1024 * 1024, parts=2) == 413  # 40 MiB, never announced

    # The mask editor's upload: the painted alpha put on the original image.
    painted = png((0, 0, 0, 0), mode="RGBA")
    ref = json.dumps({"filename": "photo.png", "subfolder": "masks", "type": "input"})
    masked = upload(http, ("clipspace-mask.png", painted), "/upload/mask", original_ref=ref, overwrite="true")
    assert masked.status == 200 and masked.json["name"] == "clipspace-mask.png"
    stored = Image.open(toy.engine.settings.folder("input") / "clipspace-mask.png")
    assert stored.mode == "RGBA" and stored.getpixel((3, 3)) == (0, 0, 200, 0)
    alpha = http.get("/view?filename=clipspace-mask.png&type=input&channel=a")
    assert Image.open(io.BytesIO(alpha.body)).getpixel((3, 3))[3] == 0
    small = upload(http, ("m.png", png((0, 0, 0, 0), (8, 8), "RGBA")), "/upload/mask", original_ref=ref)
    assert small.status == 415 and "8x8" in small.json["error"]


# ---- the built-in pack: object_info, node_errors, LoadImage --------------------------------------


def test_object_info_describes_the_mapped_classes_from_gouache_declarations(real):
    from gouache.web.comfy.translate import comfy_importer

    http = Client(real.url)
    info = http.get("/object_info").json
    importer = comfy_importer(real.engine.importers)
    assert set(info) == {name for name, spec in importer.nodes.items() if spec.type in real.engine.registry}
    for name, entry in info.items():
        conforms((shapes.ObjectInfo,), entry, f"object_info of {name}")
    sampler = info["KSampler"]
    required = sampler["input"]["required"]
    assert list(required)[:4] == ["model", "positive", "negative", "latent_image"]
    assert required["model"] == ["MODEL"] and required["latent_image"] == ["LATENT"]
    assert required["steps"][0] == "INT" and required["steps"][1]["min"] == 1
    assert required["seed"][1]["control_after_generate"] is True
    assert required["cfg"][0] == "FLOAT" and "max" in required["cfg"][1]
    assert {"euler", "dpmpp_2m", "uni_pc"} <= set(required["sampler_name"][0])
    assert sampler["output"] == ["LATENT"] and sampler["output_node"] is False
    loader = info["CheckpointLoaderSimple"]
    assert "gouache-tiny" in loader["input"]["required"]["ckpt_name"][0]
    assert loader["output"] == ["MODEL", "CLIP", "VAE"]
    assert info["LoadImage"]["input"]["required"]["image"][1]["image_upload"] is True
    assert "upload" not in info["LoadImage"]["input"]["required"]  # gouache has no counterpart
    assert info["SaveImage"]["output_node"] is True and info["SaveImage"]["output"] == []
    assert info["LatentUpscaleBy"]["input"]["required"]["scale_by"][0] == "FLOAT"
    assert "scale_by" not in info["LatentUpscale"]["input"].get("required", {})  # the mapping sets it
    assert http.get("/object_info/KSampler").json == {"KSampler": sampler}
    assert http.get("/object_info/NoSuchNode").json == {}


def test_bad_prompts_get_node_errors_in_comfyui_shape(real):
    http = Client(real.url)
    unmapped = text_to_image()
    unmapped["10"] = {"class_type": "UltimateSDUpscale", "inputs": {"image": ["8", 0]}}
    refused = http.post("/prompt", {"prompt": unmapped})
    assert refused.status == 400
    conforms((shapes.PromptRefused,), refused.json, "the 400 of /prompt")
    assert refused.json["error"]["type"] == "missing_node_type"
    entry = refused.json["node_errors"]["10"]
    assert entry["class_type"] == "UltimateSDUpscale" and entry["errors"][0]["type"] == "missing_node_type"
    assert set(refused.json["node_errors"]) == {"10"}

    bad = text_to_image(steps=0, cfg=1000)
    bad["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
    refused = http.post("/prompt", {"prompt": bad}).json
    assert refused["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(refused["node_errors"]) == {"3", "4"}
    errors = {error["details"]: error for error in refused["node_errors"]["3"]["errors"]}
    assert errors["steps"]["type"] == "value_smaller_than_min" and errors["steps"]["extra_info"]["received_value"] == 0
    assert errors["cfg"]["type"] == "value_bigger_than_max"
    assert refused["node_errors"]["3"]["class_type"] == "KSampler"
    assert refused["node_errors"]["3"]["dependent_outputs"] == ["9"]
    [checkpoint] = refused["node_errors"]["4"]["errors"]
    assert checkpoint["type"] == "value_not_in_list" and checkpoint["extra_info"]["input_name"] == "ckpt_name"
    assert "gouache-tiny" in checkpoint["message"]
    renamed = text_to_image()
    renamed["3"]["inputs"]["latent_image"] = ["7", 0]  # conditioning into a latent input: our name is 'latent'
    wrong = http.post("/prompt", {"prompt": renamed}).json["node_errors"]["3"]["errors"]
    assert [(error["type"], error["details"]) for error in wrong] == [("return_type_mismatch", "latent_image")]
    assert http.post("/prompt", {"prompt": {"9": text_to_image()["9"] | {"inputs": {}}}}).status == 400


@pytest.mark.slow
def test_an_uploaded_image_feeds_load_image(real):
    comfy = Comfy(real.url)
    try:
        stored = upload(comfy.http, ("swatch.png", png((200, 40, 10))), subfolder="mine").json
        name = f"{stored['subfolder']}/{stored['name']}"
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name, "upload": "image"}},
                  "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inverted"}}}
        queued = comfy.queue(prompt)
        assert queued.status == 200, queued.json
        prompt_id = queued.json["prompt_id"]
        assert "execution_success" in types(comfy.until_done(prompt_id))
        [image] = history(comfy.http, prompt_id)["outputs"]["3"]["images"]
        viewed = comfy.http.get("/view?" + urllib.parse.urlencode(image))
        assert Image.open(io.BytesIO(viewed.body)).convert("RGB").getpixel((5, 5)) == (55, 215, 245)
    finally:
        comfy.close()


def test_what_is_installed(real):
    http = Client(real.url)
    stats = http.get("/system_stats").json
    assert stats["system"]["python_version"] == sys.version and stats["devices"][0]["name"] == real.engine.settings.device
    assert stats["system"]["ram_total"] > 0 and stats["system"]["comfyui_version"].startswith("gouache")
    assert "gouache-tiny" in http.get("/models/checkpoints").json
    assert {"checkpoints", "loras", "vae", "embeddings"} <= set(http.get("/models").json)
    assert http.get("/models/unet").json == real.engine.models.names("diffusion_models")
    missing = http.get("/models/nothing")
    assert missing.status == 404 and "checkpoints" in missing.json["error"]
    assert isinstance(http.get("/embeddings").json, list)
