"""Inpainting and outpainting figures of the embedded model through the shipped workflows:
`python -m gouache_training.inpaint [--seeds N] [--outpaint N]`; `--write-examples` writes the
pictures those workflows ship with.

Inpainting: a picture drawn by `data.render` with one shape in one colour, a mask of that shape
(grown 2 px so the antialiased edge is repainted too) and a prompt asking for the same scene in
another colour. A shape drawn bigger than the mask is trimmed by the paste, one drawn smaller leaves
background inside it, so the prompt asks for at least the mask's size: "small" is left out (the model
draws small shapes smaller than the data's; `--size-words` keeps it), "large" is kept. The asked colour/shape/background triples are the 12 held-out ones, which no training
stage ever saw. `workflows/inpaint.json` runs as it ships (noise mask during sampling, the decoded
result composited back onto the input through the mask); only its picture, mask, prompt and seed are
set. A render counts as repainted when all of these hold:

- the checker reads the asked colour, shape and background in the whole picture;
- at least `INSIDE_SHARE` of the mask's inside (2 px in from its edge) shows the asked colour and at
  most `OLD_SHARE` the old one;
- every pixel outside the mask is within 2/255 of the input.

Outpainting: the top 96 rows of a render with a shape placed at the top, padded 32 px at the bottom
by `workflows/outpaint.json`; right when the checker reads the prompt's triple, at least
`NEW_AREA_SHARE` of the new rows show the background colour, and the kept rows are within 2/255.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from . import checker, data

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
MASK_GROWTH = 2
"""Pixels the mask reaches past the shape, so its antialiased edge is repainted as well."""
INSIDE_SHARE = 0.5
OLD_SHARE = 0.02
NEW_AREA_SHARE = 0.95
TOLERANCE = 2
"""Largest change, in 8-bit levels, allowed where the mask is 0."""
KEPT_ROWS = 96
"""Rows of the outpainting input; the workflow pads it to 128."""


@dataclass(frozen=True)
class InpaintCase:
    """A picture of ``source`` to repaint as ``target`` (same shape and place, another colour) with one seed."""

    source: data.Scene
    target: data.Scene
    seed: int

    def prompt(self, size_words: bool = False) -> str:
        """What the repaint asks for: the target scene's evaluation caption, without "small" unless ``size_words``."""
        keep = size_words or self.target.size != "small"
        return data.canonical_caption(self.target if keep else replace(self.target, size=None))


def inpaint_cases(seeds: int) -> list[InpaintCase]:
    """Every held-out triple as the repaint's target, ``seeds`` pictures each: the shape drawn first in
    another colour (not the background's), unsized, small or large, centred or placed."""
    rng = np.random.default_rng(5000)
    cases = []
    for s in range(seeds):
        for i, triple in enumerate(data.HELD_OUT):
            colour, shape, background = triple
            old = [c for c in data.COLOURS if c not in (colour, background)][int(rng.integers(len(data.COLOURS) - 2))]
            size = data.SIZES[int(rng.integers(len(data.SIZES)))]
            position = None if size == "large" else data.POSITIONS[int(rng.integers(len(data.POSITIONS)))]
            target = data.make_scene(rng, triple, size, position)
            source = data.Scene(old, shape, background, size, position, target.radius, target.cx, target.cy)
            cases.append(InpaintCase(source, target, 5000 + 100 * s + i))
    return cases


def inpaint_mask(scene: data.Scene, growth: int = MASK_GROWTH) -> np.ndarray:
    """Boolean (128, 128) mask: every pixel the shape touches, grown by ``growth`` pixels."""
    k = data.SUPERSAMPLE
    touched = data.shape_mask(scene).reshape(data.IMAGE_SIZE, k, data.IMAGE_SIZE, k).any(axis=(1, 3))
    return ndimage.binary_dilation(touched, iterations=growth) if growth else touched


def outpaint_cases(count: int) -> list[data.Scene]:
    """Held-out triples (then seen ones), unsized or small, placed at the top so the shape lies in the kept rows."""
    rng = np.random.default_rng(6000)
    triples = list(data.HELD_OUT) + [data.TRAIN_TRIPLES[int(i)] for i in rng.choice(len(data.TRAIN_TRIPLES), 64)]
    return [data.make_scene(rng, triples[k % len(triples)], (None, "small")[k % 2], "top") for k in range(count)]


def repaint_checks(out: np.ndarray, case: InpaintCase, source: np.ndarray, mask: np.ndarray) -> dict[str, bool]:
    """Which of the repaint's conditions an output (uint8 RGB) meets."""
    labels = checker.palette_labels(out)
    inside = ndimage.binary_erosion(mask, iterations=2)
    reading = checker.read(out)
    return {
        "reading": checker.fully_right(reading, case.target),
        "inside": float((labels[inside] == data.COLOURS.index(case.target.colour)).mean()) >= INSIDE_SHARE
        and float((labels[inside] == data.COLOURS.index(case.source.colour)).mean()) <= OLD_SHARE,
        "outside": int(np.abs(out.astype(int) - source.astype(int))[~mask].max(initial=0)) <= TOLERANCE,
    }


def _png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path)


def _image(value) -> np.ndarray:
    return np.clip(np.rint(value[0].numpy() * 255), 0, 255).astype(np.uint8)


def evaluate_inpaint(engine, cases: list[InpaintCase], folder: Path, size_words: bool = False) -> dict[str, float]:
    """Run the shipped inpainting workflow on every case (pictures written to ``folder``, the engine's
    input folder) and return the share of renders meeting each condition and all of them."""
    workflow = json.loads((WORKFLOWS / "inpaint.json").read_text())
    checks = []
    for n, case in enumerate(cases):
        source, mask = data.render(case.source), inpaint_mask(case.source)
        _png(source, folder / f"inpaint-{n}.png")
        _png((mask * 255).astype(np.uint8), folder / f"inpaint-{n}-mask.png")
        result = engine.run(workflow, overrides={"load.image": f"inpaint-{n}.png", "mask.image": f"inpaint-{n}-mask.png",
                                                 "positive.text": case.prompt(size_words), "sampler.seed": case.seed},
                            outputs=["paste"])
        if not result.ok:
            raise RuntimeError(f"the inpainting workflow failed: {result.error}")
        checks.append(repaint_checks(_image(result.outputs["paste"]["image"]), case, source, mask))
    shares = {name: float(np.mean([c[name] for c in checks])) for name in checks[0]}
    by_size = {str(size or "unsized"): float(np.mean([all(c.values()) for c, case in zip(checks, cases)
                                                      if case.source.size == size]))
               for size in data.SIZES if any(case.source.size == size for case in cases)}
    return {"repainted": float(np.mean([all(c.values()) for c in checks])), **shares,
            "repainted_by_size": by_size, "renders": len(cases)}


def evaluate_outpaint(engine, scenes: list[data.Scene], folder: Path) -> dict[str, float]:
    """Run the shipped outpainting workflow on the top rows of each scene and score the whole picture."""
    workflow = json.loads((WORKFLOWS / "outpaint.json").read_text())
    right, filled, kept = [], [], []
    for n, scene in enumerate(scenes):
        source = data.render(scene)[:KEPT_ROWS]
        _png(source, folder / f"outpaint-{n}.png")
        result = engine.run(workflow, overrides={"load.image": f"outpaint-{n}.png",
                                                 "positive.text": data.canonical_caption(scene),
                                                 "sampler.seed": 6000 + n}, outputs=["paste", "pad"])
        if not result.ok:
            raise RuntimeError(f"the outpainting workflow failed: {result.error}")
        out = _image(result.outputs["paste"]["image"])
        untouched = result.outputs["pad"]["mask"][0].numpy()[:KEPT_ROWS] == 0
        new = checker.palette_labels(out[KEPT_ROWS:])
        right.append(checker.fully_right(checker.read(out), scene))
        filled.append(float((new == data.COLOURS.index(scene.background)).mean()) >= NEW_AREA_SHARE)
        kept.append(int(np.abs(out[:KEPT_ROWS].astype(int) - source.astype(int))[untouched].max()) <= TOLERANCE)
    all_right = [a and b and c for a, b, c in zip(right, filled, kept)]
    return {"right": float(np.mean(all_right)), "reading": float(np.mean(right)), "new_area": float(np.mean(filled)),
            "kept": float(np.mean(kept)), "renders": len(scenes)}


def example_inpaint() -> tuple[np.ndarray, np.ndarray]:
    """The picture and mask `workflows/inpaint.json` ships with: a red circle on blue, and the circle's mask."""
    scene = data.Scene("red", "circle", "blue", None, None, 25.0, 64.0, 64.0)
    return data.render(scene), (inpaint_mask(scene) * 255).astype(np.uint8)


def example_outpaint() -> np.ndarray:
    """The picture `workflows/outpaint.json` ships with: the top 96 rows of a green star on white at the top."""
    return data.render(data.Scene("green", "star", "white", None, "top", 25.0, 64.0, 38.0))[:KEPT_ROWS]


def write_examples(folder: Path = WORKFLOWS) -> None:
    """Write the shipped workflows' pictures (`inpaint.png`, `inpaint-mask.png`, `outpaint.png`)."""
    picture, mask = example_inpaint()
    _png(picture, folder / "inpaint.png")
    _png(mask, folder / "inpaint-mask.png")
    _png(example_outpaint(), folder / "outpaint.png")


def main(argv: list[str] | None = None) -> None:
    """Print the inpainting and outpainting figures as JSON."""
    import torch

    from gouache.engine import Engine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=8, help="pictures per held-out triple to repaint")
    p.add_argument("--outpaint", type=int, default=24, help="pictures to outpaint")
    p.add_argument("--size-words", action="store_true", help="inpainting prompts say 'small' too")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write-examples", action="store_true", help="write the shipped workflows' pictures and stop")
    args = p.parse_args(argv)
    if args.write_examples:
        write_examples()
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as home:
        folder = Path(home) / "input"
        folder.mkdir()
        engine = Engine(home=Path(home))
        start = time.perf_counter()
        results = {"inpaint": evaluate_inpaint(engine, inpaint_cases(args.seeds), folder, args.size_words)}
        if args.outpaint:
            results["outpaint"] = evaluate_outpaint(engine, outpaint_cases(args.outpaint), folder)
        renders = sum(group["renders"] for group in results.values() if isinstance(group, dict))
        results["seconds_per_image"] = (time.perf_counter() - start) / renders
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
