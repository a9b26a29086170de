"""ControlNet for SD 1.x/2.x/SDXL: load one, attach it to conditioning, and compute its residuals.

``ControlNetApply`` attaches a :class:`~gouache.nodes.types.Control` to every entry of both
conditionings; the sampler then runs each control's net every step inside its range and adds the
residuals to the UNet's skip connections, as diffusers' ``StableDiffusion(XL)ControlNetPipeline``
does (the control image in RGB 0..1, resized to the latent's pixel size, batched with the CFG batch;
a control acts at step ``i`` of ``n`` unless ``i/n < start`` or ``(i+1)/n > end``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gouache.engine import CachePolicy, Input, InputError, Node, Output
from gouache.nodes.support import fingerprint_of, resolve
from gouache.nodes.types import Conditioning, Control, ControlNetHandle

FAMILY_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}


def _family(width: int) -> str:
    return FAMILY_WIDTHS.get(width, f"a {width}-wide text embedding")


CONTROL_PREFIX = "control_model."
"""Where original-layout ControlNet files keep their tensors (the UNet's encoder half plus the hint blocks)."""


def load_controlnet(path: Path) -> Any:
    """A diffusers ``ControlNetModel`` from a diffusers folder, or from a single file: with its diffusers config
    as a ``.json`` of the same name beside it (original or diffusers layout), or, in original layout, with the
    config read off its tensors' shapes (:func:`original_config`); nothing is downloaded."""
    import json

    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    from safetensors.torch import load_file

    if path.is_dir():
        return ControlNetModel.from_pretrained(str(path), local_files_only=True).eval()
    beside = path.with_suffix(".json")
    config = json.loads(beside.read_text(encoding="utf-8")) if beside.is_file() else original_config(path)
    state = load_file(str(path))
    weights = convert_controlnet_checkpoint(state, config)  # diffusers' key mapping; a diffusers-layout file passes
    # diffusers' mapping leaves out SDXL's size/pooled-text embedding (label_emb.0.0 and .0.2 in original files).
    for index, linear in ((0, 1), (2, 2)):
        for kind in ("weight", "bias"):
            key = f"{CONTROL_PREFIX}label_emb.0.{index}.{kind}"
            if key in state:
                weights[f"add_embedding.linear_{linear}.{kind}"] = state[key]
    model = ControlNetModel.from_config(config)
    model.load_state_dict(weights, strict=True)  # a tensor missing or left over is an error, not a random weight
    return model.eval()


def original_config(path: Path) -> dict[str, Any]:
    """The diffusers ``ControlNetModel`` config of an original-layout file (``control_model.*``), from names and
    shapes only: channels, blocks per level, which levels attend, transformer depth, projection kind and
    cross-attention width (so the family: SD 1.x 768, SD 2.x 1024, SDXL 2048) as a checkpoint's UNet is read
    (``gouache.nodes.loading.sizes``), the hint encoder's channels from its convolutions; what shapes cannot
    show (normalisation groups, attention heads) follows the family's shipped UNet config."""
    import json
    from types import SimpleNamespace

    from diffusers import ControlNetModel

    from gouache.nodes.families import FAMILIES, UNET_PREFIX
    from gouache.nodes.folders import safetensors_header
    from gouache.nodes.loading import shipped_config_dir
    from gouache.nodes.loading.sizes import unet_sizes

    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise ValueError(f"{path.name}: a ControlNet file without a config beside it must be a .safetensors file "
                         f"in original layout; put its diffusers config beside it as {path.with_suffix('.json').name}")
    header = safetensors_header(path)
    shapes = {key[len(CONTROL_PREFIX):]: SimpleNamespace(shape=tuple(entry["shape"]))
              for key, entry in header.items() if key.startswith(CONTROL_PREFIX)}
    if not shapes:
        raise ValueError(f"{path.name}: not an original-layout ControlNet (no {CONTROL_PREFIX}* tensors) and no "
                         f"config beside it; put its diffusers config beside it as {path.with_suffix('.json').name}")
    unet = {UNET_PREFIX + key: value for key, value in shapes.items()}
    # A ControlNet has no output half; its sizes are the encoder's. out_channels is not a ControlNet setting.
    unet[f"{UNET_PREFIX}out.2.weight"] = SimpleNamespace(shape=(4,))
    width = None
    for key, value in shapes.items():
        if key.endswith("attn2.to_k.weight"):
            width = value.shape[1]
            break
    family = next((f for f in FAMILIES.values() if f.context_width == width and f.sampling != "flow"), None)
    if family is None:
        raise ValueError(f"{path.name}: its cross-attention reads {width}-wide text embeddings, which is no SD 1.x "
                         "(768), SD 2.x (1024) or SDXL (2048) ControlNet; put its diffusers config beside it as "
                         f"{path.with_suffix('.json').name}")
    shipped = json.loads((shipped_config_dir(family) / "unet" / "config.json").read_text(encoding="utf-8"))
    sizes = unet_sizes(unet, family, shipped)
    hint = sorted((int(key.split(".")[1]), value.shape) for key, value in shapes.items()
                  if key.startswith("input_hint_block.") and key.endswith(".weight"))
    if len(hint) < 2 or len(hint[0][1]) != 4:
        raise ValueError(f"{path.name}: its control image encoder ({CONTROL_PREFIX}input_hint_block) is missing or "
                         f"incomplete; put its diffusers config beside it as {path.with_suffix('.json').name}")
    # conv_in, then a pair per level (same width, then strided to the next), then conv_out to the UNet's width.
    widths = [shape[0] for _, shape in hint]
    accepted = set(_init_parameters(ControlNetModel))
    config = {key: value for key, value in {**shipped, **sizes}.items() if key in accepted}
    config.update(conditioning_channels=hint[0][1][1], conditioning_embedding_out_channels=widths[:-1:2])
    return {"_class_name": "ControlNetModel", **config}


def _init_parameters(cls: type) -> list[str]:
    """The keyword arguments ``cls.__init__`` takes (a diffusers model's config keys)."""
    import inspect

    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]


class ControlNetLoader(Node):
    """Load a ControlNet (SD 1.x/2.x/SDXL) from the controlnet folders (ComfyUI's "Load ControlNet Model")."""

    type_name = "ControlNetLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("name", "COMBO", choices_from="controlnet", link="widget",
                    description="A diffusers ControlNet folder, an original-layout .safetensors file, or a "
                                "file with its config .json beside it.")]
    outputs = [Output("control_net", "CONTROL_NET")]

    def fingerprint(self, ctx, name):
        return fingerprint_of(resolve(ctx, "controlnet", name).path)

    def run(self, ctx, name):
        path = resolve(ctx, "controlnet", name).path
        try:
            module = load_controlnet(path)
        except (OSError, ValueError, RuntimeError) as error:
            raise InputError("name", str(error), "unreadable") from None
        return {"control_net": ControlNetHandle(module, name)}


class ControlNetApply(Node):
    """Steer sampling with a ControlNet and a control image, on both conditionings
    (ComfyUI's "Apply ControlNet" / ``ControlNetApplyAdvanced``). Apply again to stack ControlNets."""

    type_name = "ControlNetApply"
    category = "conditioning"
    inputs = [Input("positive", "CONDITIONING"), Input("negative", "CONDITIONING"),
              Input("control_net", "CONTROL_NET"),
              Input("image", "IMAGE", description="The control image (an edge map, a pose, a depth map...)."),
              Input("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01,
                    description="Scales the ControlNet's residuals; 0 leaves sampling as without it."),
              Input("start_percent", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.001,
                    description="The fraction of the steps after which it starts acting."),
              Input("end_percent", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.001,
                    description="The fraction of the steps after which it stops.")]
    outputs = [Output("positive", "CONDITIONING"), Output("negative", "CONDITIONING")]

    def check(self, values):
        start, end = values.get("start_percent", 0.0), values.get("end_percent", 1.0)
        if isinstance(start, (int, float)) and isinstance(end, (int, float)) and start > end:
            return [InputError("start_percent", f"{start:g} is after end_percent ({end:g})", "out_of_order")]
        return []

    def run(self, ctx, positive, negative, control_net, image, strength, start_percent, end_percent):
        problems = self.check({"start_percent": start_percent, "end_percent": end_percent})
        if problems:
            raise problems[0]
        shape = getattr(image, "shape", None)
        if shape is None or len(shape) != 4 or shape[-1] not in (1, 3, 4):
            raise InputError("image", f"expected an IMAGE tensor [B,H,W,C], got {shape}", "wrong_shape")
        for name, cond in (("positive", positive), ("negative", negative)):
            width = int(cond.embeds.shape[-1])
            if width != control_net.cross_attention_dim:
                raise InputError("control_net", f"this ControlNet is for {_family(control_net.cross_attention_dim)} "
                                                f"models and the {name} conditioning comes from "
                                                f"{_family(width)}: load a ControlNet of the model's family",
                                 "wrong_family")
        control = Control(control_net, image, float(strength), float(start_percent), float(end_percent))

        def attach(cond: Conditioning) -> Conditioning:
            return cond.map_entries(lambda entry: replace(entry, controls=(*entry.controls, control)))

        return {"positive": attach(positive), "negative": attach(negative)}


def control_image(image: Any, batch: int, height: int, width: int, device: Any, dtype: Any) -> Any:
    """An IMAGE as diffusers' ``prepare_image`` feeds it: [batch,3,height,width] RGB in 0..1."""
    import torch

    pixels = image[..., :3] if image.shape[-1] >= 3 else image[..., :1].expand(*image.shape[:-1], 3)
    pixels = pixels.permute(0, 3, 1, 2).to(torch.float32)
    if tuple(pixels.shape[-2:]) != (height, width):
        pixels = torch.nn.functional.interpolate(pixels, size=(height, width), mode="nearest-exact")
    if pixels.shape[0] != batch:
        pixels = pixels.repeat((batch + pixels.shape[0] - 1) // pixels.shape[0], 1, 1, 1)[:batch]
    return pixels.to(device=device, dtype=dtype)


def residuals(controls: tuple[Control, ...], sample: Any, t: Any, hidden: Any, added: Any, step: int, count: int,
              height: int, width: int, images: dict) -> tuple[Any, Any] | None:
    """The summed down/mid residuals of the ``controls`` active at step ``step`` of ``count``; ``None``: none."""
    down = mid = None
    for control in controls:
        if step / count < control.start or (step + 1) / count > control.end:
            continue
        net = control.net.module
        if net.device != sample.device or net.dtype != sample.dtype:
            net.to(device=sample.device, dtype=sample.dtype)
        key = (id(control), sample.shape[0])
        if key not in images:
            images[key] = control_image(control.image, sample.shape[0], height, width, sample.device, sample.dtype)
        kwargs = {"added_cond_kwargs": added} if added is not None else {}
        d, m = net(sample, t, encoder_hidden_states=hidden, controlnet_cond=images[key],
                   conditioning_scale=control.strength, return_dict=False, **kwargs)
        if down is None:
            down, mid = list(d), m
        else:
            down, mid = [a + b for a, b in zip(down, d)], mid + m
    return None if down is None else (down, mid)


CONTROLNET_NODES = [ControlNetLoader, ControlNetApply]
