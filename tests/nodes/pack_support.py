"""Shared set-up for the node-pack tests: a gouache home holding tiny fixture models, LoRAs, an upscaler.

Test modules import the fixtures they use from here (``from pack_support import ...``). Shipped
workflows run as they ship, on the embedded ``gouache-tiny`` model and its LoRA and upscaler.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import fixture_pack
import pytest
import torch
from safetensors.torch import save_file

from gouache.engine import Engine
from gouache.nodes.loading import load_checkpoint

# The tiny models gain nothing from a second thread, and on a busy machine (CI runners, a training
# job alongside) OpenMP threads waiting on each other at every op make each step many times slower.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
PROMPT = "a large red circle on a blue background"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "q_proj", "v_proj")


def file_module_name(component: str, name: str) -> str:
    """A module's path as real LoRA files write it: CLIP paths keep ``text_model.``, which transformers 5's
    ``CLIPTextModel`` no longer has (``CLIPTextModelWithProjection`` and transformers 4 do)."""
    if component.startswith("text_encoder") and not name.startswith(("text_model.", "text_projection")):
        return f"text_model.{name}"
    return name


def build_lora(folder: Path, target: Path, fmt: str, *, seed: int, rank: int = 2, scale: float = 0.3,
               text_encoder: bool = True) -> Path:
    """A random LoRA for the model in ``folder``, in ``kohya`` or ``diffusers`` (peft) layout."""
    loaded = load_checkpoint(folder)
    generator = torch.Generator().manual_seed(seed)
    modules = loaded.components()
    parts = [("unet", modules["unet"])]
    if text_encoder:
        parts += [("text_encoder", modules["text_encoder"]), ("text_encoder_2", modules.get("text_encoder_2"))]
    sdxl = modules.get("text_encoder_2") is not None
    kohya_prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if sdxl else "lora_te_",
                    "text_encoder_2": "lora_te2_"}
    tensors: dict[str, torch.Tensor] = {}
    for component, module in parts:
        if module is None:
            continue
        for name, sub in module.named_modules():
            if not (isinstance(sub, torch.nn.Linear) and name.endswith(LORA_TARGETS)):
                continue
            out_features, in_features = sub.weight.shape
            name = file_module_name(component, name)
            down = torch.randn(rank, in_features, generator=generator) * scale
            up = torch.randn(out_features, rank, generator=generator) * scale
            if fmt == "kohya":
                key = kohya_prefix[component] + name.replace(".", "_")
                tensors[f"{key}.lora_down.weight"] = down
                tensors[f"{key}.lora_up.weight"] = up
                tensors[f"{key}.alpha"] = torch.tensor(rank / 2)
            else:
                tensors[f"{component}.{name}.lora_A.weight"] = down
                tensors[f"{component}.{name}.lora_B.weight"] = up
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target))
    return target


def build_embeddings(folder: Path) -> dict[str, Path]:
    """Textual-inversion files in each format, for the tiny models' widths (CLIP-L 8, SDXL's second 16)."""
    generator = torch.Generator().manual_seed(21)

    def vectors(count: int, width: int) -> torch.Tensor:
        return torch.randn(count, width, generator=generator) * 0.05

    folder.mkdir(parents=True, exist_ok=True)
    files = {"a1111": folder / "tiny-a1111.pt", "emb_params": folder / "tiny-emb.safetensors",
             "sdxl": folder / "tiny-sdxl-pair.safetensors", "odd": folder / "odd-width.safetensors"}
    # As A1111 saves them: the vectors as a parameter, beside plain bookkeeping values.
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.nn.Parameter(vectors(2, 8))},
                "name": "tiny-a1111", "step": 500, "sd_checkpoint": "0123abcd", "sd_checkpoint_name": "tiny"},
               str(files["a1111"]))
    save_file({"emb_params": vectors(3, 8)}, str(files["emb_params"]))
    save_file({"clip_l": vectors(2, 8), "clip_g": vectors(2, 16)}, str(files["sdxl"]))
    save_file({"emb_params": vectors(1, 5)}, str(files["odd"]))
    return files


def build_upscaler(target: Path, *, scale: int = 2, seed: int = 0) -> Path:
    """A tiny random Compact (SRVGGNetCompact) upscaler that spandrel recognises from its keys."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=scale, act_type="prelu")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))
    return target


@pytest.fixture(scope="session")
def gouache_home(tmp_path_factory: pytest.TempPathFactory, tiny_sd1, tiny_sd2, tiny_sdxl) -> Path:
    """A GOUACHE_HOME with tiny-sd1/sd2/sdxl checkpoints, kohya and diffusers LoRAs, embeddings, an upscaler."""
    home = tmp_path_factory.mktemp("gouache_home")
    checkpoints = home / "models" / "checkpoints"
    for model in (tiny_sd1, tiny_sd2, tiny_sdxl):
        shutil.copytree(model.folder, checkpoints / f"tiny-{model.family}")
    loras = home / "models" / "loras"
    build_lora(tiny_sd1.folder, loras / "tiny-kohya.safetensors", "kohya", seed=11)
    build_lora(tiny_sd1.folder, loras / "tiny-diffusers.safetensors", "diffusers", seed=12)
    build_lora(tiny_sdxl.folder, loras / "tiny-sdxl-kohya.safetensors", "kohya", seed=13)
    build_upscaler(home / "models" / "upscale_models" / "tiny-2x.safetensors")
    build_embeddings(home / "models" / "embeddings")
    (home / "input").mkdir()  # empty: LoadImage finds the shipped example.png without a copy here
    return home


@pytest.fixture
def engine(gouache_home: Path) -> Engine:
    """A fresh engine (its own cache and model manager) on the fixture home."""
    return Engine(home=gouache_home, packs={"fixtures": fixture_pack})


@pytest.fixture(scope="session")
def shared_engine(gouache_home: Path) -> Engine:
    """One engine for tests that only need outputs, so models load once per session."""
    return Engine(home=gouache_home, packs={"fixtures": fixture_pack})


def text_to_image(checkpoint: str = "tiny-sd1", *, size: int = 64, steps: int = 4, seed: int = 42,
                  cfg: float = 3.0, sampler: str = "euler", scheduler: str = "normal",
                  prompt: str = PROMPT, negative: str = "") -> dict:
    """The text-to-image workflow as a dict, aimed at a fixture checkpoint and made small."""
    import json

    workflow = json.loads((WORKFLOWS / "text-to-image.json").read_text())
    nodes = workflow["nodes"]
    nodes["checkpoint"]["inputs"]["name"] = checkpoint
    nodes["positive"]["inputs"]["text"] = prompt
    nodes["negative"]["inputs"]["text"] = negative
    nodes["latent"]["inputs"].update(width=size, height=size)
    nodes["sampler"]["inputs"].update(steps=steps, seed=seed, cfg=cfg, sampler_name=sampler, scheduler=scheduler)
    return workflow


def run_interrupted_at(engine, workflow: dict, node: str, outputs: list[str]):
    """Run ``workflow``, asking the engine to stop as soon as ``node`` starts; return the result."""

    def interrupt_when_it_starts(event):
        if event.type == "node_started" and event.data["node"] == node:
            engine.interrupt()

    unsubscribe = engine.subscribe(interrupt_when_it_starts)
    try:
        return engine.run(workflow, outputs=outputs)
    finally:
        unsubscribe()
