"""LoRAs: strength 0 is the base model, strength matters, the cached base is never changed."""

from __future__ import annotations

import pytest
import torch
from pack_support import engine, gouache_home, shared_engine, text_to_image  # noqa: F401

from gouache.nodes.model_manager import RESOURCE_KEY


def _with_loras(loras, steps=2, **settings):
    workflow = text_to_image(steps=steps, **settings)
    nodes = workflow["nodes"]
    model, clip = {"node": "checkpoint", "output": "model"}, {"node": "checkpoint", "output": "clip"}
    for index, (name, strength_model, strength_clip) in enumerate(loras):
        node_id = f"lora{index}"
        nodes[node_id] = {"type": "LoraLoader", "inputs": {"model": model, "clip": clip, "name": name,
                                                            "strength_model": strength_model,
                                                            "strength_clip": strength_clip}}
        model, clip = {"node": node_id, "output": "model"}, {"node": node_id, "output": "clip"}
    nodes["sampler"]["inputs"]["model"] = model
    nodes["positive"]["inputs"]["clip"] = clip
    nodes["negative"]["inputs"]["clip"] = clip
    return workflow


def _latents(engine, workflow):
    result = engine.run(workflow, outputs=["sampler"])
    assert result.ok, result.error
    return result.outputs["sampler"]["latent"]["samples"]


@pytest.mark.parametrize("name", ["tiny-kohya.safetensors", "tiny-diffusers.safetensors"])
def test_lora_strength_zero_is_the_base_and_the_base_is_untouched(engine, name):
    base = _latents(engine, text_to_image(steps=2))
    manager = engine.resources.get(RESOURCE_KEY, lambda: None)
    loaded = manager.checkpoints()[0].loaded
    parts = loaded.components()
    before = {k: v.clone() for k, v in {**parts["unet"].state_dict(), **parts["text_encoder"].state_dict()}.items()}

    assert torch.equal(_latents(engine, _with_loras([(name, 0.0, 0.0)])), base)
    patched = _latents(engine, _with_loras([(name, 1.0, 1.0)]))
    assert (patched - base).abs().max().item() > 1e-3
    half = _latents(engine, _with_loras([(name, 0.5, 0.5)]))
    assert not torch.equal(half, patched)
    only_clip = _latents(engine, _with_loras([(name, 0.0, 1.0)]))
    assert not torch.equal(only_clip, base)

    engine.cache.clear()
    assert torch.equal(_latents(engine, text_to_image(steps=2)), base)
    after = {**parts["unet"].state_dict(), **parts["text_encoder"].state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_stacked_loras_add_up(shared_engine):
    once = _latents(shared_engine, _with_loras([("tiny-kohya.safetensors", 1.0, 0.0)]))
    twice_half = _latents(shared_engine, _with_loras([("tiny-kohya.safetensors", 0.5, 0.0),
                                                      ("tiny-kohya.safetensors", 0.5, 0.0)]))
    assert (once - twice_half).abs().max().item() < 1e-4
    both = _latents(shared_engine, _with_loras([("tiny-kohya.safetensors", 1.0, 0.0),
                                                ("tiny-diffusers.safetensors", 1.0, 0.0)]))
    assert not torch.allclose(both, once)


def test_unet_lora_matches_diffusers_load_lora_weights(shared_engine, gouache_home, tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from pack_support import PROMPT, build_lora

    from gouache.nodes.models import load_checkpoint

    folder = gouache_home / "models/checkpoints/tiny-sd1"
    lora = build_lora(folder, gouache_home / "models/loras/unet-only.safetensors", "kohya", seed=21,
                      text_encoder=False)
    ours = _latents(shared_engine, _with_loras([(lora.name, 0.8, 0.8)], steps=4))
    loaded = load_checkpoint(folder)
    pipe = StableDiffusionPipeline(**loaded.components(),
                                   scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora), adapter_name="style")
    pipe.set_adapters(["style"], [0.8])
    with torch.no_grad():
        expected = pipe(prompt=PROMPT, negative_prompt="", num_inference_steps=4, guidance_scale=3.0,
                        height=16, width=16, generator=torch.Generator("cpu").manual_seed(42),
                        output_type="latent").images
    assert (ours - expected).abs().max().item() <= 1e-4


def test_lora_for_another_family_fails_naming_the_node(shared_engine):
    workflow = _with_loras([("tiny-sdxl-kohya.safetensors", 1.0, 1.0)])
    result = shared_engine.run(workflow, outputs=["sampler"])
    assert result.status == "failed"
    assert (result.error.node, result.error.input, result.error.code) == ("lora0", "name", "wrong_lora")
    assert "another model family" in result.error.message


def test_kohya_ldm_unet_names_equal_diffusers_names(shared_engine, gouache_home):
    """kohya's SDXL scripts name UNet layers the original (LDM) way: input_blocks_1_1 = down_blocks_0_attentions_0."""
    from safetensors.torch import load_file, save_file

    loras = gouache_home / "models/loras"
    tensors = {k: v for k, v in load_file(str(loras / "tiny-kohya.safetensors")).items()
               if k.startswith("lora_unet_down_blocks_0_attentions_0_")}
    save_file(tensors, str(loras / "first-block-diffusers.safetensors"))
    renamed = {k.replace("lora_unet_down_blocks_0_attentions_0_", "lora_unet_input_blocks_1_1_"): v
               for k, v in tensors.items()}
    save_file(renamed, str(loras / "first-block-ldm.safetensors"))
    base = _latents(shared_engine, text_to_image(steps=2))
    diffusers_named = _latents(shared_engine, _with_loras([("first-block-diffusers.safetensors", 1.0, 0.0)]))
    ldm_named = _latents(shared_engine, _with_loras([("first-block-ldm.safetensors", 1.0, 0.0)]))
    assert not torch.equal(diffusers_named, base)
    assert torch.equal(ldm_named, diffusers_named)


def test_sdxl_kohya_lora_patches_both_text_encoders(shared_engine):
    base = _latents(shared_engine, text_to_image("tiny-sdxl", steps=2))
    workflow = _with_loras([("tiny-sdxl-kohya.safetensors", 0.0, 1.0)], checkpoint="tiny-sdxl")
    result = shared_engine.run(workflow, outputs=["sampler", "positive"])
    assert result.ok, result.error
    assert not torch.equal(result.outputs["sampler"]["latent"]["samples"], base)
    plain = shared_engine.run(text_to_image("tiny-sdxl"), outputs=["positive"]).outputs["positive"]["conditioning"]
    patched = result.outputs["positive"]["conditioning"]
    width_1 = 8  # the tiny SDXL's first encoder; the rest of the width is encoder 2
    assert not torch.equal(patched.embeds[..., :width_1], plain.embeds[..., :width_1])
    assert not torch.equal(patched.embeds[..., width_1:], plain.embeds[..., width_1:])
    assert not torch.equal(patched.pooled, plain.pooled)
