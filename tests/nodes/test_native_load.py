"""Checkpoints loaded into gouache's native modules compute what the diffusers-loaded ones compute.

The embedded model's settings file chooses the native modules; any SD 1.x-family checkpoint may, through
its own settings file. The modules themselves are held to diffusers and transformers in
``test_native_unet/vae/clip.py``; here the whole load (keys, layouts, configs, tokenizer) is, and the
path a user takes: ``gouache run`` renders the embedded model without importing diffusers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gouache.engine import Engine
from gouache.nodes.folders import weights_dir
from gouache.nodes.loading import ModelLoadError, load_checkpoint
from gouache.nodes.model_settings import ModelSettingsError
from gouache.nodes.prompt import encode

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = weights_dir() / "gouache-tiny"
HEAVY = ("diffusers", "transformers", "accelerate", "scipy", "peft", "torch._dynamo", "sympy")


def _with_modules(source: Path, target: Path, modules: str) -> Path:
    """A copy of the diffusers folder ``source`` whose settings file asks for ``modules``."""
    shutil.copytree(source, target)
    settings_path = target / "gouache.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    settings_path.write_text(json.dumps({**settings, "modules": modules}))
    return target


def _native_file(folder: Path, name: str, tensors: dict[str, torch.Tensor] | Path, modules: str = "native") -> Path:
    """``folder/name.safetensors`` (the tensors, or a copy of a file) with a settings file asking for ``modules``."""
    path = folder / f"{name}.safetensors"
    if isinstance(tensors, Path):
        shutil.copy(tensors, path)
    else:
        save_file(tensors, path)
    (folder / f"{name}.gouache.json").write_text(json.dumps({"modules": modules}))
    return path


def _same_outputs(native, reference, text: str = "a large red circle on a blue background") -> None:
    """UNet, VAE and text encoder of two loads of one model agree on the same inputs."""
    torch.manual_seed(0)
    unet_config = reference.denoiser.config
    size = int(unet_config.sample_size)
    sample = torch.randn(2, int(unet_config.in_channels), size, size)
    width = int(unet_config.cross_attention_dim)
    hidden = torch.randn(2, 77, width)
    with torch.no_grad():
        for t in (999, 500, 1):
            ours = native.denoiser(sample, t, encoder_hidden_states=hidden, return_dict=False)[0]
            theirs = reference.denoiser(sample, t, encoder_hidden_states=hidden, return_dict=False)[0]
            assert (ours - theirs).abs().max() <= 1e-4
        latents = torch.randn(1, 4, size, size)
        decoded = native.vae.decode(latents, return_dict=False)[0]
        assert (decoded - reference.vae.decode(latents, return_dict=False)[0]).abs().max() <= 1e-4
        ours_embeds, _ = encode(native, text, "cpu")
        theirs_embeds, _ = encode(reference, text, "cpu")
    assert ours_embeds.shape == theirs_embeds.shape
    assert (ours_embeds - theirs_embeds).abs().max() <= 1e-5


def test_the_embedded_model_loads_natively_and_computes_what_diffusers_computes(tmp_path):
    native = load_checkpoint(weights_dir() / "gouache-tiny.safetensors", config_dir=EMBEDDED)
    assert type(native.denoiser).__module__ == "gouache.nodes.native.unet"
    assert type(native.encoders[0].model).__module__ == "gouache.nodes.native.clip"
    reference = load_checkpoint(weights_dir() / "gouache-tiny.safetensors",
                                config_dir=_with_modules(EMBEDDED, tmp_path / "diffusers", "diffusers"))
    assert type(reference.denoiser).__module__.startswith("diffusers.")
    assert native.scheduler_config == reference.scheduler_config
    assert native.prediction_type == reference.prediction_type
    for (slot, ours), (_, theirs) in zip(native.modules(), reference.modules()):
        assert ours.state_dict().keys() == theirs.state_dict().keys(), slot
        for key, value in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), f"{slot}.{key}"
    _same_outputs(native, reference)
    from gouache.nodes.loading import diffusers_to_original

    written = diffusers_to_original(native.denoiser, native.vae, native.encoders[0].model)
    expected = diffusers_to_original(reference.denoiser, reference.vae, reference.encoders[0].model)
    assert written.keys() == expected.keys() and all(torch.equal(written[k], v) for k, v in expected.items())
    # The folder the file is read with loads natively too, to the same weights.
    folder = load_checkpoint(EMBEDDED)
    assert type(folder.vae).__module__ == "gouache.nodes.native.vae"
    for key, value in native.denoiser.state_dict().items():
        assert torch.equal(folder.denoiser.state_dict()[key], value), key


@pytest.mark.parametrize("form", ["safetensors", "folder"])
def test_an_sd1_checkpoint_that_asks_for_native_modules_gets_them(tmp_path, tiny_sd1, form):
    if form == "folder":
        path = _with_modules(tiny_sd1.folder, tmp_path / "model", "native")
    else:
        path = _native_file(tmp_path, "model", tiny_sd1.safetensors)
    native = load_checkpoint(path, config_dir=tiny_sd1.folder if form == "safetensors" else None)
    assert type(native.denoiser).__module__ == "gouache.nodes.native.unet"
    reference = load_checkpoint(tiny_sd1.folder)
    _same_outputs(native, reference, "a (photo:1.2) of a cat, watercolour")
    # A textual-inversion embedding goes in through the token embedding's hook on both.
    from gouache.nodes.embeddings import Embedding

    width = native.encoders[0].model.get_input_embeddings().weight.shape[1]
    embedding = Embedding("style", (torch.randn(2, width, generator=torch.Generator().manual_seed(3)),))
    with torch.no_grad():
        ours, _ = encode(native, "a embedding:style cat", "cpu", embeddings={"style": embedding})
        theirs, _ = encode(reference, "a embedding:style cat", "cpu", embeddings={"style": embedding})
        plain, _ = encode(native, "a cat", "cpu")
    assert (ours - theirs).abs().max() <= 1e-5 and (ours - plain).abs().max() > 1e-3


def test_weights_that_fit_no_buildable_model_say_so(tmp_path, tiny_sd1):
    # Tiny weights read against SD 1.5's shipped config: 32 normalisation groups cannot split 8 channels.
    path = _native_file(tmp_path, "model", tiny_sd1.safetensors)
    with pytest.raises(ModelLoadError, match=r"model\.safetensors.*unet.config\.json.*config_dir="):
        load_checkpoint(path)


def test_the_native_modules_refuse_a_family_they_do_not_implement(tmp_path, tiny_sd2):
    path = _native_file(tmp_path, "sd2", tiny_sd2.safetensors)
    with pytest.raises(ModelLoadError, match=r"sd2\.safetensors.*SD 1\.x-family.*\"modules\": \"diffusers\""):
        load_checkpoint(path)


def test_a_weight_the_file_lacks_is_named(tmp_path, tiny_sd1):
    state_dict = load_file(tiny_sd1.safetensors)
    del state_dict["model.diffusion_model.out.2.weight"]
    path = _native_file(tmp_path, "cut", state_dict)
    with pytest.raises(ModelLoadError, match=r"cut\.safetensors.*missing.*conv_out\.weight"):
        load_checkpoint(path, config_dir=tiny_sd1.folder)


def test_a_weight_with_no_place_is_named(tmp_path, tiny_sd1):
    state_dict = load_file(tiny_sd1.safetensors)
    state_dict["first_stage_model.decoder.extra.weight"] = torch.zeros(3)
    path = _native_file(tmp_path, "extra", state_dict)
    with pytest.raises(ModelLoadError, match=r"no place.*first_stage_model\.decoder\.extra\.weight"):
        load_checkpoint(path, config_dir=tiny_sd1.folder)


def test_an_unknown_modules_choice_is_refused(tmp_path, tiny_sd1):
    path = _native_file(tmp_path, "model", tiny_sd1.safetensors, "onnx")
    with pytest.raises(ModelLoadError, match=r"model\.gouache\.json.*'modules' is one of 'diffusers', 'native'.*onnx"):
        load_checkpoint(path)
    (tmp_path / "model.gouache.json").write_text(json.dumps({"module": "native"}))
    with pytest.raises(ModelLoadError, match="unknown: 'module'"):
        load_checkpoint(path)
    assert issubclass(ModelLoadError, Exception) and issubclass(ModelSettingsError, ValueError)


@pytest.mark.slow
def test_the_embedded_render_matches_the_diffusers_loaded_one(tmp_path):
    """Same workflow, same seed: the image from the native modules is the diffusers-loaded one's."""
    home = tmp_path / "home"
    _with_modules(EMBEDDED, home / "models" / "checkpoints" / "tiny-diffusers", "diffusers")
    workflow = json.loads((ROOT / "workflows" / "text-to-image.json").read_text())
    workflow["nodes"]["sampler"]["inputs"]["steps"] = 8
    engine = Engine(home=home)
    images = {}
    for name in ("gouache-tiny", "tiny-diffusers"):
        workflow["nodes"]["checkpoint"]["inputs"]["name"] = name
        result = engine.run(workflow, outputs=["decode"])
        images[name] = np.asarray(result.outputs["decode"]["image"], dtype=np.float64)
    difference = np.abs(images["gouache-tiny"] - images["tiny-diffusers"])
    assert difference.max() <= 2 / 255 and difference.mean() <= 1e-4


@pytest.mark.slow
def test_a_lora_and_a_controlnet_act_on_the_native_model_as_on_the_diffusers_loaded_one(tmp_path):
    """The shipped outline LoRA and silhouette ControlNet, through their nodes, on both loads of gouache-tiny."""
    home = tmp_path / "home"
    _with_modules(EMBEDDED, home / "models" / "checkpoints" / "tiny-diffusers", "diffusers")
    guided = json.loads((ROOT / "workflows" / "controlnet.json").read_text())
    nodes = guided["nodes"]
    checkpoint = next(name for name, node in nodes.items() if node["type"] == "CheckpointLoader")
    nodes["lora"] = {"type": "LoraLoader", "inputs": {
        "model": {"node": checkpoint, "output": "model"}, "clip": {"node": checkpoint, "output": "clip"},
        "name": "gouache-tiny-outline.safetensors", "strength_model": 1.0, "strength_clip": 1.0}}
    for name, node in nodes.items():
        for key, value in node["inputs"].items():
            if name != "lora" and isinstance(value, dict) and value.get("node") == checkpoint \
                    and value["output"] in ("model", "clip"):
                node["inputs"][key] = {"node": "lora", "output": value["output"]}
    decode = next(name for name, node in nodes.items() if node["type"] == "VAEDecode")
    sampler = next(name for name, node in nodes.items() if node["type"] == "Sampler")
    nodes[sampler]["inputs"]["steps"] = 8
    engine = Engine(home=home)
    images = {}
    for checkpoint_name in ("gouache-tiny", "tiny-diffusers"):
        for strength in (1.0, 0.0):
            nodes[checkpoint]["inputs"]["name"] = checkpoint_name
            nodes["lora"]["inputs"]["strength_model"] = strength
            result = engine.run(guided, outputs=[decode])
            assert result.ok, result.error
            images[checkpoint_name, strength] = np.asarray(result.outputs[decode]["image"], dtype=np.float64)
    for strength in (1.0, 0.0):
        difference = np.abs(images["gouache-tiny", strength] - images["tiny-diffusers", strength])
        assert difference.max() <= 2 / 255, strength
    assert np.abs(images["gouache-tiny", 1.0] - images["gouache-tiny", 0.0]).mean() > 0.01  # the LoRA acts


RUN_AND_LIST = """
import contextlib, io, json, sys
from gouache.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "result": json.loads(out.getvalue()),
                  "imported": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


@pytest.mark.slow
def test_gouache_run_renders_the_embedded_model_without_diffusers_or_transformers(tmp_path):
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST, "--home", str(tmp_path / "home"), "run",
                           "workflows/text-to-image.json", "--quiet", "--json", "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["code"] == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 1
    assert found["imported"] == [], f"the embedded render imported {found['imported']}"
