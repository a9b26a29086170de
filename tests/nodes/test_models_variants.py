"""Checkpoint variants: sizes read from the weights, 9-channel inpainting UNets, the prediction override,
and separate VAEs decoding like the checkpoint's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from pack_support import gouache_home, shared_engine, text_to_image  # noqa: F401
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import tiny_models
from gouache.engine import Engine
from gouache.nodes.loading import load_checkpoint

TOLERANCE = 1e-5
# Custom sizes that keep each family's conventions (32 normalisation groups; SD 1.x 8 heads, SDXL and
# CLIP 64 channels per head), which are all a file cannot show.
VAE = {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2,
       "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4, "sample_size": 32}
UNETS = {
    "sd1": {"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1, "attention_head_dim": 8,
            "cross_attention_dim": 64},
    "sdxl": {"block_out_channels": [64, 128], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
             "transformer_layers_per_block": [1, 2], "attention_head_dim": [1, 2], "cross_attention_dim": 64 + 128,
             "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
             "projection_class_embeddings_input_dim": 6 * 8 + 64},
}


def _clip(hidden: int, cls=CLIPTextModel, projection: int | None = None, act: str = "quick_gelu"):
    return cls(CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                              num_attention_heads=hidden // 64, max_position_embeddings=77, hidden_act=act,
                              projection_dim=projection or hidden, bos_token_id=0, eos_token_id=2, pad_token_id=1))


def _custom_model(root: Path, family: str, in_channels: int) -> tuple[Path, Path]:
    """A custom-sized model as a diffusers folder and as an original-layout single file."""
    folder = root / "diffusers"
    torch.manual_seed(7)
    UNet2DConditionModel(sample_size=8, in_channels=in_channels, **UNETS[family]).save_pretrained(folder / "unet")
    AutoencoderKL(**VAE).save_pretrained(folder / "vae")
    _clip(64).save_pretrained(folder / "text_encoder")
    names = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json"]
    if family == "sdxl":
        _clip(128, CLIPTextModelWithProjection, 64, "gelu").save_pretrained(folder / "text_encoder_2")
        names.append("tokenizer_2/tokenizer_config.json")
    tiny_models._copy_shipped(family, folder, names)
    return folder, tiny_models.write_single_file(folder, root / f"custom-{family}-{in_channels}.safetensors")


@pytest.fixture(scope="module")
def custom(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("custom")
    return {f"{family}-{channels}": _custom_model(root / f"{family}-{channels}", family, channels)
            for family, channels in (("sd1", 4), ("sd1", 9), ("sdxl", 9))}


def _same_weights(a, b) -> None:
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        x, y = a.components().get(part), b.components().get(part)
        assert (x is None) == (y is None), part
        if x is not None:
            sx, sy = x.state_dict(), y.state_dict()
            assert sx.keys() == sy.keys(), part
            assert all(torch.equal(sx[k], sy[k]) for k in sx), part
    # Same weights, and the same architecture: the UNet and the VAE compute the same.
    generator = torch.Generator().manual_seed(0)
    unet = a.denoiser
    sample = torch.randn(1, unet.config.in_channels, 8, 8, generator=generator)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    added = None
    if unet.config.addition_embed_type == "text_time":
        added = {"text_embeds": torch.randn(1, 64, generator=generator), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(unet(sample, 500, context, added_cond_kwargs=added).sample,
                                   b.denoiser(sample, 500, context, added_cond_kwargs=added).sample, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(a.vae.decode(latents).sample, b.vae.decode(latents).sample, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("variant", ["sd1-4", "sd1-9", "sdxl-9"])
def test_custom_sizes_and_inpainting_unets_load_from_the_weights_alone(custom, variant, no_network):
    folder, single = custom[variant]
    from_file, from_folder = load_checkpoint(single), load_checkpoint(folder)
    _same_weights(from_file, from_folder)
    assert from_file.denoiser.config.in_channels == int(variant.split("-")[1])
    for name in ("text_encoder", "text_encoder_2"):
        encoder = from_file.components().get(name)
        if encoder is not None:
            ids = torch.tensor([[49406, 320, 1125, 49407] + [49407] * 73])
            with torch.no_grad():
                expected = from_folder.components()[name](ids, output_hidden_states=True).hidden_states[-2]
                assert torch.equal(encoder(ids, output_hidden_states=True).hidden_states[-2], expected)


def test_gouache_models_calls_a_9_channel_unet_inpainting(custom):
    from gouache.nodes.folders import describe_checkpoint

    assert describe_checkpoint(custom["sd1-9"][1])["kind"] == "inpainting"
    assert describe_checkpoint(custom["sdxl-9"][1]) == {"format": "safetensors", "family": "sdxl", "kind": "inpainting"}
    assert describe_checkpoint(custom["sd1-9"][0])["kind"] == "inpainting"


def test_sampling_an_inpainting_model_without_its_conditioning_is_an_input_error(custom, tmp_path):
    home = tmp_path / "home"
    (home / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(custom["sd1-9"][1], home / "models" / "checkpoints" / "inpaint.safetensors")
    engine = Engine(home=home)
    result = engine.run(text_to_image("inpaint.safetensors", size=32, steps=1), outputs=["sampler"])
    assert not result.ok
    assert (result.error.node, result.error.input, result.error.code) == (
        "sampler", "model", "needs_inpainting_conditioning")
    assert "9 latent channels" in result.error.message


def test_an_inpainting_single_file_samples_through_checkpoint_loader_with_its_conditioning(custom, tmp_path):
    home = tmp_path / "home"
    (home / "models" / "checkpoints").mkdir(parents=True)
    (home / "input").mkdir()
    shutil.copy(custom["sd1-9"][1], home / "models" / "checkpoints" / "inpaint.safetensors")
    workflow = text_to_image("inpaint.safetensors", size=64, steps=2)
    nodes = workflow["nodes"]
    link = lambda node, output: {"node": node, "output": output}  # noqa: E731
    nodes["picture"] = {"type": "LoadImage", "inputs": {"image": "example.png"}}
    nodes["small"] = {"type": "ImageScale", "inputs": {"image": link("picture", "image"), "method": "area",
                                                       "scale_by": 1.0, "width": 64, "height": 64}}
    nodes["mask"] = {"type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    nodes["inpaint"] = {"type": "InpaintModelConditioning", "inputs": {
        "positive": link("positive", "conditioning"), "negative": link("negative", "conditioning"),
        "vae": link("checkpoint", "vae"), "pixels": link("small", "image"), "mask": link("mask", "mask"),
        "noise_mask": True}}
    nodes["sampler"]["inputs"].update(positive=link("inpaint", "positive"), negative=link("inpaint", "negative"),
                                      latent=link("inpaint", "latent"))
    result = Engine(home=home).run(workflow, outputs=["sampler"])
    assert result.ok, result.error
    assert result.outputs["sampler"]["latent"]["samples"].shape == (1, 4, 32, 32)  # its VAE halves


def test_the_prediction_override_loads_the_model_again_under_its_own_key(shared_engine):
    workflow = text_to_image("tiny-sd2", steps=2)
    runs = {}
    for prediction in ("auto", "epsilon", "v_prediction"):
        workflow["nodes"]["checkpoint"]["inputs"]["prediction_type"] = prediction
        result = shared_engine.run(workflow, outputs=["checkpoint", "sampler"])
        assert result.ok, result.error
        model = result.outputs["checkpoint"]["model"]
        runs[prediction] = (model.checkpoint.key, model.checkpoint.loaded.scheduler_config["prediction_type"],
                            result.outputs["sampler"]["latent"]["samples"])
    assert runs["auto"][1] == runs["v_prediction"][1] == "v_prediction" and runs["epsilon"][1] == "epsilon"
    assert len({key for key, _, _ in runs.values()}) == 3
    assert torch.equal(runs["auto"][2], runs["v_prediction"][2])
    assert not torch.allclose(runs["auto"][2], runs["epsilon"][2])


# -- separate VAEs ---------------------------------------------------------------------------------


def _vae_workflow(checkpoint: str, vae: str | None, family: str = "sd1") -> dict:
    workflow = text_to_image(checkpoint, size=32, steps=2, prompt="a vae check")
    if vae is not None:
        workflow["nodes"]["vae"] = {"type": "VAELoader", "inputs": {"name": vae, "family": family}}
        workflow["nodes"]["decode"]["inputs"]["vae"] = {"node": "vae", "output": "vae"}
    return workflow


@pytest.fixture(scope="module")
def vae_home(tmp_path_factory, custom) -> Path:
    """A home with the custom SD 1.x model, and its own VAE as a single file and as a diffusers vae folder."""
    from gouache.nodes.loading import read_state_dict

    folder, single = custom["sd1-4"]
    home = tmp_path_factory.mktemp("vae_home")
    shutil.copytree(folder, home / "models" / "checkpoints" / "custom-sd1")
    vaes = home / "models" / "vae"
    vaes.mkdir(parents=True)
    original = {k: v for k, v in read_state_dict(single).items() if k.startswith("first_stage_model.")}
    save_file(original, str(vaes / "custom-sd1-vae.safetensors"))
    shutil.copytree(folder / "vae", vaes / "custom-sd1-vae-folder")
    return home


@pytest.mark.parametrize("vae", ["custom-sd1-vae.safetensors", "custom-sd1-vae-folder"])
def test_a_separate_vae_with_the_same_weights_decodes_like_the_checkpoints_own(vae_home, vae):
    engine = Engine(home=vae_home)
    own = engine.run(_vae_workflow("custom-sd1", None), outputs=["decode"])
    separate = engine.run(_vae_workflow("custom-sd1", vae), outputs=["decode"])
    assert own.ok and separate.ok, (own.error, separate.error)
    torch.testing.assert_close(separate.outputs["decode"]["image"], own.outputs["decode"]["image"],
                               atol=TOLERANCE, rtol=0)
    listed = {entry["name"]: entry for entry in engine.models.as_json()["vae"]}
    assert listed[vae]["kind"] == "vae" and listed[vae]["latent_channels"] == 4


def test_a_vae_of_another_family_is_refused_naming_it(vae_home):
    result = Engine(home=vae_home).run(_vae_workflow("custom-sd1", "custom-sd1-vae.safetensors", "flux"),
                                       outputs=["decode"])
    assert not result.ok and (result.error.node, result.error.input) == ("vae", "name")
    assert "4 latent channels" in result.error.message and "Flux.1" in result.error.message
