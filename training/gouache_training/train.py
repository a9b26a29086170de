"""Reproduce every embedded-model artefact from a seed: `python -m gouache_training.train --seed 0`.

Run it from the repository root with `PYTHONPATH=training`. Stages run in order (vae, upscaler,
unet, place, lora, export); each resumes from its checkpoint under `--work` and skips itself when
its final output exists. `--stage` runs one stage; `--steps` and `--minutes` bound the training
stages that run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import WEIGHTS

STAGES = ("vae", "upscaler", "unet", "place", "lora", "export")
# Training time per stage on a 2-core CPU when no bound is given on the command line.
DEFAULT_MINUTES = {"vae": 23.0, "upscaler": 3.0, "unet": 60.0, "place": 15.0, "lora": 26.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=STAGES, action="append", help="run only this stage (repeatable)")
    p.add_argument("--steps", type=int, default=None, help="at most this many optimizer steps per stage")
    p.add_argument("--minutes", type=float, default=None, help="at most this much training time per stage")
    p.add_argument("--work", type=Path, default=Path(".train"), help="checkpoints and intermediate files")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="where artefacts go")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the requested stages."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = args.stage or list(STAGES)
    for stage in STAGES:
        if stage not in stages:
            continue
        minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES.get(stage)
        if args.steps is not None and args.minutes is None:
            minutes = None
        if stage == "vae":
            from .train_vae import train

            train(args.work, args.seed, args.steps, minutes)
        elif stage == "upscaler":
            from .train_upscaler import train

            train(args.work, args.out, args.seed, args.steps, minutes)
        elif stage == "unet":
            from .train_unet import train

            train(args.work, args.seed, args.steps, minutes)
        elif stage == "place":
            from .train_place import train

            train(args.work, args.seed, args.steps, minutes)
        elif stage == "lora":
            from .train_lora import train

            train(args.work, args.out, args.seed, args.steps, minutes)
        else:
            from .export import export

            export(args.work, args.out)


if __name__ == "__main__":
    main()
