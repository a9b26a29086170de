"""Stage 6: write the shipped forms of the trained model (fp16) and check they agree.

`weights/gouache-tiny/` is a diffusers folder `StableDiffusionPipeline.from_pretrained` loads
offline; `weights/gouache-tiny.safetensors` holds the same weights in the original Stable
Diffusion single-file layout, converted by gouache's own `gouache.nodes.loading.diffusers_to_original`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from gouache.nodes.loading import diffusers_to_original

from .loop import Run, log
from .pipeline import build_pipeline
from .train_place import final_dir

FOLDER = "gouache-tiny"
SINGLE_FILE = "gouache-tiny.safetensors"


def load_trained(work: Path) -> StableDiffusionPipeline:
    """The trained components from `.train/` as a float32 pipeline."""
    base = final_dir(work)
    return build_pipeline(
        AutoencoderKL.from_pretrained(work / "vae" / "final"),
        CLIPTextModel.from_pretrained(base / "text_encoder"),
        CLIPTokenizer.from_pretrained(work / "tokenizer"),
        UNet2DConditionModel.from_pretrained(base / "unet"),
    )


def load_folder(folder: Path) -> StableDiffusionPipeline:
    """A shipped diffusers folder, offline, in float32."""
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, torch_dtype=torch.float32, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_single_file(path: Path, folder: Path) -> StableDiffusionPipeline:
    """The single-file checkpoint, with configs and tokenizer taken from the shipped folder."""
    pipe = StableDiffusionPipeline.from_single_file(
        str(path), config=str(folder), local_files_only=True, torch_dtype=torch.float32,
        safety_checker=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def export(run: Run) -> tuple[Path, Path]:
    """Write the diffusers folder and the single file from `run.work` to `run.out`, then verify both load and agree."""
    work, out = run.work, Path(run.out)
    logfile = work / "export.log"
    folder, single = out / FOLDER, out / SINGLE_FILE
    pipe = load_trained(work)
    pipe.to(torch.float16)
    if folder.exists():
        shutil.rmtree(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    # CLIP's own file format too, for tools that read vocab.json/merges.txt rather than tokenizer.json.
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(work / "tokenizer" / name, folder / "tokenizer" / name)
    state = diffusers_to_original(pipe.unet, pipe.vae, pipe.text_encoder, family="sd1")
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}, str(single))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) + single.stat().st_size
    log(logfile, f"export: wrote {folder} and {single}, {size / 1e6:.2f} MB together")

    diff = float(np.abs(float_images(load_folder(folder)) - float_images(load_single_file(single, folder))).max())
    log(logfile, f"export: folder vs single file, max pixel difference {diff:.2e}")
    if diff > 1e-4:
        raise RuntimeError(f"single file and folder disagree by {diff}")
    return folder, single


@torch.no_grad()
def float_images(pipe: StableDiffusionPipeline) -> np.ndarray:
    """Two fixed renders in [0, 1] floats, for comparing two loads of the same weights."""
    gens = [torch.Generator("cpu").manual_seed(s) for s in (0, 1)]
    prompts = ["a red circle on a blue background", "a small yellow star on a black background"]
    return pipe(prompt=prompts, generator=gens, num_inference_steps=20, guidance_scale=3.0, output_type="np").images
