"""GET /api/files never leaves its folders; POST /api/uploads takes images only and never overwrites."""

from __future__ import annotations

import io
import os
import socket
import uuid

import pytest
from PIL import Image


def png(colour=(255, 0, 0), size=(8, 8), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def multipart(filename: str, data: bytes, field: str = "image") -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def raw_get(server, path: str) -> int:
    """Send the path bytes exactly as written (no client-side normalisation of .. or %2e)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("top secret")
    return path


def test_files_are_served_from_their_folder(client, engine):
    (engine.settings.folder("output") / "a.png").write_bytes(png())
    (engine.settings.folder("temp") / "sub").mkdir()
    (engine.settings.folder("temp") / "sub" / "b.png").write_bytes(png())
    reply = client.get("/api/files/output/a.png")
    assert reply.status == 200 and reply.headers["Content-Type"] == "image/png"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/api/files/temp/sub/b.png").status == 200
    assert client.get("/api/files/models/a.png").status == 404
    assert client.get("/api/files/output/missing.png").status == 404


def test_non_images_are_downloads_never_pages(client, engine):
    (engine.settings.folder("output") / "page.html").write_text("<script>alert(1)</script>")
    reply = client.get("/api/files/output/page.html")
    assert reply.headers["Content-Type"].startswith("application/octet-stream")
    assert reply.headers["Content-Disposition"] == "attachment"


@pytest.mark.parametrize("path", [
    "/api/files/output/../secret.txt",
    "/api/files/output/%2e%2e/secret.txt",
    "/api/files/output/%2E%2E%2Fsecret.txt",
    "/api/files/output/..%2fsecret.txt",
    "/api/files/output/..%5csecret.txt",
    "/api/files/output/%2e%2e%2f%2e%2e%2fhome%2fsecret.txt",
    "/api/files/output//etc/passwd",
    "/api/files/output/%2fetc%2fpasswd",
    "/api/files/output/C:%5cwindows%5cwin.ini",
    "/api/files/output/a.png%00.txt",
    "/api/files/output/sub/../../secret.txt",
    "/api/files/output/%252e%252e/secret.txt",
])
def test_paths_outside_the_folder_are_never_served(server, engine, secret, path):
    engine.settings.folder("output")
    (engine.settings.home.parent / "secret.txt").write_text("top secret")
    status, reply = raw_get(server, path)
    assert status in (400, 404), reply[:300]
    assert b"top secret" not in reply and b"root:" not in reply


def test_symlinks_out_of_the_folder_are_not_followed(client, engine, secret):
    os.symlink(secret, engine.settings.folder("output") / "link.png")
    os.symlink(secret.parent, engine.settings.folder("output") / "dir")
    assert client.get("/api/files/output/link.png").status == 404
    assert client.get("/api/files/output/dir/secret.txt").status == 404


def test_an_upload_is_checked_and_never_overwrites(client, engine):
    body, headers = multipart("../../photo.png", png())
    first = client.post("/api/uploads", raw=body, headers=headers)
    assert first.status == 201 and first.json == {"name": "photo.png", "kind": "input", "path": "photo.png"}
    body, headers = multipart("photo.png", png((0, 255, 0)))
    second = client.post("/api/uploads", raw=body, headers=headers)
    assert second.status == 201 and second.json["name"] == "photo-1.png"
    folder = engine.settings.folder("input")
    assert Image.open(folder / "photo.png").getpixel((0, 0)) == (255, 0, 0)
    assert Image.open(folder / "photo-1.png").getpixel((0, 0)) == (0, 255, 0)
    broken = client.post("/api/uploads", raw=multipart("photo.png", png())[0], headers=headers)
    assert broken.status == 400  # the boundary does not match the header's
    assert Image.open(folder / "photo.png").getpixel((0, 0)) == (255, 0, 0)


def test_the_same_image_again_reuses_its_file(client, engine):
    for _ in range(2):
        body, headers = multipart("same.png", png())
        assert client.post("/api/uploads", raw=body, headers=headers).json["name"] == "same.png"
    assert sorted(p.name for p in engine.settings.folder("input").iterdir()) == ["same.png"]


def test_the_extension_follows_the_content(client):
    body, headers = multipart("picture.png", png(fmt="JPEG"))
    assert client.post("/api/uploads", raw=body, headers=headers).json["name"] == "picture.jpg"


@pytest.mark.parametrize("data", [b"<html>not an image</html>", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, png()[:40]])
def test_what_is_not_an_image_is_refused(client, engine, data):
    body, headers = multipart("evil.png", data)
    reply = client.post("/api/uploads", raw=body, headers=headers)
    assert reply.status == 415 and "error" in reply.json
    assert list(engine.settings.folder("input").iterdir()) == []


def test_uploads_have_a_size_limit(tmp_path):
    from web_support import Client, toy_engine
    from gouache.web.background import BackgroundServer
    from gouache.web.server import Limits

    with BackgroundServer(toy_engine(tmp_path / "h"), limits=Limits(upload_bytes=10_000, json_bytes=10_000)) as small:
        body, headers = multipart("big.bmp", png(size=(200, 200), fmt="BMP"))
        reply = Client(small.url).post("/api/uploads", raw=body, headers=headers)
        assert reply.status == 413
        assert Client(small.url).post("/api/runs", raw=b"[" * 20_000, headers={"Content-Type": "application/json"}).status == 413
        deep = Client(small.url).post("/api/runs", raw=b"[" * 5000 + b"]" * 5000, headers={"Content-Type": "application/json"})
        assert deep.status == 400


def test_an_upload_needs_a_file_field(client):
    body, headers = multipart("a.png", png(), field="other")
    assert client.post("/api/uploads", raw=body, headers=headers).status == 400
    assert client.post("/api/uploads", {"image": "x"}).status == 415
