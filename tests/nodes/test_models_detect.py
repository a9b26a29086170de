"""Family and prediction-type detection for single files and diffusers folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gouache.nodes.loading import ModelLoadError, detect_checkpoint, detect_family, detect_folder, read_state_dict


@pytest.mark.parametrize("name", ["tiny_sd1", "tiny_sd2", "tiny_sdxl"])
def test_single_files_and_folders_are_recognised(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    assert detect_family(read_state_dict(model.safetensors)).name == model.family
    assert detect_folder(model.folder).family.name == model.family


def test_folder_prediction_type_comes_from_its_scheduler(tiny_sd1, tiny_sd2) -> None:
    assert detect_folder(tiny_sd1.folder).prediction_type == "epsilon"
    assert detect_folder(tiny_sd2.folder).prediction_type == "v_prediction"


def _sd2_keys() -> dict[str, torch.Tensor]:
    return {
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, 1024),
        "cond_stage_model.model.token_embedding.weight": torch.zeros(4, 8),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("v2-1_768-ema-pruned.safetensors", "v_prediction"),
        ("my-sd2-finetune.safetensors", "v_prediction"),
        ("v2-1_512-ema-pruned.safetensors", "epsilon"),
        ("sd2-base.ckpt", "epsilon"),
    ],
)
def test_sd2_prediction_type_follows_the_documented_name_rule(name: str, expected: str) -> None:
    detection = detect_checkpoint(_sd2_keys(), Path(name))
    assert (detection.family.name, detection.prediction_type, detection.explicit) == ("sd2", expected, False)


def test_v_pred_key_and_sidecar_yaml_are_explicit(tmp_path: Path) -> None:
    marked = {**_sd2_keys(), "v_pred": torch.tensor([])}
    assert detect_checkpoint(marked, tmp_path / "sd2-base.safetensors").prediction_type == "v_prediction"
    checkpoint = tmp_path / "v2-1_768.safetensors"
    checkpoint.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    detection = detect_checkpoint(_sd2_keys(), checkpoint)
    assert (detection.prediction_type, detection.explicit) == ("epsilon", True)
    checkpoint.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert detect_checkpoint(_sd2_keys(), checkpoint).prediction_type == "v_prediction"


def test_unet_width_decides_when_the_text_encoder_is_absent() -> None:
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    assert detect_family({key: torch.zeros(320, 768)}).name == "sd1"
    assert detect_family({key: torch.zeros(320, 1024)}).name == "sd2"


@pytest.mark.parametrize(
    ("state_dict", "words"),
    [
        ({"lora_unet_down_blocks_0.alpha": torch.tensor(1.0)}, ["no UNet weights", "lora_unet_down_blocks_0.alpha"]),
        ({"encoder.conv_in.weight": torch.zeros(1)}, ["no UNet weights", "encoder.conv_in.* (1)"]),
        (
            {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, 512)},
            ["unknown checkpoint layout", "width of 512", "model.diffusion_model.*"],
        ),
        (
            {"model.diffusion_model.x": torch.zeros(1), "conditioner.embedders.0.model.ln_final.weight": torch.zeros(1)},
            ["refiner"],
        ),
        ({}, ["no tensors at all"]),
    ],
)
def test_unknown_layouts_say_what_was_found(state_dict: dict, words: list[str]) -> None:
    with pytest.raises(ModelLoadError) as caught:
        detect_family(state_dict)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("key", "label"), [
    ("conditioner.embedders.0.model.ln_final.weight", "Stable Diffusion XL refiner"),
    ("model.diffusion_model.clip_txt_mapper.weight", "Stable Cascade (stage C)"),
    ("t_block.1.weight", "PixArt"),
    ("mlp_t5.0.weight", "Hunyuan-DiT"),
    ("cond_seq_linear.weight", "AuraFlow"),
    ("model.diffusion_model.encoder_hid_proj.weight", "Kolors"),
    ("head.modulation", "Wan (video)"),
    ("noise_augmentor.betas", "Stable unCLIP"),
])
def test_families_gouache_does_not_load_are_named(tmp_path: Path, key: str, label: str) -> None:
    from safetensors.torch import save_file

    from gouache.nodes.loading import load_checkpoint

    path = tmp_path / "other.safetensors"
    save_file({key: torch.zeros(2, 2), "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"this is a {label} checkpoint, which gouache does not load; gouache loads ")
    assert "Stable Diffusion 1.x" in str(caught.value) and "Flux.1" in str(caught.value)


def test_unsupported_folder_names_its_pipeline(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "model_index.json").write_text('{"_class_name": "AuraFlowPipeline"}')
    with pytest.raises(ModelLoadError, match="AuraFlowPipeline"):
        detect_folder(tmp_path)


@pytest.mark.parametrize(("stated", "expected"), [("v", "v_prediction"), ("epsilon", "epsilon")])
def test_modelspec_metadata_states_the_prediction_type(tiny_sd1, tmp_path: Path, stated: str, expected: str) -> None:
    from safetensors.torch import save_file

    from gouache.nodes.folders import describe_checkpoint
    from gouache.nodes.loading import load_checkpoint, read_state_dict

    path = tmp_path / "named-as-nothing.safetensors"
    save_file(read_state_dict(tiny_sd1.safetensors), str(path), metadata={"modelspec.prediction_type": stated})
    loaded = load_checkpoint(path, config_dir=tiny_sd1.folder)
    assert loaded.prediction_type == loaded.scheduler_config["prediction_type"] == expected
    assert describe_checkpoint(path)["prediction_type"] == expected
