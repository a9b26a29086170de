"""gouache's native UNet computes what diffusers' ``UNet2DConditionModel`` computes, with its names.

diffusers is the reference: each case builds its model from a config with seeded random weights, loads
them into ``NativeUNet`` strictly and compares the outputs in fp32.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from gouache.nodes.native import UnsupportedConfig
from gouache.nodes.native.unet import UNET_DEFAULTS, NativeUNet

NODES = Path(__file__).resolve().parents[2] / "nodes"
TINY_DIR = NODES / "embedded" / "weights" / "gouache-tiny" / "unet"
TOLERANCE = 1e-5


def _stored(path: Path, **overrides: Any) -> dict[str, Any]:
    return {**json.loads(path.read_text()), **overrides}


TINY = _stored(TINY_DIR / "config.json")
SD1 = _stored(NODES / "configs" / "sd1" / "unet" / "config.json", block_out_channels=[32, 64],
              down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
              up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=32, norm_num_groups=8,
              sample_size=8)
SD2 = _stored(NODES / "configs" / "sd2" / "unet" / "config.json", block_out_channels=[32, 64],
              down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
              up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], attention_head_dim=[2, 4],
              transformer_layers_per_block=[1, 2], layers_per_block=1, cross_attention_dim=48, norm_num_groups=8,
              sample_size=8)
# The less common knobs at once: heads that do not divide the width, per-block lists, no sin/cos flip, a
# frequency shift, asymmetric downsampling padding, a mid-block scale, other conv kernels, dropout (off in eval).
KNOBS = {**SD1, "attention_head_dim": 3, "layers_per_block": [1, 2], "cross_attention_dim": [32, 32],
         "flip_sin_to_cos": False, "freq_shift": 1, "downsample_padding": 0, "mid_block_scale_factor": 1.5,
         "conv_in_kernel": 5, "conv_out_kernel": 1, "dropout": 0.1, "norm_eps": 1e-6}
INPAINT = {**SD1, "in_channels": 9}
CONFIGS = {"tiny": TINY, "sd1": SD1, "sd2": SD2, "knobs": KNOBS, "inpaint": INPAINT}


def _pair(config: dict[str, Any], seed: int = 0) -> tuple[UNet2DConditionModel, NativeUNet]:
    torch.manual_seed(seed)
    reference = UNet2DConditionModel.from_config(config).eval()
    native = NativeUNet(config)
    native.load_state_dict(reference.state_dict(), strict=True)
    return reference, native


def _inputs(config: dict[str, Any], batch: int = 2, size: tuple[int, int] = (16, 16), seed: int = 1
            ) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    context = config["cross_attention_dim"]
    width = context if isinstance(context, int) else context[0]
    return (torch.randn(batch, config["in_channels"], *size, generator=generator),
            torch.randn(batch, 7, width, generator=generator))


def _difference(reference: torch.nn.Module, native: torch.nn.Module, *args: Any, **kwargs: Any) -> float:
    with torch.no_grad():
        expected = reference(*args, **kwargs).sample
        found = native(*args, **kwargs).sample
    assert found.shape == expected.shape and found.dtype == expected.dtype
    return (found - expected).abs().max().item()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_outputs_match_diffusers(name: str) -> None:
    config = CONFIGS[name]
    reference, native = _pair(config)
    sample, context = _inputs(config)
    difference = _difference(reference, native, sample, 500, context)
    assert difference <= TOLERANCE, f"{name}: max abs difference {difference:.3g}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_state_dict_keys_and_submodules(name: str) -> None:
    torch.manual_seed(0)
    reference = UNet2DConditionModel.from_config(CONFIGS[name])
    native = NativeUNet(CONFIGS[name])
    assert list(native.state_dict()) == list(reference.state_dict())
    shapes = {key: value.shape for key, value in reference.state_dict().items()}
    assert {key: value.shape for key, value in native.state_dict().items()} == shapes
    assert [n for n, _ in native.named_modules()] == [n for n, _ in reference.named_modules()]


def test_shipped_weights_match_diffusers() -> None:
    weights = {key: value.float() for key, value in load_file(TINY_DIR / "diffusion_pytorch_model.safetensors").items()}
    reference, _ = _pair(TINY)
    reference.load_state_dict(weights, strict=True)
    with torch.device("meta"):  # as gouache's loader builds it: no memory until the weights are assigned
        native = NativeUNet(TINY)
    native.load_state_dict(weights, strict=True, assign=True)
    sample, context = _inputs(TINY)
    for timestep in (999, 1):
        difference = _difference(reference, native, sample, timestep, context)
        assert difference <= TOLERANCE, f"t={timestep}: max abs difference {difference:.3g}"


def test_odd_latent_size_matches_diffusers() -> None:
    """Sides not divisible by 2**upsamplers: each upsampler takes its skip's size, as diffusers does."""
    for config in (TINY, KNOBS):
        reference, native = _pair(config)
        sample, context = _inputs(config, size=(9, 11))
        difference = _difference(reference, native, sample, 250, context)
        assert difference <= TOLERANCE, f"max abs difference {difference:.3g}"


def _skip_shapes(config: dict[str, Any], batch: int, height: int, width: int) -> list[tuple[int, ...]]:
    """The shapes of the down path's skips (what a ControlNet's down residuals match)."""
    channels = config["block_out_channels"]
    layers = config["layers_per_block"]
    shapes = [(batch, channels[0], height, width)]
    for i, c in enumerate(channels):
        scale = 2 ** i
        shapes += [(batch, c, height // scale, width // scale)] * (layers if isinstance(layers, int) else layers[i])
        if i < len(channels) - 1:
            shapes.append((batch, c, height // (2 * scale), width // (2 * scale)))
    return shapes


@pytest.mark.parametrize("name", ["tiny", "sd2"])
def test_controlnet_residuals_match_diffusers(name: str) -> None:
    config = CONFIGS[name]
    reference, native = _pair(config)
    sample, context = _inputs(config)
    generator = torch.Generator().manual_seed(2)
    down = [torch.randn(shape, generator=generator) for shape in _skip_shapes(config, 2, 16, 16)]
    scale = 2 ** (len(config["block_out_channels"]) - 1)
    mid = torch.randn(2, config["block_out_channels"][-1], 16 // scale, 16 // scale, generator=generator)
    controlled = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
    difference = _difference(reference, native, sample, 300, context, **controlled)
    assert difference <= TOLERANCE, f"max abs difference {difference:.3g}"
    with torch.no_grad():  # the residuals change the result: they are used, not dropped
        plain = native(sample, 300, context).sample
        assert (native(sample, 300, context, **controlled).sample - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="skip connections"):
        native(sample, 300, context, down_block_additional_residuals=down[:-1], mid_block_additional_residual=mid)
    with pytest.raises(ValueError, match="together"):
        native(sample, 300, context, down_block_additional_residuals=down)


@pytest.mark.parametrize("timestep", [torch.tensor([500]), torch.tensor(500), torch.tensor(500.0), 500, 500.0,
                                      torch.tensor([20, 900])], ids=["1-element", "0-d", "0-d float", "int", "float",
                                                                     "per sample"])
def test_timestep_forms_match_diffusers(timestep: Any) -> None:
    reference, native = _pair(SD1)
    sample, context = _inputs(SD1, batch=2)
    difference = _difference(reference, native, sample, timestep, context)
    assert difference <= TOLERANCE, f"max abs difference {difference:.3g}"


def test_one_timestep_is_broadcast_over_the_batch() -> None:
    _, native = _pair(SD1)
    sample, context = _inputs(SD1, batch=2)
    with torch.no_grad():
        together = native(sample, torch.tensor([500]), context).sample
        alone = native(sample[1:], 500, context[1:]).sample
    assert (together[1:] - alone).abs().max() <= TOLERANCE


def test_interface() -> None:
    _, native = _pair(SD1)
    sample, context = _inputs(SD1)
    with torch.no_grad():
        output = native(sample, 10, context, return_dict=False, cross_attention_kwargs={}, added_cond_kwargs={},
                        timestep_cond=None)
        assert isinstance(output, tuple) and len(output) == 1
        assert torch.equal(output[0], native(sample, 10, context).sample)
    assert native.dtype == torch.float32 and native.device == torch.device("cpu")
    assert native.config.in_channels == 4 and native.config.time_cond_proj_dim is None
    assert native.config["_class_name"] == "UNet2DConditionModel"
    with pytest.raises(AttributeError):
        native.config.in_channels = 9  # type: ignore[misc]
    assert native.to(torch.float16).dtype == torch.float16


@pytest.mark.parametrize("name, value", [
    ("class_labels", torch.zeros(2, dtype=torch.long)), ("timestep_cond", torch.zeros(2, 8)),
    ("attention_mask", torch.ones(2, 7)), ("encoder_attention_mask", torch.ones(2, 7)),
    ("down_intrablock_additional_residuals", [torch.zeros(1)]), ("cross_attention_kwargs", {"scale": 0.5}),
    ("added_cond_kwargs", {"text_embeds": torch.zeros(2, 8)}),
])
def test_unsupported_arguments_are_refused(name: str, value: Any) -> None:
    _, native = _pair(SD1)
    sample, context = _inputs(SD1)
    with pytest.raises(ValueError, match=name):
        native(sample, 10, context, **{name: value})


def test_every_layer_runs_as_a_module() -> None:
    """Interrupt hooks and LoRA patches see each weight-bearing layer: every one is called as a module."""
    for config in (SD1, SD2):
        _, native = _pair(config)
        called: set[str] = set()
        layers = {name: layer for name, layer in native.named_modules()
                  if any(True for _ in layer.parameters(recurse=False))}
        for name, layer in layers.items():
            layer.register_forward_pre_hook(lambda *_, name=name: called.add(name))
        sample, context = _inputs(config)
        with torch.no_grad():
            native(sample, 10, context)
        assert called == set(layers)


@pytest.mark.parametrize("name", ["tiny", "sd2"])
def test_half_precision_matches_diffusers(name: str) -> None:
    """fp16 too gives diffusers' numbers (SD 2.x's upcast_attention included: see the next test)."""
    config = CONFIGS[name]
    reference, native = _pair(config)
    sample, context = _inputs(config)
    difference = _difference(reference.half(), native.half(), sample.half(), 500, context.half())
    assert difference <= 1e-3, f"max abs difference {difference:.3g}"


def test_attention_scores_beyond_half_range_stay_finite() -> None:
    """What upcast_attention asks for: half-precision inputs whose scores overflow fp16 attend as in fp32."""
    from gouache.nodes.native.unet import Attention

    torch.manual_seed(0)
    attention = Attention(16, None, 2, 8)
    with torch.no_grad():
        for layer in (attention.to_q, attention.to_k):
            layer.weight.mul_(400)
        x = torch.randn(1, 64, 16)
        expected = attention(x)
        q, k = (layer(x).view(1, 64, 2, 8).transpose(1, 2) for layer in (attention.to_q, attention.to_k))
        scores = q @ k.transpose(-1, -2) / 8 ** 0.5
        assert scores.abs().max() > torch.finfo(torch.float16).max  # the case the flag exists for
        found = attention.half()(x.half())
    assert torch.isfinite(found).all()
    assert (found.float() - expected).abs().max() < 0.05


REFUSED: list[tuple[str, Any]] = [
    ("mid_block_type", "UNetMidBlock2DSimpleCrossAttn"), ("mid_block_type", None), ("act_fn", "gelu"),
    ("center_input_sample", True), ("num_attention_heads", 8), ("only_cross_attention", True),
    ("only_cross_attention", [True, False]), ("mid_block_only_cross_attention", True),
    ("dual_cross_attention", True), ("reverse_transformer_layers_per_block", [[1], [1, 1]]),
    ("encoder_hid_dim", 32), ("encoder_hid_dim_type", "text_proj"), ("class_embed_type", "timestep"),
    ("num_class_embeds", 10), ("projection_class_embeddings_input_dim", 8), ("class_embeddings_concat", True),
    ("addition_embed_type", "text_time"), ("addition_time_embed_dim", 256), ("addition_embed_type_num_heads", 8),
    ("resnet_time_scale_shift", "scale_shift"), ("resnet_skip_time_act", True), ("resnet_out_scale_factor", 2.0),
    ("time_embedding_type", "fourier"), ("time_embedding_dim", 64), ("time_embedding_act_fn", "silu"),
    ("timestep_post_act", "silu"), ("time_cond_proj_dim", 32), ("attention_type", "gated"),
    ("cross_attention_norm", "layer_norm"), ("down_block_types", ["AttnDownBlock2D", "DownBlock2D"]),
    ("up_block_types", ["UpBlock2D", "SimpleCrossAttnUpBlock2D"]), ("up_block_types", ["UpBlock2D"]),
    ("block_out_channels", [32]), ("norm_num_groups", None), ("attention_head_dim", [8]),
    ("attention_head_dim", None), ("transformer_layers_per_block", [[1, 2], 1]), ("layers_per_block", [1, 2, 3]),
    ("cross_attention_dim", None), ("conv_in_kernel", 4), ("downsample_padding", -1),
]


@pytest.mark.parametrize("key, value", REFUSED, ids=[f"{k}={v!r}" for k, v in REFUSED])
def test_unsupported_config_is_refused(key: str, value: Any) -> None:
    with pytest.raises(UnsupportedConfig, match=rf"UNet config {key}="):
        NativeUNet({**SD1, key: value})


IMPLEMENTED = {
    "sample_size", "in_channels", "out_channels", "flip_sin_to_cos", "freq_shift", "down_block_types",
    "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels", "layers_per_block",
    "downsample_padding", "mid_block_scale_factor", "dropout", "act_fn", "norm_num_groups", "norm_eps",
    "cross_attention_dim", "transformer_layers_per_block", "attention_head_dim", "use_linear_projection",
    "upcast_attention", "conv_in_kernel", "conv_out_kernel", "mid_block_only_cross_attention",
}


def test_every_diffusers_parameter_is_implemented_or_refused() -> None:
    """A parameter diffusers adds later fails here until the native UNet implements or refuses it."""
    parameters = {name: p.default for name, p in inspect.signature(UNet2DConditionModel.__init__).parameters.items()
                  if name != "self"}
    assert set(parameters) == set(UNET_DEFAULTS)
    for name, default in parameters.items():
        ours = UNET_DEFAULTS[name]
        assert (list(default) if isinstance(default, tuple) else default) == ours, name
        assert name in IMPLEMENTED or name in {key for key, _ in REFUSED}, f"{name} is neither implemented nor refused"
    with torch.device("meta"):  # diffusers' defaults themselves (SD 1.x's shape) are accepted; no memory spent
        NativeUNet({})


def test_import_needs_neither_diffusers_nor_transformers() -> None:
    script = ("import sys, gouache.nodes.native.unet; "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers', 'scipy'}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
