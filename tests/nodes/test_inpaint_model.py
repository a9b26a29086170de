"""Inpainting models (9-channel UNets): InpaintModelConditioning and the sampler equal diffusers'
StableDiffusionInpaintPipeline on a tiny random SD 1.x inpainting model. (9-channel single files in the
family's conventions load through CheckpointLoader too: ``test_models_variants.py``.)"""

from __future__ import annotations

import shutil

import fixture_pack
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from pack_support import PROMPT, text_to_image
from PIL import Image

import tiny_models
from gouache.engine import Engine
from gouache.nodes.loading import load_checkpoint

NEGATIVE = "blurry, dark"
SIDE = 16  # the tiny VAE halves: EmptyLatent's 64 px make 8x8 latents, which the pipeline calls 16 px
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def inpainting_model(tmp_path_factory):
    """A tiny SD 1.x model whose UNet reads 9 channels, as a diffusers folder.

    Its VAE's log-variance is pinned at diffusers' floor (-30), so the pipeline's sampled encoding of the
    masked picture equals the distribution's mean, which gouache encodes, within 1e-6.
    """
    root = tmp_path_factory.mktemp("inpainting")
    folder = tiny_models.build_diffusers_folder("sd1", root / "diffusers", seed=4)
    torch.manual_seed(4)
    unet = UNet2DConditionModel(sample_size=8, norm_num_groups=4, in_channels=9, **tiny_models.UNET_CONFIGS["sd1"])
    tiny_models._jitter(unet, seed=4)
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet")
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    latent = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[latent:] = 0
        vae.quant_conv.bias[latent:] = -30
    vae.save_pretrained(folder / "vae")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory, inpainting_model):
    home = tmp_path_factory.mktemp("inpaint_home")
    shutil.copytree(inpainting_model, home / "models" / "checkpoints" / "tiny-inpaint")
    (home / "input").mkdir()
    pixels = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(SIDE, dtype=np.uint8)[None, :] * 15
    pixels[..., 2] = np.arange(SIDE, dtype=np.uint8)[:, None] * 12
    pixels[2:9, 3:11, 1] = 200
    Image.fromarray(pixels).save(home / "input" / "picture.png")
    mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
    mask[4:12, 6:14] = 255  # whole cells of the tiny VAE, so ComfyUI's and diffusers' downscaling agree
    Image.fromarray(mask).save(home / "input" / "mask.png")
    Image.fromarray(np.zeros((SIDE, SIDE + 2), dtype=np.uint8)).save(home / "input" / "wide-mask.png")
    return home


@pytest.fixture(scope="module")
def engine(home):
    return Engine(home=home, packs={"fixtures": fixture_pack})


def _workflow(mask: str = "mask.png", noise_mask: bool = False, size: int = 64) -> dict:
    workflow = text_to_image("tiny-inpaint", negative=NEGATIVE, size=size)
    nodes = workflow["nodes"]
    link = lambda node, output: {"node": node, "output": output}  # noqa: E731
    nodes["picture"] = {"type": "LoadImage", "inputs": {"image": "picture.png"}}
    nodes["mask"] = {"type": "LoadImageMask", "inputs": {"image": mask, "channel": "red"}}
    nodes["inpaint"] = {"type": "InpaintModelConditioning", "inputs": {
        "positive": link("positive", "conditioning"), "negative": link("negative", "conditioning"),
        "vae": link("checkpoint", "vae"), "pixels": link("picture", "image"), "mask": link("mask", "mask"),
        "noise_mask": noise_mask}}
    nodes["sampler"]["inputs"].update(positive=link("inpaint", "positive"), negative=link("inpaint", "negative"))
    return workflow


def _diffusers(home, folder):
    loaded = load_checkpoint(folder)
    pipe = StableDiffusionInpaintPipeline(**loaded.components(),
                                          scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    picture = np.asarray(Image.open(home / "input" / "picture.png").convert("RGB"), dtype=np.float32) / 255
    mask = np.asarray(Image.open(home / "input" / "mask.png"), dtype=np.float32) / 255
    with torch.no_grad():
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=torch.from_numpy(picture).permute(2, 0, 1)[None],
                    mask_image=torch.from_numpy(mask)[None, None], height=SIDE, width=SIDE, strength=1.0,
                    num_inference_steps=4, guidance_scale=3.0, generator=torch.Generator("cpu").manual_seed(42),
                    output_type="latent").images


def test_an_inpainting_model_equals_the_diffusers_inpaint_pipeline(engine, home, inpainting_model):
    expected = _diffusers(home, inpainting_model)
    result = engine.run(_workflow(), outputs=["sampler", "inpaint"])
    assert result.ok, result.error
    ours = result.outputs["sampler"]["latent"]["samples"]
    assert ours.shape == expected.shape == (1, 4, 8, 8)
    print(f"inpainting model parity: {(ours - expected).abs().max().item():.2e}")
    assert (ours - expected).abs().max().item() <= TOLERANCE
    concat = result.outputs["inpaint"]["positive"].inpaint
    assert concat.shape == (1, 5, 8, 8) and concat[0, 0].sum() == 16 and concat[0, 0, 2:6, 3:7].eq(1).all()


def test_the_latent_is_the_picture_encoded_with_the_mask_as_noise_mask(engine):
    workflow = _workflow(noise_mask=True)
    workflow["nodes"]["encode"] = {"type": "VAEEncode", "inputs": {"image": {"node": "picture", "output": "image"},
                                                                   "vae": {"node": "checkpoint", "output": "vae"}}}
    result = engine.run(workflow, outputs=["inpaint", "encode", "mask", "sampler"])
    assert result.ok, result.error
    latent = result.outputs["inpaint"]["latent"]
    assert torch.equal(latent["samples"], result.outputs["encode"]["latent"]["samples"])
    assert torch.equal(latent["noise_mask"][0, 0], result.outputs["mask"]["mask"][0])
    without = engine.run(_workflow(noise_mask=False), outputs=["inpaint"]).outputs["inpaint"]["latent"]
    assert "noise_mask" not in without


def test_a_mask_of_another_size_than_the_picture_names_the_mask(engine):
    result = engine.run(_workflow(mask="wide-mask.png"), outputs=["inpaint"])
    assert not result.ok
    assert (result.error.node, result.error.input, result.error.code) == ("inpaint", "mask", "size_mismatch")


def test_a_latent_of_another_size_than_the_picture_names_the_latent(engine):
    result = engine.run(_workflow(size=128), outputs=["sampler"])
    assert not result.ok
    assert (result.error.node, result.error.input, result.error.code) == ("sampler", "latent", "size_mismatch")


def test_an_inpainting_model_without_its_conditioning_names_the_model(engine):
    result = engine.run(text_to_image("tiny-inpaint", size=64, steps=1), outputs=["sampler"])
    assert (result.error.node, result.error.input, result.error.code) == (
        "sampler", "model", "needs_inpainting_conditioning")
