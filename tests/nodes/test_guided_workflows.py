"""Guided-generation graphs through the engine on the tiny SD1 fixture: outpainting, inpainting, and one
Seed node driving several samplers."""

from __future__ import annotations

import torch
from pack_support import gouache_home, shared_engine, text_to_image  # noqa: F401

SIZE = 32
"""Side of the picture the graphs start from: example.png scaled down, so the tiny UNet runs fast."""


def link(node: str, output: str) -> dict:
    return {"node": node, "output": output}


def _base(seed: int = 7) -> dict:
    """Checkpoint, prompts, the example picture at SIZE px, and a sampler that reads an encoded latent."""
    return {
        "checkpoint": {"type": "CheckpointLoader", "inputs": {"name": "tiny-sd1"}},
        "positive": {"type": "TextEncode", "inputs": {"clip": link("checkpoint", "clip"), "text": "a red circle"}},
        "negative": {"type": "TextEncode", "inputs": {"clip": link("checkpoint", "clip"), "text": ""}},
        "load": {"type": "LoadImage", "inputs": {"image": "example.png"}},
        "picture": {"type": "ImageScale", "inputs": {"image": link("load", "image"), "method": "area",
                                                     "scale_by": 1.0, "width": SIZE, "height": SIZE}},
        "sampler": {"type": "Sampler", "inputs": {
            "model": link("checkpoint", "model"), "positive": link("positive", "conditioning"),
            "negative": link("negative", "conditioning"), "latent": link("encode", "latent"),
            "seed": seed, "steps": 3, "cfg": 3.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"latent": link("sampler", "latent"), "vae": link("checkpoint", "vae")}},
    }


def _run(engine, nodes: dict, outputs: list[str]):
    result = engine.run({"format": "gouache/1", "nodes": nodes}, outputs=outputs)
    assert result.ok, result.error
    return result


def test_outpaint_pads_encodes_samples_decodes_and_composites(shared_engine):
    nodes = _base()
    nodes.update({
        "pad": {"type": "PadForOutpaint", "inputs": {"image": link("picture", "image"), "left": 16, "top": 0,
                                                     "right": 8, "bottom": 8, "feathering": 4}},
        "encode": {"type": "InpaintEncode", "inputs": {"pixels": link("pad", "image"), "vae": link("checkpoint", "vae"),
                                                       "mask": link("pad", "mask"), "grow_mask_by": 4}},
        "paste": {"type": "CompositeImages", "inputs": {"destination": link("pad", "image"),
                                                        "source": link("decode", "image"), "x": 0, "y": 0,
                                                        "resize_source": False, "mask": link("pad", "mask")}},
    })
    result = _run(shared_engine, nodes, ["paste", "picture", "encode"])
    picture = result.outputs["picture"]["image"]
    out = result.outputs["paste"]["image"]
    assert out.shape == (1, SIZE + 8, SIZE + 24, 3)
    latent = result.outputs["encode"]["latent"]
    assert latent["samples"].shape[-2:] == (20, 28) and latent["noise_mask"].shape == (1, 1, 40, 56)
    inner = out[:, 0:SIZE - 4, 20:SIZE + 12]  # the picture, away from the feathered rows and columns
    assert torch.equal(inner, picture[:, 0:SIZE - 4, 4:SIZE - 4]), "the picture itself is kept as it was"
    border = out[:, SIZE:, :]
    assert (border - 0.5).abs().mean() > 0.01, "the new border is painted, not left grey"


def test_inpaint_repaints_the_mask_and_keeps_the_rest_within_two_levels(shared_engine):
    nodes = _base()
    nodes.update({
        "empty": {"type": "SolidMask", "inputs": {"value": 0.0, "width": SIZE, "height": SIZE}},
        "hole": {"type": "SolidMask", "inputs": {"value": 1.0, "width": 12, "height": 10}},
        "mask": {"type": "CombineMasks", "inputs": {"destination": link("empty", "mask"), "source": link("hole", "mask"),
                                                    "x": 10, "y": 12, "operation": "add"}},
        "encode": {"type": "InpaintEncode", "inputs": {"pixels": link("picture", "image"), "vae": link("checkpoint", "vae"),
                                                       "mask": link("mask", "mask"), "grow_mask_by": 6}},
        "paste": {"type": "CompositeImages", "inputs": {"destination": link("picture", "image"),
                                                        "source": link("decode", "image"), "x": 0, "y": 0,
                                                        "resize_source": False, "mask": link("mask", "mask")}},
    })
    result = _run(shared_engine, nodes, ["paste", "picture", "mask", "encode"])
    picture, out = result.outputs["picture"]["image"], result.outputs["paste"]["image"]
    mask = result.outputs["mask"]["mask"]
    assert mask.sum() == 120
    kept = (mask == 0)[..., None].expand_as(out)
    assert (out - picture).abs()[kept].max() <= 2 / 255
    assert (out - picture).abs()[~kept].mean() > 0.02, "the masked area is repainted"
    noise_mask = result.outputs["encode"]["latent"]["noise_mask"][0, 0]
    assert noise_mask.sum() > mask.sum() and noise_mask[12:22, 10:22].eq(1).all(), "the noise mask is grown"


def test_one_seed_node_drives_several_samplers(shared_engine):
    workflow = text_to_image("tiny-sd1", size=32, steps=2, seed=0)
    nodes = workflow["nodes"]
    nodes["seed"] = {"type": "Seed", "inputs": {"seed": 123}}
    nodes["sampler"]["inputs"]["seed"] = link("seed", "seed")
    nodes["second"] = {"type": "Sampler", "inputs": {**nodes["sampler"]["inputs"], "cfg": 5.0}}
    result = shared_engine.run(workflow, outputs=["sampler", "second"])
    assert result.ok, result.error
    literal = text_to_image("tiny-sd1", size=32, steps=2, seed=123)
    literal["nodes"]["second"] = {"type": "Sampler", "inputs": {**literal["nodes"]["sampler"]["inputs"], "cfg": 5.0}}
    expected = shared_engine.run(literal, outputs=["sampler", "second"])
    for sampler in ("sampler", "second"):
        assert torch.equal(result.outputs[sampler]["latent"]["samples"], expected.outputs[sampler]["latent"]["samples"])
    changed = shared_engine.run(workflow, overrides={"seed.seed": 124}, outputs=["sampler", "second"])
    assert {"sampler", "second", "seed"} <= set(changed.executed), "a new seed reruns every sampler it feeds"


def test_primitives_feed_inputs_of_their_type(shared_engine):
    nodes = {
        "width": {"type": "PrimitiveInt", "inputs": {"value": 24}},
        "value": {"type": "PrimitiveFloat", "inputs": {"value": 0.25}},
        "solid": {"type": "SolidMask", "inputs": {"value": link("value", "value"), "width": link("width", "value"),
                                                  "height": link("width", "value")}},
        "inverted": {"type": "PrimitiveBoolean", "inputs": {"value": True}},
        "grow": {"type": "GrowMask", "inputs": {"mask": link("solid", "mask"), "expand": 1,
                                                "tapered_corners": link("inverted", "value")}},
        "one": {"type": "PrimitiveInt", "inputs": {"value": 1}},
        "as_float": {"type": "ThresholdMask", "inputs": {"mask": link("grow", "mask"), "value": link("one", "value")}},
        "prefix": {"type": "PrimitiveString", "inputs": {"value": "primitives"}},
        "prompt": {"type": "PrimitiveText", "inputs": {"value": "two\nlines"}},
    }
    result = _run(shared_engine, nodes, ["grow", "as_float", "prefix", "prompt"])
    assert result.outputs["grow"]["mask"].shape == (1, 24, 24) and result.outputs["grow"]["mask"].eq(0.25).all()
    assert result.outputs["as_float"]["mask"].eq(0).all(), "an INT feeds a FLOAT input"
    assert result.outputs["prompt"]["value"] == "two\nlines"
    # A linked value is held to the input's own range, as a typed-in one is at validation.
    nodes["as_float"]["inputs"]["value"] = link("width", "value")
    failed = shared_engine.run({"format": "gouache/1", "nodes": nodes}, outputs=["as_float"])
    assert (failed.error.node, failed.error.input, failed.error.code) == ("as_float", "value", "out_of_range")


def test_tiled_decode_and_encode_in_a_workflow_equal_the_whole_image_ones(shared_engine):
    workflow = text_to_image("tiny-sd1", size=128, steps=2, seed=9)  # a 32 px image: 4 tiles of 16
    nodes = workflow["nodes"]
    vae = link("checkpoint", "vae")
    nodes["tiled"] = {"type": "VAEDecodeTiled", "inputs": {"latent": link("sampler", "latent"), "vae": vae,
                                                           "tile_size": 16}}
    nodes["encode"] = {"type": "VAEEncode", "inputs": {"image": link("decode", "image"), "vae": vae}}
    nodes["encode_tiled"] = {"type": "VAEEncodeTiled", "inputs": {"image": link("decode", "image"), "vae": vae,
                                                                  "tile_size": 16}}
    result = shared_engine.run(workflow, outputs=["decode", "tiled", "encode", "encode_tiled"])
    assert result.ok, result.error
    outputs = result.outputs
    assert (outputs["tiled"]["image"] - outputs["decode"]["image"]).abs().max() <= 1 / 255
    assert (outputs["encode_tiled"]["latent"]["samples"] - outputs["encode"]["latent"]["samples"]).abs().max() < 1e-4
