"""ControlNet: gouache's sampler with ControlNetApply equals diffusers' ControlNet pipelines on tiny weights."""

from __future__ import annotations

import functools
import shutil

import fixture_pack
import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
)
from PIL import Image
from safetensors.torch import save_file
from pack_support import PROMPT, text_to_image

from gouache.engine import Engine, WorkflowInvalid
from gouache.nodes.loading import load_checkpoint

NEGATIVE = "blurry, dark"
SIDE = 16  # the tiny VAEs halve: EmptyLatent's 64 px make 8x8 latents, which the pipelines call 16 px
TOLERANCE = 1e-4


def _controlnet(folder, target, seed):
    unet = load_checkpoint(folder).components()["unet"]
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # the zero convolutions start at zero: jitter so the residuals matter
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    net.save_pretrained(target)
    return target


def _original_layout(checkpoint, net_folder, target):
    """The ControlNet in ``net_folder`` written as the original ControlNet files hold it (``control_model.*``)."""
    from diffusers import UNet2DConditionModel

    from gouache.nodes.loading.convert import diffusers_to_original

    parts = load_checkpoint(checkpoint).components()
    net = ControlNetModel.from_pretrained(net_folder)
    unet = UNet2DConditionModel.from_config(parts["unet"].config)
    unet.load_state_dict({**unet.state_dict(), **{k: v for k, v in net.state_dict().items() if k in unet.state_dict()}})
    original = diffusers_to_original(unet, parts["vae"], parts["text_encoder"], family="sd1")
    prefix = "model.diffusion_model."
    tensors = {f"control_model.{k[len(prefix):]}": v for k, v in original.items()
               if k.startswith(prefix) and k[len(prefix):].startswith(("input_blocks", "middle_block", "time_embed"))}
    weights = net.state_dict()
    for i in range(len(net.controlnet_down_blocks)):
        for kind in ("weight", "bias"):
            tensors[f"control_model.zero_convs.{i}.0.{kind}"] = weights[f"controlnet_down_blocks.{i}.{kind}"]
    hint = {"conv_in": 0, "conv_out": 14, **{f"blocks.{j}": 2 * (j + 1) for j in range(len(net.controlnet_cond_embedding.blocks))}}
    for kind in ("weight", "bias"):
        tensors[f"control_model.middle_block_out.0.{kind}"] = weights[f"controlnet_mid_block.{kind}"]
        for name, index in hint.items():
            tensors[f"control_model.input_hint_block.{index}.{kind}"] = weights[f"controlnet_cond_embedding.{name}.{kind}"]
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(target))


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_sd1, tiny_sdxl):
    home = tmp_path_factory.mktemp("controlnet_home")
    for model in (tiny_sd1, tiny_sdxl):
        shutil.copytree(model.folder, home / "models" / "checkpoints" / f"tiny-{model.family}")
        _controlnet(model.folder, home / "models" / "controlnet" / f"cn-{model.family}", seed=5)
    _controlnet(tiny_sd1.folder, home / "models" / "controlnet" / "cn-sd1-b", seed=6)
    folder = home / "models" / "controlnet"
    shutil.copy(folder / "cn-sd1" / "diffusion_pytorch_model.safetensors", folder / "cn-sd1-file.safetensors")
    shutil.copy(folder / "cn-sd1" / "config.json", folder / "cn-sd1-file.json")
    save_file({"control_model.input_hint_block.0.weight": torch.zeros(2, 3, 3, 3)}, str(folder / "original.safetensors"))
    _original_layout(home / "models" / "checkpoints" / "tiny-sd1", folder / "cn-sd1", folder / "cn-sd1-orig.safetensors")
    shutil.copy(folder / "cn-sd1" / "config.json", folder / "cn-sd1-orig.json")
    (home / "input").mkdir()
    pixels = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    pixels[4:12, 2:10] = 255
    pixels[..., 1] = np.arange(SIDE, dtype=np.uint8)[None, :] * 15
    Image.fromarray(pixels).save(home / "input" / "control.png")
    return home


@pytest.fixture(scope="module")
def engine(home):
    return Engine(home=home, packs={"fixtures": fixture_pack})


def _control_tensor(home):
    pixels = np.asarray(Image.open(home / "input" / "control.png").convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def _workflow(family, nets=(("cn-sd1", 1.0, 0.0, 1.0),), steps=4):
    workflow = text_to_image(f"tiny-{family}", negative=NEGATIVE, steps=steps)
    nodes = workflow["nodes"]
    nodes["control_image"] = {"type": "LoadImage", "inputs": {"image": "control.png"}}
    positive, negative = {"node": "positive", "output": "conditioning"}, {"node": "negative", "output": "conditioning"}
    for index, (name, strength, start, end) in enumerate(nets):
        nodes[f"cn{index}"] = {"type": "ControlNetLoader", "inputs": {"name": name}}
        nodes[f"apply{index}"] = {"type": "ControlNetApply", "inputs": {
            "positive": positive, "negative": negative, "control_net": {"node": f"cn{index}", "output": "control_net"},
            "image": {"node": "control_image", "output": "image"},
            "strength": strength, "start_percent": start, "end_percent": end}}
        positive = {"node": f"apply{index}", "output": "positive"}
        negative = {"node": f"apply{index}", "output": "negative"}
    nodes["sampler"]["inputs"].update(positive=positive, negative=negative)
    return workflow


def _ours(engine, workflow):
    result = engine.run(workflow, outputs=["sampler"])
    assert result.ok, result.error
    return result.outputs["sampler"]["latent"]["samples"]


@functools.cache
def _loaded(folder):
    return load_checkpoint(folder)


def _diffusers(home, family, nets, *, scales, start=0.0, end=1.0, steps=4):
    loaded = _loaded(home / "models" / "checkpoints" / f"tiny-{family}")
    controlnets = [ControlNetModel.from_pretrained(home / "models" / "controlnet" / n) for n in nets]
    controlnet = controlnets[0] if len(controlnets) == 1 else controlnets
    parts = dict(**loaded.components(), scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config),
                 controlnet=controlnet)
    if family == "sdxl":
        pipe = StableDiffusionXLControlNetPipeline(**parts)
    else:
        pipe = StableDiffusionControlNetPipeline(**parts, safety_checker=None, feature_extractor=None,
                                                 requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = _control_tensor(home)
    with torch.no_grad():
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=image if len(nets) == 1 else [image] * len(nets),
                    num_inference_steps=steps, guidance_scale=3.0, height=SIDE, width=SIDE,
                    controlnet_conditioning_scale=scales, control_guidance_start=start, control_guidance_end=end,
                    generator=torch.Generator("cpu").manual_seed(42), output_type="latent").images


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_controlnet_equals_the_diffusers_pipeline(engine, home, family):
    expected = _diffusers(home, family, [f"cn-{family}"], scales=0.8)
    ours = _ours(engine, _workflow(family, nets=((f"cn-{family}", 0.8, 0.0, 1.0),)))
    assert ours.shape == expected.shape
    print(f"controlnet parity {family}: {(ours - expected).abs().max().item():.2e}")
    assert (ours - expected).abs().max().item() <= TOLERANCE
    plain = _ours(engine, text_to_image(f"tiny-{family}", negative=NEGATIVE))
    assert (ours - plain).abs().max().item() > 1e-3, "the ControlNet changed nothing"


def test_stacked_controlnets_equal_diffusers_multi_controlnet(engine, home):
    expected = _diffusers(home, "sd1", ["cn-sd1", "cn-sd1-b"], scales=[0.7, 1.2])
    ours = _ours(engine, _workflow("sd1", nets=(("cn-sd1", 0.7, 0.0, 1.0), ("cn-sd1-b", 1.2, 0.0, 1.0))))
    assert (ours - expected).abs().max().item() <= TOLERANCE


def test_start_and_end_percent_equal_control_guidance_start_and_end(engine, home):
    expected = _diffusers(home, "sd1", ["cn-sd1"], scales=1.0, start=0.25, end=0.75)
    ours = _ours(engine, _workflow("sd1", nets=(("cn-sd1", 1.0, 0.25, 0.75),)))
    assert (ours - expected).abs().max().item() <= TOLERANCE
    full = _ours(engine, _workflow("sd1"))
    assert (ours - full).abs().max().item() > 1e-4


def test_strength_zero_equals_no_controlnet(engine):
    ours = _ours(engine, _workflow("sd1", nets=(("cn-sd1", 0.0, 0.0, 1.0),)))
    plain = _ours(engine, text_to_image("tiny-sd1", negative=NEGATIVE))
    assert (ours - plain).abs().max().item() <= 1e-6


def test_a_controlnet_of_another_family_is_refused_naming_the_input(engine):
    result = engine.run(_workflow("sdxl", nets=(("cn-sd1", 1.0, 0.0, 1.0),)), outputs=["sampler"])
    assert not result.ok
    assert "control_net" in str(result.error) and "family" in str(result.error)


def test_start_after_end_is_a_validation_problem(engine):
    with pytest.raises(WorkflowInvalid, match="start_percent"):
        engine.run(_workflow("sd1", nets=(("cn-sd1", 1.0, 0.8, 0.2),)), outputs=["sampler"])


def test_a_diffusers_layout_file_with_its_config_beside_it_equals_the_folder(engine):
    folder = _ours(engine, _workflow("sd1"))
    single = _ours(engine, _workflow("sd1", nets=(("cn-sd1-file.safetensors", 1.0, 0.0, 1.0),)))
    assert torch.equal(folder, single)


def test_an_original_layout_file_with_its_config_beside_it_equals_the_folder(engine):
    folder = _ours(engine, _workflow("sd1"))
    single = _ours(engine, _workflow("sd1", nets=(("cn-sd1-orig.safetensors", 1.0, 0.0, 1.0),)))
    assert (folder - single).abs().max().item() <= 1e-6


def test_an_original_layout_file_is_refused_naming_the_input(engine):
    result = engine.run(_workflow("sd1", nets=(("original.safetensors", 1.0, 0.0, 1.0),)), outputs=["sampler"])
    assert not result.ok
    assert "name" in str(result.error) and "config" in str(result.error)


def test_gouache_models_describes_controlnets(home):
    from gouache.nodes.folders import describe_controlnet

    folder = home / "models" / "controlnet"
    assert describe_controlnet(folder / "cn-sdxl") == {"format": "diffusers", "kind": "controlnet",
                                                       "cross_attention_dim": 24, "family": None}
    assert describe_controlnet(folder / "cn-sd1-file.safetensors")["cross_attention_dim"] == 8
    assert describe_controlnet(folder / "original.safetensors")["layout"] == "original"
