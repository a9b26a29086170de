"""Images in and out: the input folder, PNGs that carry their workflow, resizing, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from pack_support import engine, gouache_home, shared_engine, text_to_image  # noqa: F401
from PIL import Image

from gouache.engine.workflow import load_source


def _run_ok(engine, workflow, outputs=None):
    result = engine.run(workflow, outputs=outputs)
    assert result.ok, result.error
    return result


def test_save_image_embeds_workflow_and_parameters_and_never_overwrites(engine, gouache_home):
    workflow = text_to_image(prompt="a (red:1.2) circle", negative="blurry", seed=3)
    workflow["nodes"]["save"]["inputs"]["filename_prefix"] = "saved/test"
    first = _run_ok(engine, workflow)
    again = _run_ok(engine, workflow)
    assert again.executed == [] and again.images["save"] == first.images["save"], \
        "an unchanged workflow runs nothing and reports the file saved before"
    workflow["nodes"]["sampler"]["inputs"]["seed"] = 4
    second = _run_ok(engine, workflow)
    workflow["nodes"]["sampler"]["inputs"]["seed"] = 3
    paths = [image["path"] for result in (first, second) for image in result.images["save"]]
    assert paths == ["saved/test_00001.png", "saved/test_00002.png"]
    png = gouache_home / "output" / paths[0]
    with Image.open(png) as picture:
        assert picture.size == (16, 16)  # 64 px asked; the tiny VAE upsamples latents only 2x
        text = picture.text
    assert json.loads(text["workflow"])["nodes"]["sampler"]["inputs"]["seed"] == 3
    assert text["parameters"].startswith("a (red:1.2) circle\nNegative prompt: blurry\n")
    assert "Seed: 3" in text["parameters"] and "Sampler: euler" in text["parameters"]
    assert load_source(png)["nodes"] == workflow["nodes"]


@pytest.mark.slow
def test_gouache_run_reruns_a_saved_png(engine, gouache_home, tmp_path):
    first = _run_ok(engine, text_to_image(seed=9))
    png = gouache_home / "output" / first.images["save"][0]["path"]
    out = tmp_path / "again"
    command = [sys.executable, "-m", "gouache", "--home", str(gouache_home), "run", str(png),
               "--output-dir", str(out), "--json", "--set", "sampler.steps=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as pack_support does in-process: fast on a busy machine
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["status"] == "succeeded"
    [saved] = report["images"]["save"]
    assert saved["file"].startswith(str(out)) and (out / saved["path"]).is_file()


def test_load_image_gives_image_and_mask(shared_engine, gouache_home):
    picture = Image.new("RGBA", (24, 16), (255, 0, 0, 255))
    picture.putpixel((0, 0), (0, 0, 0, 0))
    picture.save(gouache_home / "input" / "alpha.png")
    workflow = {"format": "gouache/1", "nodes": {"load": {"type": "LoadImage", "inputs": {"image": "alpha.png"}}}}
    outputs = _run_ok(shared_engine, workflow, ["load"]).outputs["load"]
    assert outputs["image"].shape == (1, 16, 24, 3) and outputs["image"].dtype == torch.float32
    assert outputs["image"][0, 5, 5].tolist() == [1.0, 0.0, 0.0]
    assert outputs["mask"].shape == (1, 16, 24)
    assert outputs["mask"][0, 0, 0].item() == 1.0 and outputs["mask"][0, 5, 5].item() == 0.0


def test_the_shipped_example_loads_in_an_empty_home_and_a_users_file_of_that_name_wins(tmp_path):
    from gouache.engine import Engine

    engine = Engine(home=tmp_path)
    workflow = {"format": "gouache/1", "nodes": {"load": {"type": "LoadImage", "inputs": {"image": "example.png"}}}}
    shipped = _run_ok(engine, workflow, ["load"]).outputs["load"]["image"]
    assert shipped.shape == (1, 128, 128, 3)
    assert shipped.std() > 0.05  # a real picture, not a blank
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / "input" / "example.png")
    own = _run_ok(engine, workflow, ["load"]).outputs["load"]["image"]
    assert own.shape == (1, 8, 8, 3) and own[0, 0, 0].tolist() == [0.0, 1.0, 0.0]


def test_missing_and_broken_images_name_node_and_input(shared_engine, gouache_home):
    workflow = {"format": "gouache/1", "nodes": {"load": {"type": "LoadImage", "inputs": {"image": "nope.png"}}}}
    for missing in ("nope.png", "../outside.png"):  # the choices are the input folder's images
        workflow["nodes"]["load"]["inputs"]["image"] = missing
        valid, [problem] = shared_engine.check(workflow)
        assert (problem.node, problem.input, problem.code) == ("load", "image", "not_a_choice")
        assert repr(missing) in problem.message and "example.png" in problem.message
    (gouache_home / "input" / "broken.png").write_text("not a picture")
    workflow["nodes"]["load"]["inputs"]["image"] = "broken.png"
    result = shared_engine.run(workflow, outputs=["load"])
    assert (result.error.node, result.error.input, result.error.code) == ("load", "image", "unreadable")
    assert result.error.message.startswith("broken.png is not an image")


def test_wrong_value_on_an_image_input_names_node_and_input(shared_engine):
    workflow = text_to_image()
    workflow["nodes"]["encode"] = {"type": "VAEEncode", "inputs": {"image": {"node": "latent", "output": "latent"},
                                                                   "vae": {"node": "checkpoint", "output": "vae"}}}
    valid, problems = shared_engine.check(workflow)
    assert valid is None
    assert [(p.node, p.input) for p in problems] == [("encode", "image")]


def test_image_and_latent_resizing(shared_engine):
    workflow = {"format": "gouache/1", "nodes": {
        "load": {"type": "LoadImage", "inputs": {"image": "example.png"}},
        "half": {"type": "ImageScale", "inputs": {"image": {"node": "load", "output": "image"},
                                                  "method": "bilinear", "scale_by": 0.5}},
        "wide": {"type": "ImageScale", "inputs": {"image": {"node": "load", "output": "image"},
                                                  "method": "lanczos", "width": 100, "height": 0}},
        "latent": {"type": "EmptyLatent", "inputs": {"width": 64, "height": 32, "batch_size": 2}},
        "up": {"type": "LatentUpscale", "inputs": {"latent": {"node": "latent", "output": "latent"},
                                                   "method": "bilinear", "scale_by": 2.0}},
        "sized": {"type": "LatentUpscale", "inputs": {"latent": {"node": "latent", "output": "latent"},
                                                      "method": "nearest-exact", "width": 128, "height": 0}},
    }}
    outputs = _run_ok(shared_engine, workflow, ["half", "wide", "up", "sized"]).outputs
    assert outputs["half"]["image"].shape == (1, 64, 64, 3)
    assert outputs["wide"]["image"].shape == (1, 100, 100, 3)
    assert outputs["latent"]["latent"]["samples"].shape == (2, 4, 4, 8)
    assert outputs["up"]["latent"]["samples"].shape == (2, 4, 8, 16)
    assert outputs["sized"]["latent"]["samples"].shape == (2, 4, 8, 16)


def test_vae_round_trip_keeps_the_picture(shared_engine):
    workflow = {"format": "gouache/1", "nodes": {
        "checkpoint": {"type": "CheckpointLoader", "inputs": {"name": "tiny-sd1"}},
        "load": {"type": "LoadImage", "inputs": {"image": "example.png"}},
        "encode": {"type": "VAEEncode", "inputs": {"image": {"node": "load", "output": "image"},
                                                   "vae": {"node": "checkpoint", "output": "vae"}}},
        "decode": {"type": "VAEDecode", "inputs": {"latent": {"node": "encode", "output": "latent"},
                                                   "vae": {"node": "checkpoint", "output": "vae"}}},
    }}
    outputs = _run_ok(shared_engine, workflow, ["decode"]).outputs
    assert outputs["encode"]["latent"]["samples"].shape == (1, 4, 64, 64)  # the tiny VAE halves each side
    image = outputs["decode"]["image"]
    assert image.shape == (1, 128, 128, 3) and 0.0 <= image.min() and image.max() <= 1.0


KILLED_MID_SAVE = """
import os, signal, sys, torch
from pathlib import Path
from PIL import Image
from gouache.nodes import images

real_save = Image.Image.save
def save_then_die(self, handle, *args, **kwargs):
    handle.write(b"\\x89PNG half a picture")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
Image.Image.save = save_then_die
images.save_png(torch.rand(8, 8, 3), Path(sys.argv[1]), "killed", {})
"""


def test_a_process_killed_while_saving_leaves_no_png_and_its_leftover_is_cleaned(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from gouache.nodes import images

    done = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path)], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert not list(tmp_path.glob("*.png"))
    [leftover] = tmp_path.glob("*" + images.PARTIAL_SUFFIX)
    os.utime(leftover, (0, 0))  # as if left long ago
    saved = images.save_png(torch.rand(8, 8, 3), tmp_path, "killed", {})
    assert saved.name == "killed_00001.png" and saved.stat().st_size > 0
    assert not leftover.exists()
