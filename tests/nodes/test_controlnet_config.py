"""Original-layout ControlNet files without a config beside them: the config is read off the tensors'
shapes (SD 1.x and SDXL conventions), and the file gives the diffusers folder's result."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from safetensors.torch import save_file

from gouache.engine import Engine
from gouache.nodes.controlnet import load_controlnet, original_config
from gouache.nodes.loading.convert import unet_to_original

# Small channel counts in each family's conventions (32 normalisation groups; SD 1.x 8 heads, SDXL 64
# channels per head) at the family's real cross-attention width, which tells the family.
# The hint encoder keeps the real one's widths: diffusers reads its convolutions at fixed indices.
NETS = {
    "sd1": {"block_out_channels": (32, 64), "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "layers_per_block": 1, "attention_head_dim": 8, "cross_attention_dim": 768,
            "conditioning_embedding_out_channels": (16, 32, 96, 256)},
    "sdxl": {"block_out_channels": (64, 128), "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
             "layers_per_block": 1, "transformer_layers_per_block": (1, 2), "attention_head_dim": (1, 2),
             "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
             "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 6 * 256 + 1280,
             "conditioning_embedding_out_channels": (16, 32, 96, 256)},
}


def _original_layout(net: ControlNetModel) -> dict[str, torch.Tensor]:
    """``net`` as original ControlNet files hold it: the UNet's encoder half, zero convs and hint blocks under ``control_model.``."""
    config = {k: v for k, v in net.config.items() if not k.startswith("_") and k in UNet2DConditionModel._get_init_keys(
        UNet2DConditionModel)}
    config["up_block_types"] = [t.replace("Down", "Up") for t in reversed(net.config.down_block_types)]
    unet = UNet2DConditionModel(**config)
    weights = net.state_dict()
    unet.load_state_dict({**unet.state_dict(), **{k: v for k, v in weights.items() if k in unet.state_dict()}})
    tensors = {f"control_model.{k}": v for k, v in unet_to_original(unet).items()
               if k.startswith(("input_blocks", "middle_block", "time_embed", "label_emb"))}
    for i in range(len(net.controlnet_down_blocks)):
        for kind in ("weight", "bias"):
            tensors[f"control_model.zero_convs.{i}.0.{kind}"] = weights[f"controlnet_down_blocks.{i}.{kind}"]
    blocks = len(net.controlnet_cond_embedding.blocks)
    hint = {"conv_in": 0, "conv_out": 2 * (blocks + 1), **{f"blocks.{j}": 2 * (j + 1) for j in range(blocks)}}
    for kind in ("weight", "bias"):
        tensors[f"control_model.middle_block_out.0.{kind}"] = weights[f"controlnet_mid_block.{kind}"]
        for name, index in hint.items():
            tensors[f"control_model.input_hint_block.{index}.{kind}"] = weights[f"controlnet_cond_embedding.{name}.{kind}"]
    return {k: v.contiguous().clone() for k, v in tensors.items()}


@pytest.fixture(scope="module", params=sorted(NETS))
def net(request, tmp_path_factory):
    family = request.param
    root = tmp_path_factory.mktemp(f"cn_{family}")
    torch.manual_seed(3)
    model = ControlNetModel(**NETS[family])
    with torch.no_grad():  # the zero convolutions start at zero: jitter so every weight shows
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape))
    model.save_pretrained(root / "folder")
    save_file(_original_layout(model), str(root / "original.safetensors"))
    return family, root


def _same(a, b) -> bool:
    """Equal configs values, a list of one repeated value counting as that value (diffusers takes either)."""
    a, b = (list(x) if isinstance(x, (list, tuple)) else x for x in (a, b))
    if isinstance(a, list) != isinstance(b, list):
        many, one = (a, b) if isinstance(a, list) else (b, a)
        return all(x == one for x in many)
    return a == b


def _residuals(module: ControlNetModel, family: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    width = module.config.cross_attention_dim
    added = None
    if family == "sdxl":
        added = {"text_embeds": torch.randn(1, 1280, generator=generator),
                 "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    with torch.no_grad():
        down, mid = module(torch.randn(1, 4, 8, 8, generator=generator), 500,
                           torch.randn(1, 77, width, generator=generator),
                           torch.rand(1, 3, 64, 64, generator=generator), added_cond_kwargs=added, return_dict=False)
    return [*down, mid]


def test_the_config_read_off_the_shapes_is_the_folders(net):
    family, root = net
    config = ControlNetModel.from_config(original_config(root / "original.safetensors")).config
    folder = json.loads((root / "folder" / "config.json").read_text())
    for key in ("block_out_channels", "down_block_types", "layers_per_block", "attention_head_dim",
                "cross_attention_dim", "conditioning_embedding_out_channels", "conditioning_channels",
                "use_linear_projection", "transformer_layers_per_block", "addition_embed_type",
                "projection_class_embeddings_input_dim", "norm_num_groups"):
        assert _same(config.get(key), folder.get(key)), (key, config.get(key), folder.get(key))


def test_an_original_file_without_config_gives_the_folders_result_through_the_loader(net, tmp_path):
    family, root = net
    home = tmp_path / "home"
    folder = home / "models" / "controlnet"
    folder.mkdir(parents=True)
    (folder / f"{family}-original.safetensors").write_bytes((root / "original.safetensors").read_bytes())
    workflow = {"format": "gouache/1", "nodes": {"cn": {"type": "ControlNetLoader",
                                                        "inputs": {"name": f"{family}-original.safetensors"}}}}
    result = Engine(home=home).run(workflow, outputs=["cn"])
    assert result.ok, result.error
    ours = _residuals(result.outputs["cn"]["control_net"].module, family)
    expected = _residuals(load_controlnet(root / "folder"), family)
    assert max((a - b).abs().max().item() for a, b in zip(ours, expected)) <= 1e-5


def test_a_file_of_no_known_family_names_the_input(tmp_path):
    home = tmp_path / "home"
    folder = home / "models" / "controlnet"
    folder.mkdir(parents=True)
    save_file({"control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, 96),
               "control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)}, str(folder / "odd.safetensors"))
    result = Engine(home=home).run({"format": "gouache/1", "nodes": {"cn": {"type": "ControlNetLoader",
                                                                            "inputs": {"name": "odd.safetensors"}}}})
    assert (result.error.node, result.error.input, result.error.code) == ("cn", "name", "unreadable")
    assert "96-wide" in result.error.message
