"""The shipped embedded artefacts load with the stock libraries and do what the model card says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gouache.nodes.devices import thread_plan
from safetensors import safe_open
from spandrel import ModelLoader

from gouache_training import checker, evaluate, export, train_lora, train_upscaler
from gouache_training.pipeline import generate

WEIGHTS = evaluate.SHIPPED.parent
FOLDER = WEIGHTS / export.FOLDER
SINGLE = WEIGHTS / export.SINGLE_FILE
LORA = WEIGHTS / train_lora.ARTEFACT
UPSCALER = WEIGHTS / train_upscaler.ARTEFACT
SIZE_LIMIT = 25 * 1000 * 1000

pytestmark = pytest.mark.slow


def _files_size() -> int:
    return sum(f.stat().st_size for f in FOLDER.rglob("*") if f.is_file()) + SINGLE.stat().st_size


def test_folder_and_single_file_fit_the_size_limit_in_fp16() -> None:
    assert _files_size() < SIZE_LIMIT
    with safe_open(str(SINGLE), "pt") as fh:
        keys = list(fh.keys())
        assert {fh.get_slice(k).get_dtype() for k in keys} == {"F16"}
    layout = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.")
    assert {next((p for p in layout if k.startswith(p)), k) for k in keys} == set(layout)


def test_single_file_renders_the_same_image_as_the_folder() -> None:
    torch.set_num_threads(thread_plan().threads or 1)
    a = export.float_images(export.load_folder(FOLDER))
    b = export.float_images(export.load_single_file(SINGLE, FOLDER))
    assert np.abs(a - b).max() <= 1e-4


def test_upscaler_loads_with_spandrel_and_beats_bicubic() -> None:
    descriptor = ModelLoader().load_from_file(str(UPSCALER))
    assert descriptor.scale == 4
    ours, bicubic = train_upscaler.compare_with_bicubic(UPSCALER, n=16)
    assert ours > bicubic


def test_outline_lora_is_kohya_format_and_hollows_shapes() -> None:
    with safe_open(str(LORA), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert {k.rsplit(".", 2)[-2] if k.endswith(".weight") else "alpha" for k in keys} == {"lora_down", "lora_up", "alpha"}
    torch.set_num_threads(thread_plan().threads or 1)
    pipe = evaluate.load_shipped()
    cases = evaluate.seen_cases(6)
    prompts, seeds = [c.prompt for c in cases], [c.seed for c in cases]
    base = generate(pipe, prompts, seeds)
    pipe.load_lora_weights(str(LORA), adapter_name="outline")
    hollow = generate(pipe, prompts, seeds, cross_attention_kwargs={"scale": 1.0})
    off = generate(pipe, prompts, seeds, cross_attention_kwargs={"scale": 0.0})
    assert all(np.array_equal(a, b) for a, b in zip(base, off))
    inside = [checker.hollowness(plain, styled) for plain, styled in zip(base, hollow)]
    assert np.mean(inside) > 0.5, inside  # at strength 1 the inside mostly shows the background
    assert max(checker.hollowness(plain, plain) for plain in base) < 0.1  # the base draws filled shapes


def test_every_shipped_artefact_is_in_the_model_card_and_the_controlnet_fits_its_limit() -> None:
    from gouache_training import train_controlnet

    card = (WEIGHTS.parent / "MODEL_CARD.md").read_text()
    for entry in WEIGHTS.iterdir():
        assert f"`{entry.name}{'/' if entry.is_dir() else ''}`" in card, f"{entry.name} is missing from the model card"
    controlnet = WEIGHTS / train_controlnet.ARTEFACT
    assert sum(f.stat().st_size for f in controlnet.rglob("*") if f.is_file()) < 3 * 1000 * 1000
