"""Loading: a single file gives the same model as its diffusers folder, offline, with clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gouache.nodes.loading import LoadedCheckpoint, ModelLoadError, fingerprint, load_checkpoint, read_state_dict

TOLERANCE = 1e-5


def _outputs(loaded: LoadedCheckpoint) -> dict[str, torch.Tensor]:
    """Run every component once on fixed inputs."""
    generator = torch.Generator().manual_seed(0)
    parts = loaded.components()
    ids = parts["tokenizer"]("a red circle", padding="max_length", max_length=77, return_tensors="pt").input_ids
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        hidden = parts["text_encoder"](ids, output_hidden_states=True)
        out["text"] = hidden.last_hidden_state
        out["text_penultimate"] = hidden.hidden_states[-2]
        context = out["text"]
        added = None
        if parts.get("text_encoder_2") is not None:
            ids_2 = parts.get("tokenizer_2")("a red circle", padding="max_length", max_length=77, return_tensors="pt").input_ids
            second = parts.get("text_encoder_2")(ids_2, output_hidden_states=True)
            out["text_2"], out["pooled"] = second.hidden_states[-2], second.text_embeds
            context = torch.cat([out["text_penultimate"], out["text_2"]], dim=-1)
            added = {"text_embeds": out["pooled"], "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
        latents = torch.randn(1, 4, 8, 8, generator=generator)
        out["unet"] = parts["unet"](latents, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
        image = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
        out["vae_encode"] = parts["vae"].encode(image).latent_dist.mean
        out["vae_decode"] = parts["vae"].decode(latents).sample
    return out


@pytest.mark.parametrize("name", ["tiny_sd1", "tiny_sd2", "tiny_sdxl"])
def test_single_file_loads_like_the_diffusers_folder(name: str, request: pytest.FixtureRequest, no_network) -> None:
    model = request.getfixturevalue(name)
    from_folder = load_checkpoint(model.folder)
    from_file = load_checkpoint(model.safetensors, config_dir=model.folder)
    assert (from_file.family.name, from_file.prediction_type) == (from_folder.family.name, from_folder.prediction_type)
    assert from_file.scheduler_config == from_folder.scheduler_config
    assert (from_file.components().get("tokenizer_2") is None) == (model.family != "sdxl")
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = from_folder.components().get(part), from_file.components().get(part)
        if a is None:
            assert b is None
            continue
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys(), part
        assert all(torch.equal(sa[k], sb[k]) for k in sa), part
    expected, actual = _outputs(from_folder), _outputs(from_file)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, atol=TOLERANCE, rtol=0, msg=key)


def test_ckpt_loads_through_weights_only(tiny_sd1, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    from_ckpt = load_checkpoint(tiny_sd1.ckpt, config_dir=tiny_sd1.folder)
    assert calls == [True]
    reference = read_state_dict(tiny_sd1.safetensors)
    assert read_state_dict(tiny_sd1.ckpt).keys() == reference.keys()
    assert from_ckpt.family.name == "sd1"


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_ckpt_with_python_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": {"x": _Payload()}}, handle)
    with pytest.raises(ModelLoadError, match=r"evil\.ckpt.*will not unpickle"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "name", "words"),
    [
        (b"not a model", "broken.safetensors", ["broken.safetensors", "not a readable safetensors"]),
        (b"", "model.onnx", ["unknown checkpoint format '.onnx'"]),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes, name: str, words: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as caught:
        load_checkpoint(path)
    for word in words:
        assert word in str(caught.value)


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_lora_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "style.safetensors"
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError, match=r"no UNet weights.*lora_unet_down"):
        load_checkpoint(path)


def test_file_that_does_not_fit_the_shipped_config_says_so(tiny_sd1, no_network) -> None:
    # Tiny weights against the real SD 1.5 config: the message names the file, the part and the fix.
    with pytest.raises(ModelLoadError) as caught:
        load_checkpoint(tiny_sd1.safetensors)
    message = str(caught.value)
    assert str(tiny_sd1.safetensors) in message
    assert "unet" in message and "config_dir" in message


@pytest.mark.parametrize(
    ("dropped", "part", "first_missing"),
    [
        ("first_stage_model.decoder.", "vae", "decoder.conv_in.bias"),
        ("cond_stage_model.transformer.text_model.encoder.layers.1.", "text_encoder", "encoder.layers.1."),
    ],
)
def test_missing_weights_are_named(tiny_sd1, tmp_path: Path, dropped: str, part: str, first_missing: str) -> None:
    state_dict = read_state_dict(tiny_sd1.safetensors)
    path = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state_dict.items() if not k.startswith(dropped)}, str(path))
    with pytest.raises(ModelLoadError) as caught:
        load_checkpoint(path, config_dir=tiny_sd1.folder)
    message = str(caught.value)
    assert str(path) in message and f"{part} weights" in message and "missing" in message
    assert first_missing in message


def test_config_dir_of_another_family_is_refused(tiny_sd1, tiny_sd2) -> None:
    with pytest.raises(ModelLoadError, match="Stable Diffusion 1.x checkpoint but config_dir .* describes a Stable Diffusion 2.x model"):
        load_checkpoint(tiny_sd1.safetensors, config_dir=tiny_sd2.folder)


def test_prediction_type_override(tiny_sd2) -> None:
    loaded = load_checkpoint(tiny_sd2.safetensors, config_dir=tiny_sd2.folder, prediction_type="epsilon")
    assert loaded.prediction_type == loaded.scheduler_config["prediction_type"] == "epsilon"


def test_dtype_is_applied(tiny_sd1) -> None:
    loaded = load_checkpoint(tiny_sd1.safetensors, config_dir=tiny_sd1.folder, dtype=torch.float16)
    parts = loaded.components()
    assert {p.dtype for p in parts["unet"].parameters()} == {torch.float16}
    assert {p.dtype for p in parts["text_encoder"].parameters()} == {torch.float16}


def test_fingerprint_is_stable_and_follows_changes(tiny_sd1, tmp_path: Path) -> None:
    assert fingerprint(tiny_sd1.safetensors) == fingerprint(tiny_sd1.safetensors)
    assert fingerprint(tiny_sd1.folder) == fingerprint(tiny_sd1.folder)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny_sd1.safetensors.read_bytes())
    before = fingerprint(copy)
    os.utime(copy, ns=(1, 1))
    assert fingerprint(copy) != before
    with pytest.raises(ModelLoadError, match="no such file"):
        fingerprint(tmp_path / "missing")


def test_loading_a_single_file_prints_no_empty_float32_warning(tmp_path, no_network) -> None:
    # diffusers' to() warns "modules ... should be kept in float32: []" on every cast from_single_file makes
    # (here the embedded model's fp16 file read for fp32, through diffusers: a config copy without "native").
    import logging
    import shutil

    from gouache.nodes.folders import weights_dir

    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    config = shutil.copytree(weights_dir() / "gouache-tiny", tmp_path / "config")
    (config / "gouache.json").unlink()
    logger = logging.getLogger("diffusers.models.modeling_utils")
    kept = Kept()
    logger.addHandler(kept)
    try:
        load_checkpoint(weights_dir() / "gouache-tiny.safetensors", config_dir=config)
        logger.warning("There are modules in X that should be kept in float32: ['a']. Casting directly ...")
    finally:
        logger.removeHandler(kept)
    assert kept.messages == ["There are modules in X that should be kept in float32: ['a']. Casting directly ..."]
