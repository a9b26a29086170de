"""Reproduce every embedded-model artefact from a seed: `python -m gouache_training.train --seed 0`.

Run it from the repository root with `PYTHONPATH=training`. Stages run in order (vae, upscaler,
unet, place, lora, export, controlnet); each is a configuration of the one loop in `loop.py`, resumes from its
checkpoint under `--work` and skips itself when its final output exists. `--stage` runs one stage;
`--steps` and `--minutes` bound the training stages that run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from . import WEIGHTS, export, train_controlnet, train_lora, train_place, train_unet, train_upscaler, train_vae
from .loop import CHECKPOINT_MINUTES, Run


STAGES: dict[str, Callable[[Run], object]] = {
    "vae": train_vae.train,
    "upscaler": train_upscaler.train,
    "unet": train_unet.train,
    "place": train_place.train,
    "lora": train_lora.train,
    "export": export.export,
    "controlnet": train_controlnet.train,
}
# Training time per stage when no bound is given on the command line (what made the shipped model).
DEFAULT_MINUTES = {"vae": 23.0, "upscaler": 3.0, "unet": 60.0, "place": 15.0, "lora": 26.0, "controlnet": 72.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=list(STAGES), action="append", help="run only this stage (repeatable)")
    p.add_argument("--steps", type=int, default=None, help="at most this many optimizer steps per stage")
    p.add_argument("--minutes", type=float, default=None, help="at most this much training time per stage")
    p.add_argument("--work", type=Path, default=Path(".train"), help="checkpoints and intermediate files")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="where artefacts go")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--checkpoint-minutes", type=float, default=CHECKPOINT_MINUTES, help="save a checkpoint this often")
    p.add_argument("--checkpoint-steps", type=int, default=None, help="and every this many steps")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the requested stages."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = args.stage or list(STAGES)
    run = Run(args.work, args.out, args.seed, args.steps, args.minutes, args.checkpoint_minutes, args.checkpoint_steps)
    for stage, train in STAGES.items():
        if stage not in stages:
            continue
        minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES.get(stage)
        if args.steps is not None and args.minutes is None:
            minutes = None
        train(replace(run, minutes=minutes))


if __name__ == "__main__":
    main()
