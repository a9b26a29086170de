"""The training command's last stages, in miniature: place, lora and export run, resume and chain.

Starts from the shipped weights (as the `unet` stage would leave them in `.train/`), runs a few
steps of each stage through `python -m gouache_training.train`'s entry point with small
latent caches, and checks what each stage leaves for the next one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors import safe_open

from gouache_training import evaluate, export, train, train_lora, train_place

pytestmark = pytest.mark.slow


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A `.train/` folder holding what the vae and unet stages leave behind."""
    pipe = evaluate.load_shipped()
    root = tmp_path / "work"
    pipe.vae.save_pretrained(root / "vae" / "final")
    pipe.unet.save_pretrained(root / "unet" / "final" / "unet")
    pipe.text_encoder.save_pretrained(root / "unet" / "final" / "text_encoder")
    shutil.copytree(evaluate.SHIPPED / "tokenizer", root / "tokenizer")
    return root


def test_place_lora_and_export_stages_chain_and_resume(work: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train_place, "CACHE_SIZE", 64)
    monkeypatch.setattr(train_lora, "CACHE_SIZE", 64)
    torch.set_num_threads(2)
    out = tmp_path / "out"
    args = ["--seed", "0", "--work", str(work), "--out", str(out), "--steps", "3"]

    train.main([*args, "--stage", "place"])
    final = train_place.final_dir(work)
    state = torch.load(work / "place" / "state.pt", weights_only=False)
    assert state["step"] == 3 and set(state["extra"]) == {"weight", "bias"}
    assert (work / "latents_placed.pt").exists()
    placed = torch.load(work / "latents_placed.pt", weights_only=False)["scenes"]
    assert len(placed) == 64 and sum(s["position"] is not None for s in placed) > 20
    # What ships from the stage is a stock UNet: the probe is not part of it.
    unet = UNet2DConditionModel.from_pretrained(final / "unet")
    assert not any("probe" in k for k in unet.state_dict())
    before = (final / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()

    # A second run finds the final weights and leaves them alone.
    train.main([*args, "--stage", "place"])
    assert (final / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before

    train.main([*args, "--stage", "lora", "--stage", "export"])
    with safe_open(str(out / train_lora.ARTEFACT), "pt") as fh:
        assert any(k.startswith("lora_unet_") for k in fh.keys())
    # The exported folder holds the place stage's weights, not the unet stage's.
    shipped = export.load_folder(out / export.FOLDER).unet.state_dict()
    kept = unet.half().state_dict()
    assert all(torch.equal(shipped[k].half(), kept[k]) for k in kept)
    assert (out / export.SINGLE_FILE).exists()
