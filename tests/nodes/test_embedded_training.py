"""The training command in miniature: every stage runs through the one loop, resumes and chains.

The first test starts from the shipped weights (as the `unet` stage would leave them in `.train/`),
runs a few steps of the last stages through `python -m gouache_training.train`'s entry point with
small latent caches, and checks what each stage leaves for the next one. The second trains every
stage from scratch twice, once straight through and once cut off at each stage's first checkpoint
and started again, and asks for the same weights.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import torch

from gouache.nodes.devices import thread_plan
from diffusers import UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from gouache_training import evaluate, export, train, train_lora, train_place, train_unet, train_upscaler
from gouache_training.loop import Checkpointer

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
    torch.set_num_threads(thread_plan().threads or 1)
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


class Stopped(Exception):
    """Stands for the process being killed."""


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file under `folder` (or in the file `folder`), by file and name."""
    files = [folder] if folder.is_file() else sorted(folder.rglob("*.safetensors"))
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(str(f)).items()}


def test_every_stage_cut_off_at_a_checkpoint_resumes_to_the_weights_of_an_uninterrupted_run(
    tmp_path: Path, monkeypatch
) -> None:
    for module in (train_unet, train_place, train_lora):
        monkeypatch.setattr(module, "CACHE_SIZE", 64)
    monkeypatch.setattr(train_upscaler, "POOL", 64)
    # Scoring renders a few prompts instead of dozens: what is checked is which weights are kept.
    cheap = functools.partial(train_unet.quick_score, held_out_seeds=1, seen=2)
    monkeypatch.setattr(train_unet, "quick_score", cheap)
    monkeypatch.setattr(train_place, "quick_score", cheap)
    monkeypatch.setattr(train_place, "PLACED_CHECKS", 4)
    stages = ["vae", "upscaler", "unet", "place", "lora"]

    def args(name: str) -> list[str]:
        return ["--seed", "0", "--work", str(tmp_path / name / "work"), "--out", str(tmp_path / name / "out"),
                "--steps", "4", "--checkpoint-steps", "2", "--threads", "1"]

    train.main([*args("straight"), *(f"--stage={s}" for s in stages)])

    save = Checkpointer.save

    def save_then_stop(self: Checkpointer, state: dict) -> None:
        save(self, state)
        raise Stopped

    work = tmp_path / "cut" / "work"
    for stage in stages:
        with monkeypatch.context() as patched:
            patched.setattr(Checkpointer, "save", save_then_stop)
            with pytest.raises(Stopped):
                train.main([*args("cut"), "--stage", stage])
        assert torch.load(work / stage / "state.pt", weights_only=False)["step"] == 2
        train.main([*args("cut"), "--stage", stage])
        assert f"{stage}: resumed at step 2" in (work / f"{stage}.log").read_text()
        assert torch.load(work / stage / "state.pt", weights_only=False)["step"] == 4

    for part in ("work/vae/final", "work/unet/final", "work/place/final",
                 f"out/{train_upscaler.ARTEFACT}", f"out/{train_lora.ARTEFACT}"):
        straight, cut = _tensors(tmp_path / "straight" / part), _tensors(tmp_path / "cut" / part)
        assert straight.keys() == cut.keys() and straight, part
        assert all(torch.equal(straight[k], cut[k]) for k in straight), part
