"""The vendored litegraph is exactly the published 0.17.2 build."""

import hashlib
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "web" / "static" / "vendor" / "litegraph"


def test_vendored_files_match_their_checksums():
    lines = (VENDOR / "SHA256SUMS").read_text().split("\n")
    listed = dict(reversed(line.split()) for line in lines if line.strip())
    assert set(listed) == {"litegraph.es.js", "litegraph.css", "LICENSE"}
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_the_licence_is_mit():
    assert "Permission is hereby granted, free of charge" in (VENDOR / "LICENSE").read_text()
