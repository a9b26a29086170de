"""Peak memory while loading a full-size SD 1.5 single file: gouache against diffusers' from_single_file.

Writes a random-weight SD 1.5 checkpoint (the shipped config's sizes, original layout) in fp16 and
fp32 to a scratch folder, then loads each in a fresh process and reports the peak resident set size
above what the process held before loading, next to the loaded model's own bytes:

    python bench/bench_load_memory.py [--scratch /tmp/gouache-bench] [--only gouache|diffusers]

About 6 GB of disk and, for diffusers on fp32, up to 8 GB of RAM. Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
torch.set_num_threads(2)
which, path, config, dtype = sys.argv[1:5]
if which == "diffusers":
    from diffusers import StableDiffusionPipeline
else:
    from gouache.nodes.loading import load_checkpoint
import gc; gc.collect()

def rss():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))

before = rss()
start = time.perf_counter()
if which == "diffusers":
    pipe = StableDiffusionPipeline.from_single_file(path, config=config, local_files_only=True, safety_checker=None,
                                                    requires_safety_checker=False)
    modules = [pipe.unet, pipe.vae, pipe.text_encoder]
else:
    loaded = load_checkpoint(path, dtype=getattr(torch, dtype))
    modules = [module for _, module in loaded.modules()]
# Read every weight once, as a first render does: weights still backed by the file's pages count from here.
with torch.no_grad():
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.sum()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
size = sum(t.numel() * t.element_size() for m in modules for t in list(m.parameters()) + list(m.buffers()))
print(json.dumps({"before": before, "peak": peak, "after": rss(), "model": size, "seconds": seconds,
                  "dtypes": sorted({str(p.dtype) for m in modules for p in m.parameters()})}))
"""


def write_checkpoints(scratch: Path) -> dict[str, Path]:
    """SD 1.5-sized random single files, fp16 and fp32, written once."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from gouache.nodes.families import SD1
    from gouache.nodes.loading import diffusers_to_original, shipped_config_dir

    paths = {dtype: scratch / f"sd15-random-{dtype}.safetensors" for dtype in ("fp16", "fp32")}
    if all(path.is_file() for path in paths.values()):
        return paths
    scratch.mkdir(parents=True, exist_ok=True)
    folder = shipped_config_dir(SD1)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    state_dict = diffusers_to_original(unet, vae, text, family=SD1)
    del unet, vae, text
    for dtype, torch_dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        save_file({k: v.to(torch_dtype).contiguous() for k, v in state_dict.items()}, str(paths[dtype]))
    return paths


def measure(which: str, path: Path, dtype: str) -> dict:
    from gouache.nodes.families import SD1
    from gouache.nodes.loading import shipped_config_dir

    done = subprocess.run([sys.executable, "-c", CHILD, which, str(path), str(shipped_config_dir(SD1)), dtype],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/gouache-bench"))
    parser.add_argument("--only", choices=("gouache", "diffusers"))
    args = parser.parse_args()
    paths = write_checkpoints(args.scratch)
    gib = 1024**3
    print("| loader | file | model dtype | file size (GiB) | loaded model (GiB) | peak RSS while loading (GiB) "
          "| peak / model | load (s) |")
    print("|---|---|---|---|---|---|---|---|")
    # gouache in the file's dtype, and an fp16 file as fp32 (what the CPU device plan asks for);
    # diffusers' from_single_file with no torch_dtype (its default).
    cases = [("gouache", "fp16", "float16"), ("gouache", "fp32", "float32"), ("gouache", "fp16", "float32"),
             ("diffusers", "fp16", "default"), ("diffusers", "fp32", "default")]
    for which, file, dtype in cases:
        if args.only and which != args.only:
            continue
        path = paths[file]
        found = measure(which, path, dtype)
        grown = found["peak"] - found["before"]
        print(f"| {which} | {file} | {','.join(d.removeprefix('torch.') for d in found['dtypes'])} "
              f"| {path.stat().st_size / gib:.2f} | {found['model'] / gib:.2f} | {grown / gib:.2f} "
              f"| {grown / found['model']:.2f} | {found['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
