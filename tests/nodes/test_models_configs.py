"""The shipped configs describe the real published architectures, and convert.py matches diffusers.

Real-size models are built on the meta device (shapes, no memory), written to the original layout
with ``diffusers_to_original``, and read back with diffusers' own single-file conversion functions:
every tensor must come back under its own name with its own shape, and diffusers' checkpoint sniffing
must name the same family as ours.
"""

from __future__ import annotations

import json

import pytest
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from gouache.nodes.loading import detect_family, diffusers_to_original, shipped_config_dir

DIFFUSERS_NAME = {"sd1": "v1", "sd2": "v2", "sdxl": "xl_base"}
PARAMETERS_MILLIONS = {  # published sizes: UNet, VAE, text encoder(s)
    "sd1": (859.5, 83.7, 123.1),
    "sd2": (865.9, 83.7, 340.4),
    "sdxl": (2567.5, 83.7, 123.1 + 694.7),
}


def _meta_models(family: str) -> tuple:
    folder = shipped_config_dir(family)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        te2 = None
        if family == "sdxl":
            te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    return unet, vae, te, te2


def _shapes(state_dict: dict) -> dict:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def _without_text_model(state_dict: dict) -> dict:
    return {key.removeprefix("text_model."): value for key, value in state_dict.items()}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_real_size_roundtrip_through_diffusers_conversion(family: str) -> None:
    unet, vae, te, te2 = _meta_models(family)
    millions = [sum(p.numel() for p in m.parameters()) / 1e6 for m in (unet, vae)]
    millions.append(sum(p.numel() for m in (te, te2) if m is not None for p in m.parameters()) / 1e6)
    assert millions == pytest.approx(PARAMETERS_MILLIONS[family], abs=0.1)

    original = diffusers_to_original(unet, vae, te, te2, family=family)
    assert detect_family(original).name == family
    assert infer_diffusers_model_type(original) == DIFFUSERS_NAME[family]

    folder = shipped_config_dir(family)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    assert _shapes(convert_ldm_unet_checkpoint(original, unet_config)) == _shapes(unet.state_dict())
    assert _shapes(convert_ldm_vae_checkpoint(original, vae_config)) == _shapes(vae.state_dict())
    if family == "sd2":
        # diffusers keeps 23 of OpenCLIP's 24 blocks, dropping the one appended as a pass-through.
        text = convert_open_clip_checkpoint(te, original, prefix="cond_stage_model.model.")
        assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in original
    else:
        text = convert_ldm_clip_checkpoint(original)
    assert _shapes(_without_text_model(text)) == _shapes(_without_text_model(te.state_dict()))
    if te2 is not None:
        text_2 = convert_open_clip_checkpoint(te2, original, prefix="conditioner.embedders.1.model.")
        assert _shapes(text_2) == _shapes(te2.state_dict())


def test_sdxl_configs_agree_with_each_other() -> None:
    folder = shipped_config_dir("sdxl")
    unet = json.loads((folder / "unet" / "config.json").read_text())
    te = json.loads((folder / "text_encoder" / "config.json").read_text())
    te2 = json.loads((folder / "text_encoder_2" / "config.json").read_text())
    assert unet["cross_attention_dim"] == te["hidden_size"] + te2["hidden_size"]
    # add_embedding reads six size/crop numbers (each as a timestep embedding) and the pooled text.
    expected = 6 * unet["addition_time_embed_dim"] + te2["projection_dim"]
    assert unet["projection_class_embeddings_input_dim"] == expected
