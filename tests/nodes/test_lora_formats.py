"""LoRA-family files on toy modules: each layer kind equals its published formula, written out here
with plain torch ops on a 4x3 linear layer and a 3x2x3x3 convolution; every tensor lands somewhere
or the file is refused naming it; text-encoder names match transformers 4 and 5 modules alike."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from gouache.nodes.lora import patched, read_lora
from gouache.nodes.types import LoraPatch

G = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=G)


class Toy(nn.Module):
    """A 4x3 linear layer (with bias) and a 3x3 convolution from 2 to 3 channels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 4)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)


def _read(tmp_path: Path, tensors: dict[str, torch.Tensor], name: str = "x.safetensors", **metadata: str):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata or None)
    return read_lora(path)


def _patched_weights(lora, module: nn.Module, strength: float, component: str = "unet") -> dict[str, torch.Tensor]:
    """What ``patched()`` sets each parameter to, read inside the context; the module is restored after."""
    before = {name: (p.data_ptr(), p.detach().clone()) for name, p in module.named_parameters()}
    manager = types.SimpleNamespace(lora_by_key=lambda key: lora)
    with patched(manager, component, module, (LoraPatch("k", "x", strength),)):
        inside = {name: p.detach().clone() for name, p in module.named_parameters()}
    for name, p in module.named_parameters():  # the very tensors are back, unchanged
        assert p.data_ptr() == before[name][0] and torch.equal(p.detach(), before[name][1]), name
    return inside


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Kronecker product written out: block (i, j) is a[i, j] * b."""
    return torch.cat([torch.cat([a[i, j] * b for j in range(a.shape[1])], dim=1) for i in range(a.shape[0])], dim=0)


def test_lora_and_locon_equal_alpha_over_rank_times_up_down(tmp_path):
    toy = Toy()
    up, down = rand(4, 2), rand(2, 3)
    cup, cdown = rand(3, 2, 1, 1), rand(2, 2, 3, 3)
    lora = _read(tmp_path, {"lora_unet_lin.lora_up.weight": up, "lora_unet_lin.lora_down.weight": down,
                            "lora_unet_lin.alpha": torch.tensor(1.0),
                            "lora_unet_conv.lora_up.weight": cup, "lora_unet_conv.lora_down.weight": cdown})
    got = _patched_weights(lora, toy, 0.7)
    expected_lin = toy.lin.weight + 0.7 * (1.0 / 2) * (up @ down)
    expected_conv = toy.conv.weight + 0.7 * torch.einsum("or,rikl->oikl", cup[:, :, 0, 0], cdown)  # no alpha: 1
    torch.testing.assert_close(got["lin.weight"], expected_lin)
    torch.testing.assert_close(got["conv.weight"], expected_conv)
    torch.testing.assert_close(got["lin.bias"], toy.lin.bias)


def test_locon_with_a_tucker_core(tmp_path):
    toy = Toy()
    up, mid, down = rand(3, 2, 1, 1), rand(2, 2, 3, 3), rand(2, 2, 1, 1)
    lora = _read(tmp_path, {"lora_unet_conv.lora_up.weight": up, "lora_unet_conv.lora_mid.weight": mid,
                            "lora_unet_conv.lora_down.weight": down, "lora_unet_conv.alpha": torch.tensor(4.0)})
    expected = torch.zeros(3, 2, 3, 3)
    for o in range(3):
        for i in range(2):
            for a in range(2):
                for b in range(2):
                    expected[o, i] += up[o, a, 0, 0] * mid[a, b] * down[b, i, 0, 0]
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["conv.weight"], toy.conv.weight + (4.0 / 2) * expected)


def test_loha_is_the_hadamard_product_of_two_low_rank_products(tmp_path):
    toy = Toy()
    w1a, w1b, w2a, w2b = rand(4, 2), rand(2, 3), rand(4, 2), rand(2, 3)
    c1a, c1b, c2a, c2b, t1, t2 = rand(2, 3), rand(2, 2), rand(2, 3), rand(2, 2), rand(2, 2, 3, 3), rand(2, 2, 3, 3)
    lora = _read(tmp_path, {
        "lora_unet_lin.hada_w1_a": w1a, "lora_unet_lin.hada_w1_b": w1b, "lora_unet_lin.hada_w2_a": w2a,
        "lora_unet_lin.hada_w2_b": w2b, "lora_unet_lin.alpha": torch.tensor(1.0),
        # CP decomposition on the convolution: w1a/w2a are [rank, out], w1b/w2b [rank, in].
        "lora_unet_conv.hada_w1_a": c1a, "lora_unet_conv.hada_w1_b": c1b, "lora_unet_conv.hada_w2_a": c2a,
        "lora_unet_conv.hada_w2_b": c2b, "lora_unet_conv.hada_t1": t1, "lora_unet_conv.hada_t2": t2,
        "lora_unet_conv.alpha": torch.tensor(2.0)})
    got = _patched_weights(lora, toy, 0.5)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + 0.5 * 0.5 * (w1a @ w1b) * (w2a @ w2b))
    first = torch.einsum("ijkl,ip,jq->pqkl", t1, c1a, c1b)
    second = torch.einsum("ijkl,ip,jq->pqkl", t2, c2a, c2b)
    torch.testing.assert_close(got["conv.weight"], toy.conv.weight + 0.5 * 1.0 * first * second)


def test_lokr_is_a_kronecker_product(tmp_path):
    toy = Toy()
    # 4x3 = kron([2,1], [2,3]) with w2 split into a rank-2 pair: scale alpha / 2.
    w1, w2a, w2b = rand(2, 1), rand(2, 2), rand(2, 3)
    # 3x2x3x3 = kron([1,2], [3,1,3,3]) with both whole: alpha is ignored (scale 1).
    c1, c2 = rand(1, 2), rand(3, 1, 3, 3)
    lora = _read(tmp_path, {"lora_unet_lin.lokr_w1": w1, "lora_unet_lin.lokr_w2_a": w2a,
                            "lora_unet_lin.lokr_w2_b": w2b, "lora_unet_lin.alpha": torch.tensor(3.0),
                            "lora_unet_conv.lokr_w1": c1, "lora_unet_conv.lokr_w2": c2,
                            "lora_unet_conv.alpha": torch.tensor(7.0)})
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + 1.5 * _kron(w1, w2a @ w2b))
    expected = torch.zeros(3, 2, 3, 3)
    for c in range(3):
        for b in range(2):
            expected[c, b] = c1[0, b] * c2[c, 0]
    torch.testing.assert_close(got["conv.weight"], toy.conv.weight + expected)


def test_lokr_with_both_factors_split(tmp_path):
    toy = Toy()
    w1a, w1b, w2a, w2b = rand(2, 1), rand(1, 1), rand(2, 1), rand(1, 3)
    lora = _read(tmp_path, {"lora_unet_lin.lokr_w1_a": w1a, "lora_unet_lin.lokr_w1_b": w1b,
                            "lora_unet_lin.lokr_w2_a": w2a, "lora_unet_lin.lokr_w2_b": w2b,
                            "lora_unet_lin.alpha": torch.tensor(0.5)})
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + 0.5 * _kron(w1a @ w1b, w2a @ w2b))


@pytest.mark.parametrize("axis", ["output", "output-peft", "input"])
def test_dora_rescales_each_channel_of_the_patched_weight(tmp_path, axis):
    toy = Toy()
    up, down = rand(4, 2), rand(2, 3)
    if axis == "input":
        magnitude = rand(1, 3).abs() + 1  # older LyCORIS: one per input column
    else:
        magnitude = rand(4).abs() + 1 if axis == "output-peft" else rand(4, 1).abs() + 1
    if axis == "output-peft":
        tensors = {"unet.lin.lora_B.weight": up, "unet.lin.lora_A.weight": down,
                   "unet.lin.lora_magnitude_vector": magnitude}
    else:
        tensors = {"lora_unet_lin.lora_up.weight": up, "lora_unet_lin.lora_down.weight": down,
                   "lora_unet_lin.alpha": torch.tensor(1.0), "lora_unet_lin.dora_scale": magnitude}
    scale = 1.0 if axis == "output-peft" else 0.5
    lora = _read(tmp_path, tensors)
    weight = toy.lin.weight.detach()
    direction = weight + scale * (up @ down)
    if axis == "input":
        norm = torch.sqrt((direction**2).sum(dim=0, keepdim=True))  # [1, 3]: down each column
        decomposed = direction / norm * magnitude
    else:
        norm = torch.sqrt((direction**2).sum(dim=1, keepdim=True))  # [4, 1]: along each row
        decomposed = direction / norm * magnitude.reshape(4, 1)
    for strength in (1.0, 0.4):
        got = _patched_weights(lora, toy, strength)
        torch.testing.assert_close(got["lin.weight"], weight + strength * (decomposed - weight))


def test_dora_on_a_convolution_is_per_output_channel(tmp_path):
    toy = Toy()
    up, down, magnitude = rand(3, 2, 1, 1), rand(2, 2, 3, 3), rand(3, 1, 1, 1).abs() + 1
    lora = _read(tmp_path, {"lora_unet_conv.lora_up.weight": up, "lora_unet_conv.lora_down.weight": down,
                            "lora_unet_conv.dora_scale": magnitude})
    weight = toy.conv.weight.detach()
    direction = weight + torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
    norm = torch.sqrt((direction**2).sum(dim=(1, 2, 3), keepdim=True))
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["conv.weight"], direction / norm * magnitude)


def test_full_differences_patch_weight_and_bias(tmp_path):
    toy = Toy()
    diff, diff_b = rand(4, 3), rand(4)
    lora = _read(tmp_path, {"diffusion_model.lin.diff": diff, "diffusion_model.lin.diff_b": diff_b})
    got = _patched_weights(lora, toy, 0.5)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + 0.5 * diff)
    torch.testing.assert_close(got["lin.bias"], toy.lin.bias + 0.5 * diff_b)


def test_a_bias_difference_beside_lora_factors(tmp_path):
    toy = Toy()
    up, down, diff_b = rand(4, 2), rand(2, 3), rand(4)
    lora = _read(tmp_path, {"lora_unet_lin.lora_up.weight": up, "lora_unet_lin.lora_down.weight": down,
                            "lora_unet_lin.alpha": torch.tensor(2.0), "lora_unet_lin.diff_b": diff_b})
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + up @ down)
    torch.testing.assert_close(got["lin.bias"], toy.lin.bias + diff_b)


def test_a_file_mixing_loha_and_lora_layers_applies_both(tmp_path):
    toy = Toy()
    up, down = rand(3, 2, 1, 1), rand(2, 2, 3, 3)
    w1a, w1b, w2a, w2b = rand(4, 1), rand(1, 3), rand(4, 1), rand(1, 3)
    lora = _read(tmp_path, {"lora_unet_conv.lora_up.weight": up, "lora_unet_conv.lora_down.weight": down,
                            "lora_unet_lin.hada_w1_a": w1a, "lora_unet_lin.hada_w1_b": w1b,
                            "lora_unet_lin.hada_w2_a": w2a, "lora_unet_lin.hada_w2_b": w2b})
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + (w1a @ w1b) * (w2a @ w2b))
    torch.testing.assert_close(got["conv.weight"],
                               toy.conv.weight + torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down))


def test_peft_lora_alpha_from_diffusers_metadata(tmp_path):
    import json

    toy = Toy()
    up, down = rand(4, 2), rand(2, 3)
    lora = _read(tmp_path, {"unet.lin.lora_B.weight": up, "unet.lin.lora_A.weight": down},
                 lora_adapter_metadata=json.dumps({"unet.r": 2, "unet.lora_alpha": 8}))
    got = _patched_weights(lora, toy, 1.0)
    torch.testing.assert_close(got["lin.weight"], toy.lin.weight + 4.0 * (up @ down))


@pytest.mark.parametrize(("tensors", "said"), [
    ({"lora_unet_lin.lora_up.weight": rand(4, 2)}, "incomplete layers (first: lora_unet_lin)"),
    ({"lora_unet_lin.alpha": torch.tensor(1.0), "lora_unet_conv.diff": rand(3, 2, 3, 3)}, "incomplete layers"),
    ({"lora_unet_lin.hada_w1_a": rand(4, 1), "lora_unet_lin.hada_w1_b": rand(1, 3)}, "incomplete layers"),
    ({"lora_unet_lin.oft_blocks": rand(1, 2, 2), "lora_unet_conv.diff": rand(3, 2, 3, 3)}, "OFT tensors"),
    ({"lora_unet_lin.lora_up.weight": rand(4, 2), "lora_unet_lin.lora_down.weight": rand(2, 3),
      "lora_unet_lin.scalar": torch.tensor(1.0)}, "lora_unet_lin.scalar"),
    ({"bundle_emb.cat.string_to_param.*": rand(1, 8), "lora_unet_conv.diff": rand(3, 2, 3, 3)}, "bundle_emb.cat"),
    ({"lora_unet_lin.lora_up.weight": rand(4, 2), "lora_unet_lin.lora_down.weight": rand(2, 3),
      "lora_unet_lin.hada_w1_a": rand(4, 1), "lora_unet_lin.hada_w1_b": rand(1, 3),
      "lora_unet_lin.hada_w2_a": rand(4, 1), "lora_unet_lin.hada_w2_b": rand(1, 3)}, "in two kinds at once"),
    ({"lora_prior_unet_lin.lora_up.weight": rand(4, 2), "lora_prior_unet_lin.lora_down.weight": rand(2, 3)},
     "model part gouache does not patch (first: lora_prior_unet_lin)"),
    ({"lora_unet_lin.lora_up.weight": rand(4, 2), "lora_unet_lin.lora_down.weight": rand(2, 3),
      "lora_unet_lin.diff": rand(4, 3)}, "in two kinds at once"),
], ids=["no-down", "alpha-alone", "half-loha", "oft", "unknown-part", "bundled-embedding", "lora-and-loha", "prefix",
        "lora-and-diff"])
def test_a_tensor_that_lands_nowhere_is_refused_by_name(tmp_path, tensors, said):
    with pytest.raises(ValueError) as error:
        _read(tmp_path, tensors)
    assert said in str(error.value)


def test_a_layer_that_matches_nothing_or_does_not_fit_is_refused_by_name(tmp_path):
    toy = Toy()
    lora = _read(tmp_path, {"lora_unet_nowhere.lora_up.weight": rand(4, 2),
                            "lora_unet_nowhere.lora_down.weight": rand(2, 3),
                            "lora_unet_lin.lora_up.weight": rand(4, 2), "lora_unet_lin.lora_down.weight": rand(2, 3)})
    with pytest.raises(ValueError, match=r"1 of 2 unet layers match nothing in this model \(first: nowhere\)"):
        lora.resolve("unet", toy)
    misfit = _read(tmp_path, {"lora_unet_lin.lora_up.weight": rand(5, 2), "lora_unet_lin.lora_down.weight": rand(2, 3)},
                   name="misfit.safetensors")
    with pytest.raises(ValueError, match=r"lin: its update is \[5, 3\] but the model's weight is \[4, 3\]"):
        misfit.resolve("unet", toy)
    with pytest.raises(ValueError, match="patches unet, which this model does not have"):
        misfit.check([("transformer", toy)])


def _tiny_clip():
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=2,
                            pad_token_id=1)
    torch.manual_seed(0)
    return CLIPTextModel(config)


class Transformers4Clip(nn.Module):
    """The module tree transformers 4's ``CLIPTextModel`` had: everything under ``text_model``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.text_model = inner


@pytest.mark.parametrize("keys", ["kohya", "peft", "comfyui", "old-diffusers"])
def test_text_encoder_names_match_transformers_4_and_5_modules(tmp_path, keys):
    clip = _tiny_clip()
    names = [name for name, _ in clip.named_modules()]
    flat_v5 = "text_model." not in " ".join(names)  # transformers 5 dropped the level; 4 had it
    up, down = rand(8, 2), rand(2, 8)
    module = "text_model.encoder.layers.1.self_attn.q_proj"
    key = {"kohya": f"lora_te_{module.replace('.', '_')}", "peft": f"text_encoder.{module}",
           "comfyui": f"text_encoders.clip_l.transformer.{module}",
           "old-diffusers": f"text_encoder.{module.replace('q_proj', 'to_q')}"}[keys]
    suffixes = {"peft": ("lora_B.weight", "lora_A.weight"),
                "old-diffusers": ("_lora.up.weight", "_lora.down.weight")}.get(keys, ("lora_up.weight", "lora_down.weight"))
    joint = "" if keys == "old-diffusers" else "."  # diffusers' old names: self_attn.to_q_lora.up.weight
    lora = _read(tmp_path, {f"{key}{joint}{suffixes[0]}": up, f"{key}{joint}{suffixes[1]}": down})
    as_v5 = clip.text_model if not flat_v5 else clip  # the tree without the text_model level
    as_v4 = Transformers4Clip(as_v5)
    assert set(lora.resolve("text_encoder", as_v5)) == {"encoder.layers.1.self_attn.q_proj.weight"}
    assert set(lora.resolve("text_encoder", as_v4)) == {"text_model.encoder.layers.1.self_attn.q_proj.weight"}
    got_v5 = _patched_weights(lora, as_v5, 1.0, "text_encoder")["encoder.layers.1.self_attn.q_proj.weight"]
    got_v4 = _patched_weights(lora, as_v4, 1.0, "text_encoder")["text_model.encoder.layers.1.self_attn.q_proj.weight"]
    torch.testing.assert_close(got_v5, got_v4)
    torch.testing.assert_close(got_v5, as_v5.encoder.layers[1].self_attn.q_proj.weight + up @ down)


def _header(tensors: dict[str, list[int]]) -> dict:
    return {key: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]} for key, shape in tensors.items()}


@pytest.mark.parametrize(("tensors", "expected"), [
    ({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 768],
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": [320, 4],
      "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": [4, 768],
      "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": [768, 4]},
     {"format": "kohya", "kinds": ["lora"], "parts": ["unet", "text_encoder"], "family": "sd1"}),
    ({"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.lora_A.weight": [4, 2048],
      "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.lora_B.weight": [640, 4]},
     {"format": "peft", "kinds": ["lora"], "parts": ["unet"], "family": "sdxl"}),
    ({"diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.lora_down.weight": [4, 1024],
      "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.lora_up.weight": [320, 4],
      "text_encoders.clip_h.transformer.text_model.encoder.layers.0.self_attn.q_proj.lora_down.weight": [4, 1024],
      "text_encoders.clip_h.transformer.text_model.encoder.layers.0.self_attn.q_proj.lora_up.weight": [1024, 4]},
     {"format": "comfyui", "kinds": ["lora"], "parts": ["unet", "text_encoder"], "family": "sd2"}),
    ({"lora_unet_input_blocks_4_0_in_layers_2.hada_w1_a": [640, 4], "lora_unet_input_blocks_4_0_in_layers_2.hada_w1_b":
      [4, 2880], "lora_unet_input_blocks_4_0_in_layers_2.hada_w2_a": [640, 4],
      "lora_unet_input_blocks_4_0_in_layers_2.hada_w2_b": [4, 2880],
      "lora_unet_input_blocks_4_0_in_layers_2.alpha": [],
      "lora_unet_mid_block_resnets_0_conv1.lora_down.weight": [4, 1280, 3, 3],
      "lora_unet_mid_block_resnets_0_conv1.lora_up.weight": [1280, 4, 1, 1],
      "lora_te2_text_model_encoder_layers_0_mlp_fc1.lokr_w1": [8, 8],
      "lora_te2_text_model_encoder_layers_0_mlp_fc1.lokr_w2": [640, 160]},
     {"format": "lycoris-loha+lycoris-lokr", "kinds": ["locon", "loha", "lokr"],
      "parts": ["unet", "text_encoder_2"], "family": "sdxl"}),
    ({"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": [4, 1280],
      "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": [1280, 4],
      "lora_unet_mid_block_attentions_0_proj_in.dora_scale": [1280, 1]},
     {"format": "dora", "kinds": ["dora", "lora"], "parts": ["unet"], "family": "sd1/sd2"}),
], ids=["kohya-sd1", "peft-sdxl", "comfyui-sd2", "lycoris-sdxl", "dora"])
def test_gouache_models_describes_a_lora_from_its_header(tmp_path, tensors, expected):
    import json
    import struct

    from gouache.nodes.folders import describe_lora

    header = json.dumps(_header(tensors)).encode()
    path = tmp_path / "lora.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)  # a header alone: describing reads nothing else
    described = describe_lora(path)
    assert {key: described[key] for key in expected} == expected


def test_a_file_gouache_cannot_apply_is_listed_with_the_reason(tmp_path):
    from gouache.nodes.folders import describe_lora

    path = tmp_path / "oft.safetensors"
    save_file({"lora_unet_x.oft_blocks": rand(1, 2, 2)}, str(path))
    described = describe_lora(path)
    assert described["format"] == "unknown" and "OFT" in described["problem"]
