"""Fixtures for the diffusion-domain tests: tiny real-format models, built once per session, offline."""

from __future__ import annotations

import os

# Set before diffusers / transformers / huggingface_hub are imported anywhere: they read it at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import tiny_models  # noqa: E402


@dataclass(frozen=True)
class TinyModel:
    """One tiny model in every form: its diffusers folder and the same weights as single files."""

    family: str
    folder: Path
    safetensors: Path
    ckpt: Path


def _build(factory: pytest.TempPathFactory, family: str) -> TinyModel:
    root = factory.mktemp(f"tiny_{family}")
    folder = tiny_models.build_diffusers_folder(family, root / "diffusers", seed={"sd1": 1, "sd2": 2, "sdxl": 3}[family])
    return TinyModel(
        family=family,
        folder=folder,
        safetensors=tiny_models.write_single_file(folder, root / f"tiny-{family}.safetensors"),
        ckpt=tiny_models.write_single_file(folder, root / f"tiny-{family}.ckpt"),
    )


@pytest.fixture(scope="session")
def tiny_sd1(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny SD 1.x model (epsilon): diffusers folder, .safetensors and .ckpt."""
    return _build(tmp_path_factory, "sd1")


@pytest.fixture(scope="session")
def tiny_sd2(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny SD 2.x model (v-prediction, OpenCLIP text encoder in its single files)."""
    return _build(tmp_path_factory, "sd2")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny SDXL base model: two text encoders, pooled output, size embedding."""
    return _build(tmp_path_factory, "sdxl")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make any attempt to open a network connection fail the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
