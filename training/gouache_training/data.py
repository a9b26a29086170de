"""Procedural, captioned training data for the embedded model: flat shapes on flat backgrounds.

Every image is drawn at 4x and box-downsampled, so edges are antialiased while square corners
stay sharp. A fixed set of colour/shape/background triples (`HELD_OUT`) never leaves the
training sampler; evaluation prompts use them to measure whether the model composes words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SIZES: tuple[str | None, ...] = ("small", None, "large")
POSITIONS: tuple[str | None, ...] = (None, "left", "right", "top", "bottom")

# Share of the non-large shapes that the training sampler places off centre.
PLACE_SHARE = 0.4
IMAGE_SIZE = 128
SUPERSAMPLE = 4
# Nominal radius ranges in output pixels; the checker's size thresholds sit between them.
RADIUS_RANGE: dict[str | None, tuple[float, float]] = {"small": (14.0, 18.0), None: (23.0, 28.0), "large": (34.0, 40.0)}
# Geometry relative to the nominal radius r (square half-side, triangle and star circumradius).
SQUARE_HALF = 0.89
TRIANGLE_R = 1.2
STAR_R = 1.3
STAR_INNER = 0.42
# Area of each shape divided by r**2, so the checker can turn an area back into a radius.
AREA_FACTOR: dict[str, float] = {
    "circle": math.pi,
    "square": 4 * SQUARE_HALF**2,
    "triangle": 3 * math.sqrt(3) / 4 * TRIANGLE_R**2,
    "star": 5 * STAR_INNER * math.sin(math.radians(36)) * STAR_R**2,
}
OUTLINE_WIDTH = 3.0  # output pixels, for the outline style the LoRA learns

# (shape colour, shape, background colour): every shape three times, every colour at least once
# as a shape and as a background, so each word is still seen in training.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("green", "circle", "purple"),
    ("orange", "circle", "white"),
    ("black", "circle", "yellow"),
    ("yellow", "square", "black"),
    ("black", "square", "blue"),
    ("red", "square", "white"),
    ("blue", "triangle", "yellow"),
    ("white", "triangle", "red"),
    ("green", "triangle", "black"),
    ("red", "star", "green"),
    ("purple", "star", "orange"),
    ("blue", "star", "white"),
)

ALL_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(
    (c, s, b) for c in COLOURS for s in SHAPES for b in COLOURS if b != c
)
TRAIN_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(t for t in ALL_TRIPLES if t not in set(HELD_OUT))

POSITION_PHRASE: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small",), "large": ("large", "big")}


@dataclass(frozen=True)
class Scene:
    """One drawable, captionable picture: a single shape on a flat background."""

    colour: str
    shape: str
    background: str
    size: str | None
    position: str | None
    radius: float
    cx: float
    cy: float
    outline: bool = False

    @property
    def triple(self) -> tuple[str, str, str]:
        """The (shape colour, shape, background) triple that decides held-out membership."""
        return (self.colour, self.shape, self.background)


def make_scene(
    rng: np.random.Generator,
    triple: tuple[str, str, str],
    size: str | None,
    position: str | None,
    outline: bool = False,
) -> Scene:
    """Place a shape of the given triple, size and position with a little random jitter."""
    lo, hi = RADIUS_RANGE[size]
    radius = float(rng.uniform(lo, hi))
    cx = 64.0 + float(rng.uniform(-5, 5))
    cy = 64.0 + float(rng.uniform(-5, 5))
    offset = float(rng.uniform(-3, 3))
    if position == "left":
        cx = 38.0 + offset
    elif position == "right":
        cx = 90.0 + offset
    elif position == "top":
        cy = 38.0 + offset
    elif position == "bottom":
        cy = 90.0 + offset
    colour, shape, background = triple
    return Scene(colour, shape, background, size, position, radius, cx, cy, outline)


def sample_scene(
    rng: np.random.Generator, outline: bool = False, held_out: bool = False, place_share: float = PLACE_SHARE
) -> Scene:
    """Draw a random scene; training triples only unless `held_out` asks for the held-out ones."""
    triples = HELD_OUT if held_out else TRAIN_TRIPLES
    triple = triples[int(rng.integers(len(triples)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    position = None
    # Large shapes fill the frame, so only smaller ones are placed off centre.
    if size != "large" and rng.random() < place_share:
        position = POSITIONS[1 + int(rng.integers(4))]
    return make_scene(rng, triple, size, position, outline)


def _polygon(scene: Scene) -> list[tuple[float, float]] | None:
    """Vertices in output pixels, or None for the circle."""
    r, cx, cy = scene.radius, scene.cx, scene.cy
    if scene.shape == "square":
        h = SQUARE_HALF * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if scene.shape == "triangle":
        big = TRIANGLE_R * r
        return [(cx + big * math.cos(a), cy + big * math.sin(a)) for a in map(math.radians, (-90, 30, 150))]
    if scene.shape == "star":
        outer, inner = STAR_R * r, STAR_R * STAR_INNER * r
        pts = []
        for i in range(10):
            rad = outer if i % 2 == 0 else inner
            a = math.radians(-90 + 36 * i)
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    return None


def shape_mask(scene: Scene) -> np.ndarray:
    """Boolean mask of the shape at the 4x drawing resolution (outline only if the scene says so)."""
    big = IMAGE_SIZE * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    k = SUPERSAMPLE
    poly = _polygon(scene)
    if poly is None:
        r = scene.radius * k
        x, y = scene.cx * k, scene.cy * k
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    else:
        draw.polygon([(x * k, y * k) for x, y in poly], fill=255)
    mask = np.asarray(canvas) > 127
    if scene.outline:
        # A band of constant width inside the edge: the distance to the outside decides it.
        mask = mask & (ndimage.distance_transform_edt(mask) <= OUTLINE_WIDTH * k)
    return mask


def render(scene: Scene) -> np.ndarray:
    """Render a scene to a (128, 128, 3) uint8 RGB array."""
    mask = shape_mask(scene).astype(np.float32)
    k = SUPERSAMPLE
    coverage = mask.reshape(IMAGE_SIZE, k, IMAGE_SIZE, k).mean(axis=(1, 3))[..., None]
    fg = np.array(PALETTE[scene.colour], np.float32)
    bg = np.array(PALETTE[scene.background], np.float32)
    img = coverage * fg + (1 - coverage) * bg
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """'a large red circle' style phrase; `rng` picks among size synonyms."""
    words = []
    if scene.size is not None:
        options = SIZE_WORDS[scene.size]
        words.append(options[int(rng.integers(len(options)))] if rng is not None else options[0])
    words += [scene.colour, scene.shape]
    return f"{_article(words[0])} {' '.join(words)}"


def canonical_caption(scene: Scene) -> str:
    """The fixed phrasing used for evaluation prompts."""
    text = f"{noun_phrase(scene)} on a {scene.background} background"
    if scene.position is not None:
        text += f" {POSITION_PHRASE[scene.position]}"
    return text


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption for `scene` in one of several phrasings, re-sampled on every call."""
    np_ = noun_phrase(scene, rng)
    pos = f" {POSITION_PHRASE[scene.position]}" if scene.position is not None else ""
    bg = scene.background
    template = int(rng.integers(4))
    if template == 0:
        return f"{np_} on a {bg} background{pos}"
    if template == 1:
        return f"{np_}{pos} on {bg}"
    if template == 2:
        return f"{np_} against a {bg} background{pos}"
    return f"{bg} background with {np_}{pos}"


def vocabulary() -> list[str]:
    """Every word a caption can contain, sorted."""
    words = {"a", "an", "on", "the", "at", "background", "against", "with"}
    words |= set(COLOURS) | set(SHAPES)
    words |= {w for ws in SIZE_WORDS.values() for w in ws}
    words |= {w for p in POSITION_PHRASE.values() for w in p.split()}
    return sorted(words)


def sample_batch(
    rng: np.random.Generator, n: int, outline: bool = False, place_share: float = PLACE_SHARE
) -> tuple[np.ndarray, list[Scene]]:
    """`n` training renders as a (n, 128, 128, 3) uint8 array and their scenes."""
    scenes = [sample_scene(rng, outline=outline, place_share=place_share) for _ in range(n)]
    return np.stack([render(s) for s in scenes]), scenes


# How far each shape reaches from its centre, in nominal radii (the star's and triangle's top point).
EXTENT: dict[str, float] = {"circle": 1.0, "square": SQUARE_HALF * math.sqrt(2), "triangle": TRIANGLE_R, "star": STAR_R}
EDGE_MARGIN = 2.0  # pixels kept between a freely placed shape and the image's edge


def place_anywhere(rng: np.random.Generator, scene: Scene) -> Scene:
    """The scene with its shape moved to a uniformly random centre that keeps it inside the image.

    What the ControlNet trains and is scored on: centres anywhere, corners included, not just the
    five that prompts can ask for; the scene's position word is dropped (None).
    """
    reach = EXTENT[scene.shape] * scene.radius + EDGE_MARGIN
    lo, hi = reach, IMAGE_SIZE - reach
    cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    return Scene(scene.colour, scene.shape, scene.background, scene.size, None, scene.radius, cx, cy, scene.outline)


def silhouette(scene: Scene) -> np.ndarray:
    """The shape's silhouette, white on black, antialiased like `render`: a (128, 128) uint8 control image."""
    k = SUPERSAMPLE
    coverage = shape_mask(scene).astype(np.float32).reshape(IMAGE_SIZE, k, IMAGE_SIZE, k).mean(axis=(1, 3))
    return np.clip(np.rint(coverage * 255), 0, 255).astype(np.uint8)
