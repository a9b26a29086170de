"""A checkpoint's own settings (``gouache.json``): recommended defaults listed with the model, and
preview factors that make gouache-tiny's live preview look like the picture it becomes."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from gouache.engine import Engine, jsonio
from gouache.nodes.families import SD1
from gouache.nodes.folders import weights_dir
from gouache.nodes.model_settings import ModelSettingsError, defaults, preview_format, read_settings

TINY_SETTINGS = weights_dir() / "gouache-tiny" / "gouache.json"


def test_gouache_tiny_is_listed_with_the_settings_it_was_trained_for(tmp_path):
    engine = Engine(home=tmp_path / "home")
    (tiny,) = [entry for entry in engine.models.as_json()["checkpoints"] if entry["name"] == "gouache-tiny"]
    assert tiny["defaults"] == {"width": 128, "height": 128, "steps": 20, "cfg": 3.0, "sampler_name": "euler",
                                "scheduler": "normal"}


def test_gouache_models_shows_the_defaults_as_a_person_reads_them(tmp_path, capsys):
    from gouache.cli.main import main

    assert main(["--home", str(tmp_path / "home"), "models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("gouache-tiny "))
    assert "defaults=width:128,height:128,steps:20,cfg:3.0,sampler_name:euler,scheduler:normal" in line


def test_a_checkpoint_without_settings_gets_its_family_defaults_and_one_with_a_file_gets_its_own(tmp_path, tiny_sd1):
    home = tmp_path / "home"
    folders = home / "models" / "checkpoints"
    folders.mkdir(parents=True)
    shutil.copytree(tiny_sd1.folder, folders / "plain")
    shutil.copytree(tiny_sd1.folder, folders / "tuned")
    (folders / "tuned" / "gouache.json").write_text(json.dumps({"defaults": {"width": 256, "cfg": 4.5}}))
    shutil.copy(tiny_sd1.safetensors, folders / "single.safetensors")
    (folders / "single.gouache.json").write_text(json.dumps({"defaults": {"steps": 12}}))
    shutil.copy(tiny_sd1.safetensors, folders / "broken.safetensors")
    (folders / "broken.gouache.json").write_text('{"defaults": {"colour": "red"}}')
    listed = {entry["name"]: entry for entry in Engine(home=home).models.as_json()["checkpoints"]}
    assert listed["plain"]["defaults"] == {"width": 512, "height": 512, "steps": 20, "cfg": 7.0,
                                           "sampler_name": "euler", "scheduler": "normal"}
    assert listed["tuned"]["defaults"]["width"] == 256 and listed["tuned"]["defaults"]["cfg"] == 4.5
    assert listed["tuned"]["defaults"]["height"] == 512  # what the file leaves out is the family's
    assert listed["single.safetensors"]["defaults"]["steps"] == 12
    assert listed["broken.safetensors"]["defaults"]["width"] == 512
    assert "unknown defaults colour" in listed["broken.safetensors"]["settings_error"]


def test_preview_factors_that_do_not_fit_the_family_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "gouache.json").write_text(json.dumps({"preview": {"rgb_factors": [[1, 0, 0]] * 3, "rgb_bias": [0, 0, 0]}}))
    with pytest.raises(ModelSettingsError, match="4 latent channels"):
        preview_format(SD1, read_settings(folder))
    (folder / "gouache.json").write_text("{not json")
    with pytest.raises(ModelSettingsError, match="gouache.json"):
        read_settings(folder)
    assert defaults(SD1, {}) == SD1.defaults and preview_format(SD1, {}) is SD1.latent


def mean_colour_error(preview_jpeg: bytes, image_path) -> float:
    """Mean absolute difference per channel (0-255) between a preview and the image, at the preview's size."""
    from PIL import Image

    preview = Image.open(io.BytesIO(preview_jpeg)).convert("RGB")
    image = Image.open(image_path).convert("RGB").resize(preview.size, Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(preview, np.float32) - np.asarray(image, np.float32)).mean())


def test_the_live_preview_of_gouache_tiny_looks_like_the_picture_it_becomes(tmp_path):
    """The last preview (the sampler's final latents through the fitted factors) against the decoded image;
    SD 1.x's factors on the same latents, the preview as it was before, are far off."""
    from gouache.nodes.preview import latent_preview_jpeg

    engine = Engine(home=tmp_path / "home")
    workflow = jsonio.loads((weights_dir().parents[2] / "workflows" / "text-to-image.json").read_text())
    workflow["nodes"]["sampler"]["inputs"]["steps"] = 8
    previews: list[bytes] = []
    engine.subscribe(lambda event: previews.append(event.data.jpeg) if event.type == "preview" else None)
    result = engine.run(workflow)
    assert result.ok, result.error
    assert previews, "the sampler sent no preview"
    image = engine.settings.folder("output") / result.images["save"][0]["path"]
    fitted = mean_colour_error(previews[-1], image)
    latents = result.outputs["sampler"]["latent"]["samples"]
    with_sd_factors = mean_colour_error(latent_preview_jpeg(latents, SD1.latent), image)
    assert fitted < 35, f"the preview is {fitted:.1f}/255 off the picture per channel"
    assert fitted < with_sd_factors / 2, (fitted, with_sd_factors)
