"""gouache's native VAE computes what diffusers' ``AutoencoderKL`` computes, with the same keys and layers.

diffusers is the reference: each test builds a diffusers VAE, loads its weights into the native one with
``strict=True`` and compares in float32. GroupNorm affines are randomised, since diffusers initialises them
to the identity and a forgotten affine would otherwise go unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from gouache.nodes.native import UnsupportedConfig
from gouache.nodes.native.vae import DEFAULTS, NativeAutoencoderKL

TINY_VAE = Path(__file__).resolve().parents[2] / "nodes" / "embedded" / "weights" / "gouache-tiny" / "vae"
TOLERANCE = 1e-5

# Stable Diffusion's layout at toy width: two levels, 32 groups, two resnets per encoder block.
TINY_SD: dict[str, Any] = {
    "_class_name": "AutoencoderKL", "block_out_channels": [32, 64], "norm_num_groups": 32, "layers_per_block": 2,
    "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2, "sample_size": 64,
}
VARIANTS = {
    "sd-like": {},
    "no-quant-conv": {"use_quant_conv": False},
    "no-post-quant-conv": {"use_post_quant_conv": False},
    "no-quant-convs": {"use_quant_conv": False, "use_post_quant_conv": False},
    "no-mid-attention": {"mid_block_add_attention": False},
    "three-levels": {"block_out_channels": [16, 32, 32], "norm_num_groups": 8, "layers_per_block": 1,
                     "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
                     "latent_channels": 8, "in_channels": 4, "out_channels": 1, "act_fn": "swish",
                     "shift_factor": 0.1, "scaling_factor": 0.5},
}


class _Cpu:
    """A model manager that keeps everything on the CPU."""

    def on_device(self, modules: Any) -> torch.device:
        return torch.device("cpu")


def _pair(config: dict[str, Any], state: dict[str, torch.Tensor] | None = None) -> tuple[Any, NativeAutoencoderKL]:
    """A diffusers VAE (random weights, or ``state``) and the native one holding the same weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    reference = AutoencoderKL(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
    if state is None:
        with torch.no_grad():
            for name, param in reference.named_parameters():
                if param.ndim == 1:  # norm scales and shifts, biases
                    param.add_(0.2 * torch.randn_like(param))
    else:
        reference.load_state_dict(state)
    native = NativeAutoencoderKL(config).eval()
    native.load_state_dict(reference.state_dict(), strict=True)
    return reference, native


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return (a - b).abs().max().item()


def _assert_same(reference: Any, native: NativeAutoencoderKL, x: torch.Tensor) -> None:
    """Encode (every field of the distribution, a seeded draw) and decode agree within ``TOLERANCE``."""
    with torch.no_grad():
        theirs, ours = reference.encode(x).latent_dist, native.encode(x).latent_dist
        gaps = {field: _gap(getattr(theirs, field), getattr(ours, field)) for field in ("mean", "logvar", "std", "var")}
        gaps["mode"] = _gap(theirs.mode(), ours.mode())
        drawn = theirs.sample(torch.Generator().manual_seed(7))
        gaps["sample"] = _gap(drawn, ours.sample(torch.Generator().manual_seed(7)))
        seeds = [torch.Generator().manual_seed(s) for s in range(x.shape[0])]
        again = [torch.Generator().manual_seed(s) for s in range(x.shape[0])]
        gaps["sample per item"] = _gap(theirs.sample(seeds), ours.sample(again))
        gaps["decode"] = _gap(reference.decode(drawn).sample, native.decode(drawn).sample)
    assert max(gaps.values()) <= TOLERANCE, gaps
    assert not torch.equal(drawn, theirs.mode()), "the draw adds noise"


def _tiny_state() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(TINY_VAE / "diffusion_pytorch_model.safetensors").items()}


def _tiny_config() -> dict[str, Any]:
    return json.loads((TINY_VAE / "config.json").read_text())


def _image(batch: int, channels: int, size: int) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1


@pytest.fixture(scope="module")
def tiny_sd_pair() -> tuple[Any, NativeAutoencoderKL]:
    return _pair(TINY_SD)


def test_gouache_tiny_vae_with_its_shipped_weights_matches_diffusers() -> None:
    config = _tiny_config()
    reference, native = _pair(config, _tiny_state())
    assert native.config["_class_name"] == "AutoencoderKL" and native.config.norm_num_groups == 4
    _assert_same(reference, native, _image(1, 3, 128))


@pytest.mark.parametrize("variant", VARIANTS)
def test_configs_match_diffusers(variant: str) -> None:
    config = {**TINY_SD, **VARIANTS[variant]}
    reference, native = _pair(config)
    assert (native.quant_conv is None) == (not config.get("use_quant_conv", True))
    assert (native.post_quant_conv is None) == (not config.get("use_post_quant_conv", True))
    _assert_same(reference, native, _image(2, config.get("in_channels", 3), 32))


@pytest.mark.parametrize("variant", VARIANTS)
def test_layers_and_keys_are_named_as_diffusers_names_them(variant: str) -> None:
    reference, native = _pair({**TINY_SD, **VARIANTS[variant]})
    assert list(native.state_dict()) == list(reference.state_dict())
    assert [name for name, _ in native.named_modules()] == [name for name, _ in reference.named_modules()]
    for name, layer in reference.named_modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.Linear)):
            assert repr(native.get_submodule(name)) == repr(layer), name


def test_missing_keys_take_diffusers_defaults() -> None:
    from diffusers import AutoencoderKL

    native, reference = NativeAutoencoderKL({}), AutoencoderKL()
    for key in DEFAULTS:
        ours, theirs = native.config[key], reference.config[key]
        assert (list(ours) if isinstance(ours, (list, tuple)) else ours) == \
            (list(theirs) if isinstance(theirs, (list, tuple)) else theirs), key
    assert list(native.state_dict()) == list(reference.state_dict())
    with pytest.raises((AttributeError, TypeError)):
        native.config.scaling_factor = 1.0


def test_return_dict_false_gives_one_tuples_and_dtype_device_follow_the_weights(tiny_sd_pair) -> None:
    _, native = tiny_sd_pair
    x = _image(1, 3, 16)
    with torch.no_grad():
        (posterior,) = native.encode(x, return_dict=False)
        (images,) = native.decode(posterior.mode(), return_dict=False)
        assert torch.equal(images, native(x).sample)
    assert images.shape == x.shape and posterior.mean.shape == (1, 4, 8, 8)
    assert native.dtype == torch.float32 and native.device == torch.device("cpu")
    half = NativeAutoencoderKL(TINY_SD).half()
    assert half.dtype == torch.float16


def test_latent_nodes_encode_and_decode_the_same_through_either_vae(tiny_sd_pair) -> None:
    from gouache.nodes.latent import decode, encode

    reference, native = (types.SimpleNamespace(vae=vae) for vae in tiny_sd_pair)
    image = (_image(1, 3, 32).movedim(1, -1) + 1) / 2
    latent = encode(_Cpu(), reference, image)
    assert _gap(latent["samples"], encode(_Cpu(), native, image)["samples"]) <= TOLERANCE
    assert _gap(decode(_Cpu(), reference, latent), decode(_Cpu(), native, latent)) <= TOLERANCE


def test_every_weight_bearing_layer_runs_as_a_module_so_interrupt_hooks_see_it(tiny_sd_pair) -> None:
    from gouache.nodes.interrupt import interruptible

    def calls(vae: Any) -> tuple[int, int]:
        counts = []
        x = _image(1, 3, 16)
        with torch.no_grad():
            with interruptible([vae.encoder, vae.quant_conv], lambda: counts.append("encode")):
                z = vae.encode(x).latent_dist.mode()
            with interruptible([vae.decoder, vae.post_quant_conv], lambda: counts.append("decode")):
                vae.decode(z)
        return counts.count("encode"), counts.count("decode")

    reference, native = tiny_sd_pair
    weighted = sum(1 for m in native.modules() if any(True for _ in m.parameters(recurse=False)))
    assert calls(native) == calls(reference) and sum(calls(native)) == weighted


def test_tiled_walk_gives_what_it_gives_on_diffusers(tiny_sd_pair) -> None:
    """``nodes/tiled_vae.py`` walks the encoder and decoder layer by layer; 4 px tiles make it cut every layer."""
    from gouache.nodes.tiled_vae import _Walk

    reference, native = tiny_sd_pair
    x, z = _image(1, 3, 32), torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    cuts = []
    walks = [_Walk(torch.device("cpu"), torch.float32, 4, lambda: cuts.append(1)) for _ in range(2)]
    with torch.no_grad():
        assert _gap(walks[0].encoder(x, reference.encoder), walks[1].encoder(x, native.encoder)) <= TOLERANCE
        assert _gap(walks[0].decoder(z, reference.decoder), walks[1].decoder(z, native.decoder)) <= TOLERANCE
        assert _gap(walks[1].decoder(z, native.decoder), native.decoder(z)) <= 1e-4  # tiling itself is exact too
    assert len(cuts) > 100


def test_tiled_encode_and_decode_give_what_they_give_on_diffusers(tiny_sd_pair) -> None:
    from gouache.nodes.tiled_vae import decode_tiled, encode_tiled

    reference, native = (types.SimpleNamespace(vae=vae) for vae in tiny_sd_pair)
    image = (_image(1, 3, 32).movedim(1, -1) + 1) / 2
    latent = encode_tiled(_Cpu(), native, image, 8)
    assert _gap(latent["samples"], encode_tiled(_Cpu(), reference, image, 8)["samples"]) <= TOLERANCE
    assert _gap(decode_tiled(_Cpu(), native, latent, 8), decode_tiled(_Cpu(), reference, latent, 8)) <= TOLERANCE


def test_conversion_to_original_keys_is_the_same(tiny_sd_pair) -> None:
    from gouache.nodes.loading.convert import vae_to_original

    reference, native = tiny_sd_pair
    theirs, ours = vae_to_original(reference), vae_to_original(native)
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


@pytest.mark.parametrize(("key", "value"), [
    ("down_block_types", ["AttnDownEncoderBlock2D", "DownEncoderBlock2D"]),
    ("up_block_types", ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"]),
    ("down_block_types", ["DownEncoderBlock2D"]),  # fewer blocks than block_out_channels
    ("block_out_channels", []),
    ("norm_num_groups", 5),  # does not divide the channels
    ("block_out_channels", [32, 0]),
    ("act_fn", "gelu"),
    ("latent_channels", 0),
    ("layers_per_block", 1.5),
    ("use_quant_conv", "yes"),
    ("mid_block_add_attention", None),
    ("scaling_factor", None),
    ("shift_factor", "0.1"),
    ("latents_mean", "zeros"),
    ("norm_type", "spatial"),  # a key AutoencoderKL does not have
])
def test_unsupported_configs_are_refused_naming_key_and_value(key: str, value: Any) -> None:
    with pytest.raises(UnsupportedConfig) as error:
        NativeAutoencoderKL({**TINY_SD, key: value})
    assert key in str(error.value) and repr(value) in str(error.value)


def test_stored_only_keys_are_kept_and_do_not_change_the_layers() -> None:
    stored = {"scaling_factor": 0.13, "shift_factor": 0.05, "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4,
              "force_upcast": False, "sample_size": [64, 64], "_diffusers_version": "0.42.1"}
    native = NativeAutoencoderKL({**TINY_SD, **stored})
    assert {key: native.config[key] for key in stored} == stored
    assert list(native.state_dict()) == list(NativeAutoencoderKL(TINY_SD).state_dict())


def test_importing_the_module_imports_neither_diffusers_nor_transformers() -> None:
    code = ("import sys, gouache.nodes.native.vae; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers', 'scipy'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
