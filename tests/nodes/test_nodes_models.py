"""Model folders: what ``gouache models --json`` reports, built-in entries, devices."""

from __future__ import annotations

import json
from pack_support import gouache_home  # noqa: F401

from gouache.nodes.folders import builtin_checkpoints, weights_dir


def test_gouache_models_json_lists_every_kind_with_format_and_family(gouache_home, capsys):
    from gouache.cli.main import main

    assert main(["--home", str(gouache_home), "models", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert {"checkpoints", "loras", "vae", "upscale_models", "embeddings"} <= set(found)
    checkpoints = {entry["name"]: entry for entry in found["checkpoints"]}
    assert {name: (checkpoints[name]["format"], checkpoints[name]["family"])
            for name in ("tiny-sd1", "tiny-sd2", "tiny-sdxl")} == {
        "tiny-sd1": ("diffusers", "sd1"), "tiny-sd2": ("diffusers", "sd2"), "tiny-sdxl": ("diffusers", "sdxl")}
    loras = {entry["name"]: entry for entry in found["loras"]}
    assert loras["tiny-kohya.safetensors"]["format"] == "kohya"
    assert loras["tiny-diffusers.safetensors"]["format"] == "peft"
    assert loras["tiny-sdxl-kohya.safetensors"]["family"] == "sdxl"
    assert loras["tiny-sdxl-kohya.safetensors"]["parts"] == ["unet", "text_encoder", "text_encoder_2"]
    assert loras["tiny-kohya.safetensors"]["kinds"] == ["lora"]
    assert "tiny-2x.safetensors" in {entry["name"] for entry in found["upscale_models"]}
    assert checkpoints["tiny-sd2"]["kind"] == "checkpoint"
    embeddings = {entry["name"]: entry for entry in found["embeddings"]}
    assert {name: (entry["kind"], entry["vectors"], entry["widths"]) for name, entry in embeddings.items()} == {
        "tiny-a1111.pt": ("embedding", 2, [8]), "tiny-emb.safetensors": ("embedding", 3, [8]),
        "tiny-sdxl-pair.safetensors": ("embedding", 2, [8, 16]), "odd-width.safetensors": ("embedding", 1, [5])}


def test_single_files_are_described_from_their_header(tiny_sd1, tiny_sdxl, tmp_path):
    from gouache.nodes.folders import describe_checkpoint

    assert describe_checkpoint(tiny_sd1.safetensors) == {"format": "safetensors", "family": "sd1", "kind": "checkpoint"}
    assert describe_checkpoint(tiny_sdxl.safetensors) == {"format": "safetensors", "family": "sdxl", "kind": "checkpoint"}
    assert describe_checkpoint(tiny_sd1.ckpt) == {"format": "ckpt", "family": None}


def test_the_embedded_model_is_listed_as_its_single_file_described_by_its_folder():
    entries = builtin_checkpoints()
    single = weights_dir() / "gouache-tiny.safetensors"
    [entry] = entries
    assert entry.name == "gouache-tiny" and entry.path == single
    assert entry.info["config_dir"] == str(weights_dir() / "gouache-tiny")


def test_cpu_plan_is_full_precision():
    import torch

    from gouache.nodes.devices import plan_for

    plan = plan_for("cpu")
    assert plan.device == torch.device("cpu") and not plan.is_gpu
    assert {plan.unet_dtype, plan.text_dtype, plan.vae_dtype} == {torch.float32}
    if not torch.cuda.is_available():
        assert plan_for("auto").device.type in ("cpu", "mps")


def test_builtin_gouache_tiny_loads_the_single_file_with_its_folder_as_config(
        monkeypatch, tmp_path, tiny_sd1, gouache_home):
    """Stand the tiny SD 1.x fixture in for the embedded weights: both forms, as they will ship."""
    import shutil

    import torch
    from pack_support import text_to_image

    import gouache.nodes.folders as folders
    from gouache.engine import Engine

    weights = tmp_path / "weights"
    shutil.copytree(tiny_sd1.folder, weights / "gouache-tiny")
    shutil.copyfile(tiny_sd1.safetensors, weights / "gouache-tiny.safetensors")
    monkeypatch.setattr(folders, "weights_dir", lambda: weights)
    engine = Engine(home=gouache_home)
    [entry] = [e for e in engine.models.list("checkpoints") if e.name == "gouache-tiny"]
    assert entry.path == weights / "gouache-tiny.safetensors" and entry.info["builtin"] is True
    builtin = engine.run(text_to_image("gouache-tiny"), outputs=["sampler"])
    assert builtin.ok, builtin.error
    folder = engine.run(text_to_image("tiny-sd1"), outputs=["sampler"])
    difference = builtin.outputs["sampler"]["latent"]["samples"] - folder.outputs["sampler"]["latent"]["samples"]
    assert difference.abs().max().item() < 1e-5
    assert torch.isfinite(builtin.outputs["sampler"]["latent"]["samples"]).all()
