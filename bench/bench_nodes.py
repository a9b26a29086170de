"""Text-to-image through the gouache engine vs diffusers' pipeline called directly, side by side.

Both run the same loaded modules (the pipeline is built around the engine's own UNet, VAE, text
encoder and tokenizer), the same prompt, negative prompt, seed, steps, CFG, size and Euler
scheduler, interleaved so background load hits both alike; the median of ``--repeats`` runs is
reported; which of the two goes first alternates from one repeat to the next. Three figures:

* full run: the engine with an empty output cache (encodes both prompts, samples, decodes) vs one
  ``pipeline(...)`` call with ``output_type="np"`` (which does the same work);
* seed-only re-run: the engine with only the seed changed (loader and prompts come from the cache);
* CPU seconds (``time.process_time``) beside wall seconds: on a shared machine the wall clock
  swings with other load, CPU time much less;
* peak memory: the process's peak resident set size (``resource.getrusage``) after each phase.

Usage::

    .venv/bin/python bench/bench_nodes.py [--checkpoint NAME] [--home DIR] [--steps 20] [--size 128]

Without ``--checkpoint`` it uses the embedded ``gouache-tiny``, which ships with gouache, in a
temporary home. On a busy machine pass ``--threads 1``: OpenMP threads contending for cores make
wall times swing several-fold.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a large red circle on a blue background"
NEGATIVE = ""
REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**2


def _workflow(checkpoint: str, size: int, steps: int, cfg: float, seed: int) -> dict:
    import json

    workflow = json.loads((REPO / "workflows" / "text-to-image.json").read_text())
    nodes = workflow["nodes"]
    nodes["checkpoint"]["inputs"]["name"] = checkpoint
    nodes["positive"]["inputs"]["text"] = PROMPT
    nodes["negative"]["inputs"]["text"] = NEGATIVE
    nodes["latent"]["inputs"].update(width=size, height=size)
    nodes["sampler"]["inputs"].update(seed=seed, steps=steps, cfg=cfg, sampler_name="euler", scheduler="normal")
    return workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint name as the engine lists it (default: gouache-tiny)")
    parser.add_argument("--home", help="GOUACHE_HOME for --checkpoint")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from gouache.engine import Engine
    from gouache.nodes.model_manager import RESOURCE_KEY

    if args.threads:
        torch.set_num_threads(args.threads)

    home, checkpoint = (Path(args.home) if args.home else None), args.checkpoint
    if checkpoint is None:
        checkpoint = "gouache-tiny"
        home = home or Path(tempfile.mkdtemp(prefix="gouache-bench-"))
    engine = Engine(home=home)
    baseline_rss = peak_rss_mib()

    # Load once through the engine; the pipeline is built around the very same modules.
    warm = engine.run(_workflow(checkpoint, args.size, args.steps, args.cfg, 0), outputs=["decode"])
    if not warm.ok:
        raise SystemExit(f"engine run failed: {warm.error}")
    manager = engine.resources.get(RESOURCE_KEY, lambda: None)
    loaded = manager.checkpoints()[0].loaded
    parts = dict(**loaded.components(),
                 scheduler=EulerDiscreteScheduler.from_config(loaded.scheduler_config))
    if loaded.family.name == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    scale = 8 // pipe.vae_scale_factor  # the engine's latents are size/8; tiny VAEs upsample less than 8x
    pixel_side = args.size // scale

    def run_diffusers(seed: int) -> np.ndarray:
        with torch.no_grad():
            return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=args.steps,
                        guidance_scale=args.cfg, height=pixel_side, width=pixel_side,
                        generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images

    def run_engine(seed: int, clear: bool) -> object:
        if clear:
            engine.cache.clear()
        result = engine.run(_workflow(checkpoint, args.size, args.steps, args.cfg, seed), outputs=["decode"])
        assert result.ok, result.error
        return result

    run_diffusers(0)  # warm-up
    engine_full, diffusers_full, engine_seed = [], [], []
    engine_cpu, diffusers_cpu, seed_cpu = [], [], []

    def timed(wall: list[float], cpu: list[float], call, *call_args):
        started, started_cpu = time.perf_counter(), time.process_time()
        value = call(*call_args)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        return value

    for repeat in range(args.repeats):
        seed = 1000 + repeat
        # Alternate which side goes first, so a slow first (or second) slot hits both alike.
        if repeat % 2 == 0:
            result = timed(engine_full, engine_cpu, run_engine, seed, True)
            expected = timed(diffusers_full, diffusers_cpu, run_diffusers, seed)
        else:
            expected = timed(diffusers_full, diffusers_cpu, run_diffusers, seed)
            result = timed(engine_full, engine_cpu, run_engine, seed, True)
        ours = result.outputs["decode"]["image"].numpy()
        difference = float(np.abs(ours - expected).max())
        rerun = timed(engine_seed, seed_cpu, run_engine, seed + 500, False)
        assert rerun.executed == ["sampler", "decode"], rerun.executed
    peak = peak_rss_mib()

    e, d, s = (statistics.median(x) for x in (engine_full, diffusers_full, engine_seed))
    e_min, d_min, s_min = (min(x) for x in (engine_full, diffusers_full, engine_seed))
    print(f"checkpoint: {checkpoint} ({loaded.family.name}), {args.size}x{args.size}, euler/normal, {args.steps} steps, "
          f"cfg {args.cfg}, {args.repeats} repeats, torch threads {torch.get_num_threads()}, "
          f"device {manager.plan.device}")
    print()
    print("| measure | gouache engine | diffusers pipeline | ratio engine/diffusers |")
    print("|---|---|---|---|")
    print(f"| text-to-image, full run, median s | {e:.3f} | {d:.3f} | {e / d:.3f} |")
    print(f"| text-to-image, full run, best s | {e_min:.3f} | {d_min:.3f} | {e_min / d_min:.3f} |")
    print(f"| re-run, only the seed changed, median s | {s:.3f} | {d:.3f} | {s / d:.3f} |")
    print(f"| re-run, only the seed changed, best s | {s_min:.3f} | {d_min:.3f} | {s_min / d_min:.3f} |")
    # Each repeat's engine and diffusers runs sit side by side, so their ratio shares that moment's load.
    paired = sorted(a / b for a, b in zip(engine_full, diffusers_full))
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
    print(f"| text-to-image, full run, median of per-repeat ratios (quartiles) | | | {quartiles[1]:.3f} "
          f"({quartiles[0]:.3f}-{quartiles[2]:.3f}) |")
    ec, dc, sc = (statistics.median(x) for x in (engine_cpu, diffusers_cpu, seed_cpu))
    print(f"| text-to-image, full run, median CPU s | {ec:.3f} | {dc:.3f} | {ec / dc:.3f} |")
    print(f"| re-run, only the seed changed, median CPU s | {sc:.3f} | {dc:.3f} | {sc / dc:.3f} |")
    print(f"| max abs difference of decoded images | {difference:.2e} | | |")
    print(f"| peak RSS, MiB (after engine set-up / overall) | {baseline_rss:.0f} / {peak:.0f} | | |")
    print()
    print(f"engine runs: {', '.join(f'{x:.3f}' for x in engine_full)}")
    print(f"diffusers runs: {', '.join(f'{x:.3f}' for x in diffusers_full)}")
    print(f"seed-only re-runs: {', '.join(f'{x:.3f}' for x in engine_seed)}")


if __name__ == "__main__":
    main()
