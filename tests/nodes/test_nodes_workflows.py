"""Shipped workflows validate and run; caching, determinism, progress, previews and interruption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pack_support import (  # noqa: F401
    WORKFLOWS,
    engine,
    gouache_home,
    shared_engine,
    text_to_image,
)

from gouache.nodes.model_manager import RESOURCE_KEY

SHIPPED = sorted(path.name for path in WORKFLOWS.glob("*.json"))


def test_the_expected_workflows_ship():
    assert SHIPPED == ["controlnet.json", "hires-fix.json", "image-to-image.json", "inpaint.json", "outpaint.json",
                       "style-lora.json", "text-to-image.json", "upscale-with-model.json"]
    ids = set(json.loads((WORKFLOWS / "text-to-image.json").read_text())["nodes"])
    assert ids == {"checkpoint", "positive", "negative", "latent", "sampler", "decode", "save"}


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_workflow_validates_and_runs(shared_engine, name):
    workflow = json.loads((WORKFLOWS / name).read_text())
    assert workflow["meta"]["title"] and workflow["meta"]["description"]
    assert set(workflow["layout"]) == set(workflow["nodes"])
    result = shared_engine.run(WORKFLOWS / name)
    assert result.ok, result.error
    [saved] = result.images["save"]
    assert saved["kind"] == "output" and saved["path"].endswith(".png")


def test_only_the_sampler_and_after_rerun_when_the_seed_changes(engine):
    first = engine.run(text_to_image(seed=1))
    assert first.ok, first.error
    manager = engine.resources.get(RESOURCE_KEY, lambda: None)
    loads = manager.loads
    second = engine.run(text_to_image(seed=2))
    assert second.ok
    assert second.executed == ["sampler", "decode", "save"]
    assert set(second.cached) == {"checkpoint", "positive", "negative", "latent"}
    assert manager.loads == loads


def test_same_seed_same_image_other_seed_other_image(engine):
    def image(seed):
        result = engine.run(text_to_image(seed=seed), outputs=["decode"])
        assert result.ok
        return result.outputs["decode"]["image"]

    first = image(5)
    engine.cache.clear()
    assert torch.equal(image(5), first)
    assert not torch.allclose(image(6), first)


def test_loading_the_same_file_again_costs_nothing(gouache_home):
    from gouache.engine import Engine

    engine = Engine(home=gouache_home)
    workflow = {"format": "gouache/1", "nodes": {"checkpoint": {"type": "CheckpointLoader",
                                                                "inputs": {"name": "tiny-sd1"}}}}
    first = engine.run(workflow, outputs=["checkpoint"]).outputs["checkpoint"]["model"]
    engine.cache.clear()
    second = engine.run(workflow, outputs=["checkpoint"]).outputs["checkpoint"]["model"]
    assert second.checkpoint is first.checkpoint
    assert engine.resources.get(RESOURCE_KEY, lambda: None).loads == 1


def test_progress_every_step_and_previews(engine):
    events = []
    engine.subscribe(events.append)
    result = engine.run(text_to_image(steps=6), outputs=["sampler"])
    assert result.ok
    progress = [(e.data["value"], e.data["max"]) for e in events if e.type == "progress" and e.data["node"] == "sampler"]
    assert progress == [(i, 6) for i in range(1, 7)]
    previews = [e.data["jpeg"] for e in events if e.type == "preview"]
    assert previews and all(jpeg[:2] == b"\xff\xd8" for jpeg in previews)


def test_interrupt_stops_the_sampler_between_steps(engine):
    def stop_at_step_two(event):
        if event.type == "progress" and event.data["value"] == 2:
            engine.interrupt()

    engine.subscribe(stop_at_step_two)
    result = engine.run(text_to_image(steps=10), outputs=["sampler"])
    assert result.status == "interrupted"
    assert "sampler" not in result.outputs


def test_sampler_does_not_mutate_its_inputs(shared_engine):
    workflow = text_to_image(seed=4)
    result = shared_engine.run(workflow, outputs=["sampler"])
    assert result.ok
    latent = result.outputs["latent"]["latent"]
    assert torch.count_nonzero(latent["samples"]) == 0 and set(latent) == {"samples"}


def test_a_schedule_the_sampler_cannot_follow_is_refused_before_anything_runs(shared_engine):
    valid, problems = shared_engine.check(text_to_image(sampler="ddim", scheduler="karras"))
    assert valid is None
    assert [(p.node, p.input, p.code) for p in problems] == [("sampler", "scheduler", "unsupported_combination")]
    assert "sampler 'ddim' cannot follow the 'karras' schedule; it takes: normal, sgm_uniform" in problems[0].message


def test_the_schedule_table_validation_reads_matches_diffusers():
    from gouache.nodes.schedulers import SAMPLERS, schedules_from_diffusers, supported_schedules

    for sampler in SAMPLERS:
        assert supported_schedules(sampler) == schedules_from_diffusers(sampler), sampler


def test_a_size_that_is_not_a_multiple_of_8_is_refused_before_anything_runs(shared_engine):
    workflow = text_to_image()
    workflow["nodes"]["latent"]["inputs"]["width"] = 130
    valid, problems = shared_engine.check(workflow)
    assert valid is None
    assert [(p.node, p.input, p.code) for p in problems] == [("latent", "width", "not_a_multiple")]


def test_noise_mask_keeps_the_unmasked_latent(shared_engine, gouache_home):
    from PIL import Image

    Image.new("RGBA", (64, 64), (0, 0, 0, 255)).save(gouache_home / "input" / "opaque.png")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(gouache_home / "input" / "clear.png")

    def sample(mask_file):
        workflow = text_to_image(steps=4)
        nodes = workflow["nodes"]
        nodes["latent"] = {"type": "RandomLatent", "inputs": {"seed": 3, "side": 8}}
        nodes["sampler"]["inputs"]["denoise"] = 0.75
        if mask_file:
            nodes["mask"] = {"type": "LoadImage", "inputs": {"image": mask_file}}
            nodes["masked"] = {"type": "SetLatentNoiseMask", "inputs": {
                "latent": {"node": "latent", "output": "latent"}, "mask": {"node": "mask", "output": "mask"}}}
            nodes["sampler"]["inputs"]["latent"] = {"node": "masked", "output": "latent"}
        result = shared_engine.run(workflow, outputs=["sampler"])
        assert result.ok, result.error
        return result.outputs["latent"]["latent"]["samples"], result.outputs["sampler"]["latent"]["samples"]

    start, unmasked = sample(None)
    assert torch.equal(sample("opaque.png")[1], start), "mask 0 everywhere keeps the input"
    assert torch.equal(sample("clear.png")[1], unmasked), "mask 1 everywhere repaints all"


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "seed", "expected"), [
    ("a red circle on a blue background on the left", 11, ("red", "circle", "blue", "left")),
    ("a small yellow star on black at the top", 12, ("yellow", "star", "black", "top")),
    # a held-out colour/shape/background triple: no training stage saw it, placed or not
    ("a blue triangle on a yellow background on the right", 13, ("blue", "triangle", "yellow", "right")),
    ("purple background with an orange square at the bottom", 14, ("orange", "square", "purple", "bottom")),
    ("a green star on a white background", 15, ("green", "star", "white", None)),
])
def test_the_main_command_draws_what_the_prompt_asks_where_it_asks(tmp_path, prompt, seed, expected):
    from gouache.cli.main import main
    from gouache_training import checker

    out = tmp_path / "out"
    argv = ["--home", str(tmp_path / "home"), "run", str(WORKFLOWS / "text-to-image.json"), "--output-dir", str(out),
            "--set", f"positive.text={prompt}", "--set", f"sampler.seed={seed}"]
    assert main(argv) == 0
    [png] = out.glob("*.png")
    reading = checker.read(np.asarray(Image.open(png).convert("RGB")))
    assert (reading.colour, reading.shape, reading.background, reading.position) == expected, reading
