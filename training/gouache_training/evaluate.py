"""Quality figures of the embedded model: `python -m gouache_training.evaluate [--folder F]`.

Renders prompts for held-out and seen colour/shape/background triples (cfg 3, 20 Euler steps)
and reads each image back with the checker. A render is "fully right" when shape colour,
background colour and shape class all match; sizes and positions are scored on separate prompts.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from . import WEIGHTS, checker, data
from .pipeline import GUIDANCE, STEPS, generate

SHIPPED = WEIGHTS / "gouache-tiny"


@dataclass(frozen=True)
class Case:
    """One prompt to render with one seed, and the scene it asks for."""

    scene: data.Scene
    seed: int

    @property
    def prompt(self) -> str:
        """The evaluation phrasing of the scene."""
        return data.canonical_caption(self.scene)


def held_out_cases(seeds: int) -> list[Case]:
    """Every held-out triple, plain size and centred, with `seeds` seeds each."""
    rng = np.random.default_rng(0)
    return [Case(data.make_scene(rng, t, None, None), 1000 + s) for s in range(seeds) for t in data.HELD_OUT]


def seen_cases(count: int) -> list[Case]:
    """`count` fixed training triples, one seed each."""
    rng = np.random.default_rng(1)
    picks = rng.choice(len(data.TRAIN_TRIPLES), size=count, replace=False)
    return [Case(data.make_scene(rng, data.TRAIN_TRIPLES[int(i)], None, None), 2000 + k) for k, i in enumerate(picks)]


def attribute_cases(count: int) -> list[Case]:
    """Seen triples asked small or large, or placed left/right/top/bottom."""
    rng = np.random.default_rng(2)
    variants = [("small", None), ("large", None)] + [(None, p) for p in data.POSITIONS[1:]]
    cases = []
    for k in range(count):
        size, pos = variants[k % len(variants)]
        triple = data.TRAIN_TRIPLES[int(rng.integers(len(data.TRAIN_TRIPLES)))]
        cases.append(Case(data.make_scene(rng, triple, size, pos), 3000 + k))
    return cases


def position_cases(count: int) -> list[Case]:
    """Seen triples placed left, right, top and bottom in turn, unsized or small.

    Only prompts that name a position, so the share of right positions is not padded by size
    prompts the way the "attributes" group's is.
    """
    rng = np.random.default_rng(3500)
    cases = []
    for k in range(count):
        position, size = data.POSITIONS[1 + k % 4], (None, "small")[(k // 4) % 2]
        triple = data.TRAIN_TRIPLES[int(rng.integers(len(data.TRAIN_TRIPLES)))]
        cases.append(Case(data.make_scene(rng, triple, size, position), 3500 + k))
    return cases


def held_out_placed_cases(seeds: int) -> list[Case]:
    """Every held-out triple placed left, right, top and bottom, unsized, with `seeds` (at most 10) seeds each."""
    if seeds > 10:
        raise ValueError(f"held-out placed prompts have at most 10 seeds each, not {seeds}")
    rng = np.random.default_rng(4000)
    return [
        Case(data.make_scene(rng, triple, None, position), 4000 + 10 * i + s)
        for i, triple in enumerate(data.HELD_OUT)
        for position in data.POSITIONS[1:]
        for s in range(seeds)
    ]


def large_placed_cases(count: int) -> list[Case]:
    """Seen triples asked large and placed: a combination the training data never has."""
    rng = np.random.default_rng(4100)
    cases = []
    for k in range(count):
        triple = data.TRAIN_TRIPLES[int(rng.integers(len(data.TRAIN_TRIPLES)))]
        cases.append(Case(data.make_scene(rng, triple, "large", data.POSITIONS[1 + k % 4]), 4100 + k))
    return cases


def score(readings: list[checker.Reading], cases: list[Case]) -> dict[str, float]:
    """Shares of renders whose colour, background, shape, all three, size and position are right."""
    pairs = list(zip(readings, cases))

    def share(ok) -> float:
        return float(np.mean([ok(r, c.scene) for r, c in pairs])) if pairs else 0.0

    return {
        "fully_right": share(checker.fully_right),
        "colour": share(lambda r, s: r.colour == s.colour),
        "background": share(lambda r, s: r.background == s.background),
        "shape": share(lambda r, s: r.shape == s.shape),
        "size": share(lambda r, s: r.size == s.size),
        "position": share(lambda r, s: r.position == s.position),
    }


def evaluate(
    pipe: StableDiffusionPipeline,
    held_out_seeds: int = 3,
    seen: int = 24,
    attributes: int = 12,
    positions: int = 0,
    held_out_placed_seeds: int = 0,
    large_placed: int = 0,
) -> dict[str, dict[str, float]]:
    """Figures for held-out triples, seen triples, size/position prompts, placed prompts, held-out
    triples placed, and large placed shapes (untrained); a group with no cases is left out."""
    results = {}
    for name, cases in (
        ("held_out", held_out_cases(held_out_seeds)),
        ("seen", seen_cases(seen)),
        ("attributes", attribute_cases(attributes)),
        ("positions", position_cases(positions)),
        ("held_out_placed", held_out_placed_cases(held_out_placed_seeds)),
        ("large_placed", large_placed_cases(large_placed)),
    ):
        if not cases:
            continue
        images = generate(pipe, [c.prompt for c in cases], [c.seed for c in cases])
        results[name] = score([checker.read(im) for im in images], cases)
        results[name]["renders"] = len(cases)
    return results


def lora_figures(pipe: StableDiffusionPipeline, lora: Path, count: int = 12) -> dict[str, float]:
    """How hollow shapes come out at LoRA strength 1, and whether strength 0 equals the base model."""
    cases = seen_cases(count)
    prompts, seeds = [c.prompt for c in cases], [c.seed for c in cases]
    base = generate(pipe, prompts, seeds)
    pipe.load_lora_weights(str(lora), adapter_name="outline")
    try:
        off = generate(pipe, prompts, seeds, cross_attention_kwargs={"scale": 0.0})
        on = generate(pipe, prompts, seeds, cross_attention_kwargs={"scale": 1.0})
    finally:
        pipe.unload_lora_weights()
    hollow = [checker.hollowness(plain, styled) for plain, styled in zip(base, on)]
    at_one = [checker.read(im) for im in on]
    return {
        "inside_shows_background_at_1": float(np.mean(hollow)),
        "hollow_share_at_1": float(np.mean([h > 0.5 for h in hollow])),
        "backgrounds_right_at_1": float(np.mean([r.background == c.scene.background for r, c in zip(at_one, cases)])),
        "inside_shows_background_at_0": float(np.mean([checker.hollowness(p, p) for p in off])),
        "strength_0_equals_base": float(all(np.array_equal(a, b) for a, b in zip(base, off))),
    }


CONTROL_TOLERANCE = 8.0  # pixels between the render's and the control image's shape centroids


@dataclass(frozen=True)
class ControlCase(Case):
    """A held-out triple at a free position: the prompt names colours and shape (no position word reaches a
    free position), the silhouette says where."""

    @property
    def control(self) -> np.ndarray:
        """The silhouette as a (128, 128, 3) uint8 RGB control image."""
        return np.repeat(data.silhouette(self.scene)[..., None], 3, axis=-1)


def control_cases(count: int) -> list[ControlCase]:
    """Held-out triples in turn, every size, centred anywhere (`data.place_anywhere`), one seed each."""
    rng = np.random.default_rng(5000)
    cases = []
    for k in range(count):
        triple, size = data.HELD_OUT[k % len(data.HELD_OUT)], data.SIZES[(k // len(data.HELD_OUT)) % len(data.SIZES)]
        cases.append(ControlCase(data.place_anywhere(rng, data.make_scene(rng, triple, size, None)), 5000 + k))
    return cases


def expressible(x: float, y: float) -> bool:
    """Whether a prompt alone could ask for a shape centred at (x, y): centred or at one of the four
    position words' spots (26 px off centre), within the checker's tolerance."""
    spots = [(64.0, 64.0), (38.0, 64.0), (90.0, 64.0), (64.0, 38.0), (64.0, 90.0)]
    return any(np.hypot(x - sx, y - sy) <= CONTROL_TOLERANCE for sx, sy in spots)


@torch.no_grad()
def generate_controlled(pipe, cases: list[ControlCase], batch: int = 12, **kwargs) -> list[np.ndarray]:
    """Render each case with a `StableDiffusionControlNetPipeline` (cfg 3, 20 steps, the control on both halves)."""
    from PIL import Image

    images: list[np.ndarray] = []
    for i in range(0, len(cases), batch):
        chunk = cases[i : i + batch]
        out = pipe(
            prompt=[c.prompt for c in chunk],
            image=[Image.fromarray(c.control) for c in chunk],
            generator=[torch.Generator("cpu").manual_seed(c.seed) for c in chunk],
            num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=128, width=128, output_type="np", **kwargs,
        ).images
        images += [np.clip(np.rint(im * 255), 0, 255).astype(np.uint8) for im in out]
    return images


def control_hits(images: list[np.ndarray], cases: list[ControlCase]) -> list[dict]:
    """Per render: the centroid distance to the control's, whether the shape is placed (within
    `CONTROL_TOLERANCE` and the right class), the colours, and whether a prompt could express the spot."""
    rows = []
    for image, case in zip(images, cases):
        want = checker.centroid(case.control)
        got = checker.centroid(image)
        reading = checker.read(image)
        distance = float(np.hypot(got[0] - want[0], got[1] - want[1])) if got is not None else float("inf")
        rows.append({
            "distance": distance,
            "placed": distance <= CONTROL_TOLERANCE and reading.shape == case.scene.shape,
            "shape": reading.shape == case.scene.shape,
            "colours": (reading.colour, reading.background) == (case.scene.colour, case.scene.background),
            "expressible": expressible(*want),
        })
    return rows


def control_figures(pipe, cases: list[ControlCase]) -> dict[str, float]:
    """Shares of renders placed right (centroid within 8 px of the control's, shape class right),
    also for the spots no prompt can ask for, with right colours, and the median centroid distance."""
    return summarise_control(control_hits(generate_controlled(pipe, cases), cases))


def summarise_control(rows: list[dict]) -> dict[str, float]:
    """`control_figures` from the rows of `control_hits`."""
    free = [r for r in rows if not r["expressible"]]
    return {
        "renders": len(rows),
        "placed": float(np.mean([r["placed"] for r in rows])),
        "inexpressible_renders": len(free),
        "placed_inexpressible": float(np.mean([r["placed"] for r in free])) if free else 0.0,
        "within_8px": float(np.mean([r["distance"] <= CONTROL_TOLERANCE for r in rows])),
        "shape": float(np.mean([r["shape"] for r in rows])),
        "colours": float(np.mean([r["colours"] for r in rows])),
        "median_distance_px": float(np.median([r["distance"] for r in rows])),
    }


def controlnet_figures(folder: Path, count: int) -> dict[str, dict[str, float]]:
    """`control_figures` of the ControlNet shipped beside `folder` on `control_cases(count)`, and on
    the cases after the ones its training kept a checkpoint by (`train_controlnet.EVAL_CASES`)."""
    from diffusers import ControlNetModel

    from .train_controlnet import ARTEFACT, EVAL_CASES, control_pipeline

    path = folder.parent / ARTEFACT
    if not path.exists():
        return {}
    pipe = control_pipeline(folder, ControlNetModel.from_pretrained(path, torch_dtype=torch.float32))
    cases = control_cases(count)
    start = time.perf_counter()
    rows = control_hits(generate_controlled(pipe, cases), cases)
    figures = {"controlnet": summarise_control(rows)}
    figures["controlnet"]["seconds_per_image"] = (time.perf_counter() - start) / len(cases)
    if count > EVAL_CASES:
        figures["controlnet_unselected"] = summarise_control(rows[EVAL_CASES:])
    return figures


def load_shipped(folder: Path = SHIPPED) -> StableDiffusionPipeline:
    """The shipped diffusers folder, offline, in float32 on the best device."""
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, torch_dtype=torch.float32, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda" if torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> None:
    """Print the quality figures of a diffusers folder as JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--folder", type=Path, default=SHIPPED)
    p.add_argument("--held-out-seeds", type=int, default=8)
    p.add_argument("--seen", type=int, default=48)
    p.add_argument("--attributes", type=int, default=48)
    p.add_argument("--positions", type=int, default=48)
    p.add_argument("--held-out-placed-seeds", type=int, default=2)
    p.add_argument("--large-placed", type=int, default=0)
    p.add_argument("--control-cases", type=int, default=48, help="held-out silhouettes for the ControlNet; 0: none")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_shipped(args.folder)
    start = time.perf_counter()
    results = evaluate(
        pipe, args.held_out_seeds, args.seen, args.attributes, args.positions, args.held_out_placed_seeds, args.large_placed
    )
    n = sum(group["renders"] for group in results.values())
    if n:
        results["seconds_per_image"] = (time.perf_counter() - start) / n
    if args.control_cases:
        results.update(controlnet_figures(args.folder, args.control_cases))
    lora = args.folder.parent / "gouache-tiny-outline.safetensors"
    if lora.exists():
        results["lora"] = lora_figures(pipe, lora)
    upscaler = args.folder.parent / "gouache-tiny-4x.safetensors"
    if upscaler.exists():
        from .train_upscaler import compare_with_bicubic

        ours, cubic = compare_with_bicubic(upscaler)
        results["upscaler_psnr_db"] = {"gouache-tiny-4x": ours, "bicubic": cubic}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
