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

    from gouache.nodes.loading import load_checkpoint

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


def _diffusers_with_lora(folder, lora, weights, steps=4):
    """diffusers' own pipeline on a fresh copy of ``folder`` with ``load_lora_weights(lora)`` at ``weights``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from pack_support import PROMPT

    from gouache.nodes.loading import load_checkpoint

    loaded = load_checkpoint(folder)
    parts = dict(**loaded.components(), scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config))
    if loaded.family.name == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[weights])
    with torch.no_grad():
        return pipe(prompt=PROMPT, negative_prompt="", num_inference_steps=steps, guidance_scale=3.0,
                    height=16, width=16, generator=torch.Generator("cpu").manual_seed(42),
                    output_type="latent").images


@pytest.mark.parametrize(("family", "layout"), [("sd1", "kohya"), ("sd1", "peft"), ("sdxl", "kohya"), ("sdxl", "peft")])
def test_unet_and_text_encoder_loras_match_diffusers_load_lora_weights(shared_engine, gouache_home, family, layout):
    """UNet and every text encoder, with the model and CLIP strengths apart (0.8 and 0.6)."""
    from lora_files import write_lora

    folder = gouache_home / "models/checkpoints" / f"tiny-{family}"
    lora = write_lora(folder, gouache_home / f"models/loras/parity-{family}-{layout}.safetensors", layout=layout,
                      seed=31)
    ours = _latents(shared_engine, _with_loras([(lora.name, 0.8, 0.6)], steps=4, checkpoint=f"tiny-{family}"))
    weights = {"unet": 0.8, "text_encoder": 0.6} | ({"text_encoder_2": 0.6} if family == "sdxl" else {})
    expected = _diffusers_with_lora(folder, lora, weights)
    base = _latents(shared_engine, text_to_image(f"tiny-{family}", steps=4))
    clip_only = _latents(shared_engine, _with_loras([(lora.name, 0.0, 0.6)], steps=4, checkpoint=f"tiny-{family}"))
    assert (ours - base).abs().max().item() > 1e-3
    assert (clip_only - base).abs().max().item() > 1e-3, "the text-encoder layers changed nothing"
    assert (ours - expected).abs().max().item() <= 1e-4


FORMATS = {
    "comfyui": {"layout": "comfyui"},
    "locon": {"convs": True, "parts": ("unet",)},
    "loha": {"kind": "loha"},
    "lokr": {"kind": "lokr"},
    "dora": {"dora": True},
    "dora-peft": {"dora": True, "layout": "peft"},
    "diff": {"kind": "diff", "scale": 0.02},
    "loha-and-lora": {"kind": "lora", "kinds_by_module": {"to_q": "loha", "q_proj": "loha"}},
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_changes_the_image_at_strength_1_and_not_at_0(shared_engine, gouache_home, fmt):
    from lora_files import write_lora

    folder = gouache_home / "models/checkpoints/tiny-sd1"
    lora = write_lora(folder, gouache_home / f"models/loras/format-{fmt}.safetensors", seed=41, **FORMATS[fmt])
    base = _latents(shared_engine, text_to_image(steps=2))
    assert torch.equal(_latents(shared_engine, _with_loras([(lora.name, 0.0, 0.0)])), base)
    assert (_latents(shared_engine, _with_loras([(lora.name, 1.0, 0.0)])) - base).abs().max().item() > 1e-3
    if "text_encoder" in FORMATS[fmt].get("parts", ("text_encoder",)):
        assert (_latents(shared_engine, _with_loras([(lora.name, 0.0, 1.0)])) - base).abs().max().item() > 1e-3


def test_a_mixed_file_applies_its_loha_layers_too(shared_engine, gouache_home):
    """Mixing LoHa and LoRA layers used to render as if the LoHa layers were absent."""
    from lora_files import write_lora

    folder = gouache_home / "models/checkpoints/tiny-sd1"
    mixed = write_lora(folder, gouache_home / "models/loras/mixed.safetensors", seed=43, parts=("unet",),
                       kinds_by_module={"to_q": "loha"})
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(mixed))
    loha_layers = {key.rsplit(".", 1)[0] for key in tensors if ".hada_" in key}
    save_file({key: value for key, value in tensors.items() if key.rsplit(".", 1)[0] not in loha_layers},
              str(mixed.with_name("mixed-lora-only.safetensors")))
    both = _latents(shared_engine, _with_loras([(mixed.name, 1.0, 0.0)]))
    lora_only = _latents(shared_engine, _with_loras([("mixed-lora-only.safetensors", 1.0, 0.0)]))
    assert (both - lora_only).abs().max().item() > 1e-3


def test_comfyui_keys_equal_kohya_keys_on_sdxl(shared_engine, gouache_home):
    """ComfyUI names the UNet the LDM way and the CLIPs clip_l / clip_g: the same factors give the same image."""
    from lora_files import write_lora

    folder = gouache_home / "models/checkpoints/tiny-sdxl"
    loras = gouache_home / "models/loras"
    kohya = write_lora(folder, loras / "xl-kohya.safetensors", layout="kohya", seed=47)
    comfy = write_lora(folder, loras / "xl-comfyui.safetensors", layout="comfyui", seed=47)
    settings = {"checkpoint": "tiny-sdxl"}
    base = _latents(shared_engine, text_to_image("tiny-sdxl", steps=2))
    for strengths in ((1.0, 0.0), (0.0, 1.0)):
        ours_kohya = _latents(shared_engine, _with_loras([(kohya.name, *strengths)], **settings))
        ours_comfy = _latents(shared_engine, _with_loras([(comfy.name, *strengths)], **settings))
        assert not torch.equal(ours_kohya, base)
        assert torch.equal(ours_comfy, ours_kohya)


def _model_only(name, strength, steps=2, **settings):
    workflow = text_to_image(steps=steps, **settings)
    workflow["nodes"]["lora"] = {"type": "LoraModelLoader", "inputs": {
        "model": {"node": "checkpoint", "output": "model"}, "name": name, "strength": strength}}
    workflow["nodes"]["sampler"]["inputs"]["model"] = {"node": "lora", "output": "model"}
    return workflow


def test_lora_model_loader_patches_the_model_alone(shared_engine, gouache_home):
    from lora_files import write_lora

    assert torch.equal(_latents(shared_engine, _model_only("tiny-kohya.safetensors", 0.7)),
                       _latents(shared_engine, _with_loras([("tiny-kohya.safetensors", 0.7, 0.0)])))
    assert torch.equal(_latents(shared_engine, _model_only("tiny-kohya.safetensors", 0.0)),
                       _latents(shared_engine, text_to_image(steps=2)))
    clip_only = write_lora(gouache_home / "models/checkpoints/tiny-sd1", gouache_home / "models/loras/te.safetensors",
                           seed=53, parts=("text_encoder",))
    result = shared_engine.run(_model_only(clip_only.name, 1.0), outputs=["sampler"])
    assert (result.error.node, result.error.input, result.error.code) == ("lora", "name", "wrong_lora")
    assert "patches only text_encoder; use LoraLoader" in result.error.message


def test_a_file_with_a_tensor_gouache_cannot_place_fails_naming_it(shared_engine, gouache_home):
    from safetensors.torch import load_file, save_file

    loras = gouache_home / "models/loras"
    tensors = load_file(str(loras / "tiny-kohya.safetensors"))
    tensors["lora_unet_down_blocks_0_attentions_0_proj_in.oft_blocks"] = torch.zeros(1, 2, 2)
    save_file(tensors, str(loras / "with-oft.safetensors"))
    result = shared_engine.run(_with_loras([("with-oft.safetensors", 0.0, 0.0)]), outputs=["sampler"])
    assert (result.error.node, result.error.input, result.error.code) == ("lora0", "name", "wrong_lora")
    assert "lora_unet_down_blocks_0_attentions_0_proj_in.oft_blocks" in result.error.message


def test_peft_dora_on_the_unet_matches_diffusers_at_strength_1(shared_engine, gouache_home):
    """peft's DoRA (``lora_magnitude_vector``): diffusers reads it for the UNet (its text-encoder path drops
    bare magnitude keys, so only the UNet is compared); off strength 1 peft and LyCORIS differ by design."""
    from lora_files import write_lora

    folder = gouache_home / "models/checkpoints/tiny-sd1"
    lora = write_lora(folder, gouache_home / "models/loras/dora-unet.safetensors", layout="peft", seed=59, dora=True,
                      parts=("unet",))
    ours = _latents(shared_engine, _with_loras([(lora.name, 1.0, 1.0)], steps=4))
    assert (ours - _latents(shared_engine, text_to_image(steps=4))).abs().max().item() > 1e-3
    assert (ours - _diffusers_with_lora(folder, lora, {"unet": 1.0, "text_encoder": 1.0})).abs().max().item() <= 1e-4
