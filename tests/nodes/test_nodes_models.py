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


def test_a_checkpoint_loads_with_a_config_folder_from_the_configs_folders(tiny_sd1, tmp_path):
    """The tiny model's 4 normalisation groups cannot be read from its weights: its config folder says them."""
    import shutil

    import torch
    from pack_support import text_to_image

    from gouache.engine import Engine

    home = tmp_path / "home"
    checkpoints, configs = home / "models" / "checkpoints", home / "models" / "configs" / "tiny-sd1-config"
    checkpoints.mkdir(parents=True)
    shutil.copy(tiny_sd1.safetensors, checkpoints / "tiny-sd1-file.safetensors")
    shutil.copytree(tiny_sd1.folder, checkpoints / "tiny-sd1")
    for config in tiny_sd1.folder.rglob("*.json"):  # the JSON only, as a config folder holds
        target = configs / config.relative_to(tiny_sd1.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(config, target)
    engine = Engine(home=home)
    from_file = text_to_image("tiny-sd1-file.safetensors")
    from_file["nodes"]["checkpoint"]["inputs"]["config"] = "tiny-sd1-config"
    result = engine.run(from_file, outputs=["sampler"])
    assert result.ok, result.error
    folder = engine.run(text_to_image("tiny-sd1"), outputs=["sampler"])
    assert torch.equal(result.outputs["sampler"]["latent"]["samples"], folder.outputs["sampler"]["latent"]["samples"])
    from_file["nodes"]["checkpoint"]["inputs"]["config"] = "tiny-sd1-confg"
    valid, problems = engine.check(from_file)
    assert valid is None and [(p.node, p.input, p.code) for p in problems] == [("checkpoint", "config", "not_a_choice")]
    assert "'tiny-sd1-config'" in problems[0].message
