"""The embedded model's data, checker and tokenizer: fast specifications, no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import CLIPTokenizer

from gouache_training import WEIGHTS, checker, data
from gouache_training.tokenizer import write_tokenizer

SHIPPED_TOKENIZER = WEIGHTS / "gouache-tiny" / "tokenizer"
CAPTION = "a large red circle on a blue background"
CAPTION_IDS = [132, 22, 114, 87, 112, 82, 22, 103, 131, 133]


def test_generator_is_deterministic_by_seed() -> None:
    a, scenes_a = data.sample_batch(np.random.default_rng(7), 6)
    b, scenes_b = data.sample_batch(np.random.default_rng(7), 6)
    c, _ = data.sample_batch(np.random.default_rng(8), 6)
    assert scenes_a == scenes_b
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_images_are_128_px_rgb_with_exact_palette_colours_away_from_edges() -> None:
    scene = data.make_scene(np.random.default_rng(0), ("red", "square", "blue"), "large", None)
    image = data.render(scene)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == data.PALETTE["blue"]
    assert tuple(image[int(scene.cy), int(scene.cx)]) == data.PALETTE["red"]


def test_square_corners_are_sharp() -> None:
    scene = data.Scene("white", "square", "black", None, None, 25.0, 64.0, 64.0)
    image = data.render(scene)
    h = data.SQUARE_HALF * scene.radius
    # One pixel inside the corner is fully the shape colour: no rounding.
    x, y = int(np.ceil(64 - h)) + 1, int(np.ceil(64 - h)) + 1
    assert tuple(image[y, x]) == data.PALETTE["white"]


def test_held_out_triples_are_never_sampled_for_training() -> None:
    rng = np.random.default_rng(0)
    seen = {data.sample_scene(rng, outline=bool(i % 2)).triple for i in range(5000)}
    assert not seen & set(data.HELD_OUT)
    assert len(data.HELD_OUT) == 12
    assert seen == set(data.TRAIN_TRIPLES)


def test_every_word_is_still_trained_without_the_held_out_triples() -> None:
    colours = {c for c, _, _ in data.TRAIN_TRIPLES}
    backgrounds = {b for _, _, b in data.TRAIN_TRIPLES}
    shapes = {s for _, s, _ in data.TRAIN_TRIPLES}
    assert colours == backgrounds == set(data.COLOURS)
    assert shapes == set(data.SHAPES)


def test_shape_and_background_colours_differ() -> None:
    rng = np.random.default_rng(3)
    assert all(s.colour != s.background for s in (data.sample_scene(rng) for _ in range(500)))


@pytest.mark.parametrize("seed", range(40))
def test_captions_match_what_is_drawn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scene = data.sample_scene(rng)
    text = data.caption(scene, rng)
    words = text.split()
    assert scene.colour in words and scene.shape in words and scene.background in words
    assert words.index(scene.colour) + 1 == words.index(scene.shape)
    if scene.size is not None:
        assert set(words) & set(data.SIZE_WORDS[scene.size])
    else:
        assert not set(words) & {"small", "large", "big"}
    if scene.position is not None:
        assert data.POSITION_PHRASE[scene.position] in text
    reading = checker.read(data.render(scene))
    assert (reading.colour, reading.shape, reading.background) == scene.triple
    assert reading.size == scene.size
    assert reading.position == scene.position


@pytest.mark.parametrize("shape", data.SHAPES)
def test_checker_reads_clean_renders_of_every_colour_pair(shape: str) -> None:
    rng = np.random.default_rng(11)
    for colour in data.COLOURS:
        for background in data.COLOURS:
            if colour == background:
                continue
            for size in data.SIZES:
                scene = data.make_scene(rng, (colour, shape, background), size, None)
                reading = checker.read(data.render(scene))
                assert checker.fully_right(reading, scene), (scene, reading)
                assert reading.size == size, (scene, reading)


def test_checker_sees_outlines_as_hollow_and_fills_as_solid() -> None:
    rng = np.random.default_rng(5)
    for triple in data.TRAIN_TRIPLES[::17]:
        solid = data.make_scene(rng, triple, "large", None)
        hollow = data.make_scene(rng, triple, "large", None, outline=True)
        assert checker.read(data.render(solid)).interior_background < 0.05
        reading = checker.read(data.render(hollow))
        assert reading.interior_background > 0.9
        assert checker.fully_right(reading, hollow)


def test_hollowness_compares_a_styled_render_with_the_plain_one() -> None:
    rng = np.random.default_rng(6)
    for triple in data.TRAIN_TRIPLES[::17]:
        solid = data.make_scene(rng, triple, None, None)
        outline = data.Scene(**{**solid.__dict__, "outline": True})
        plain = data.render(solid)
        assert checker.hollowness(plain, data.render(outline)) > 0.95
        assert checker.hollowness(plain, plain) == 0.0
        # an open outline (a stroke missing) still reads as hollow, which read() alone cannot see
        broken = data.render(outline).copy()
        broken[:, : int(solid.cx)] = plain[0, 0]
        assert checker.read(broken).interior_background == 0.0
        assert checker.hollowness(plain, broken) > 0.95


def test_captions_only_use_the_vocabulary() -> None:
    rng = np.random.default_rng(0)
    vocab = set(data.vocabulary())
    for _ in range(300):
        assert set(data.caption(data.sample_scene(rng), rng).split()) <= vocab


def test_tokenizer_gives_one_token_per_word_and_known_ids(tmp_path: Path) -> None:
    tok = write_tokenizer(tmp_path)
    assert tok(CAPTION).input_ids == CAPTION_IDS
    # The files alone load through CLIPTokenizer, positionally and with from_pretrained.
    only_files = tmp_path / "files"
    only_files.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (only_files / name).write_bytes((tmp_path / name).read_bytes())
    assert CLIPTokenizer.from_pretrained(only_files)(CAPTION).input_ids == CAPTION_IDS
    positional = CLIPTokenizer(str(only_files / "vocab.json"), str(only_files / "merges.txt"))
    assert positional(CAPTION).input_ids == CAPTION_IDS
    for word in data.vocabulary():
        ids = tok(word).input_ids
        assert len(ids) == 3 and ids[1] != tok.unk_token_id, word
    padded = tok("a red star", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[0] == tok.bos_token_id and padded[-1] == tok.eos_token_id


def test_shipped_tokenizer_matches_the_built_one() -> None:
    assert CLIPTokenizer.from_pretrained(SHIPPED_TOKENIZER)(CAPTION).input_ids == CAPTION_IDS


def test_the_tokenizer_built_again_and_again_is_the_shipped_one(tmp_path: Path) -> None:
    # Merges of equal count must not change order between builds: a retrained or resumed text
    # encoder would meet other ids for the same words.
    for attempt in ("first", "second", "third"):
        write_tokenizer(tmp_path / attempt)
        assert json.loads((tmp_path / attempt / "vocab.json").read_text()) == json.loads(
            (SHIPPED_TOKENIZER / "vocab.json").read_text())
        assert (tmp_path / attempt / "merges.txt").read_text() == (SHIPPED_TOKENIZER / "merges.txt").read_text()


def test_position_prompts_name_every_position_on_seen_triples() -> None:
    from gouache_training import evaluate

    cases = evaluate.position_cases(48)
    assert [c.scene.position for c in cases[:4]] == list(data.POSITIONS[1:])
    assert {c.scene.size for c in cases} == {None, "small"}
    assert all(c.scene.triple in data.TRAIN_TRIPLES for c in cases)
    assert all(c.prompt.endswith(data.POSITION_PHRASE[c.scene.position]) for c in cases)
    assert len({c.seed for c in cases}) == 48
    # What the checker reads off the scenes as drawn is what the prompts ask for.
    assert all(checker.read(data.render(c.scene)).position == c.scene.position for c in cases[:12])


def test_place_share_sets_how_often_shapes_are_placed_off_centre() -> None:
    def placed(share: float) -> float:
        rng = np.random.default_rng(9)
        scenes = [data.sample_scene(rng, place_share=share) for _ in range(6000)]
        return float(np.mean([s.position is not None for s in scenes if s.size != "large"]))

    assert abs(placed(data.PLACE_SHARE) - data.PLACE_SHARE) < 0.04
    assert abs(placed(0.9) - 0.9) < 0.04
    assert placed(0.0) == 0.0


def test_labelled_batches_are_the_plain_batches_with_each_caption_s_position_class() -> None:
    import torch

    from gouache_training.train_unet import LatentBatches, tokenize

    rng = np.random.default_rng(4)
    scenes = [data.sample_scene(rng, place_share=0.9) for _ in range(40)]
    cache = {"mean": torch.randn(40, 4, 16, 16), "std": torch.rand(40, 4, 16, 16), "scenes": [s.__dict__ for s in scenes]}
    tok = CLIPTokenizer.from_pretrained(SHIPPED_TOKENIZER)
    batches = LatentBatches(cache, 0.6, tok)
    z, ids = batches.sample(np.random.default_rng(1), 64, torch.device("cpu"))
    z2, ids2, labels = batches.sample_labelled(np.random.default_rng(1), 64, torch.device("cpu"))
    assert torch.equal(z, z2) and torch.equal(ids, ids2)
    empty = tokenize(tok, [""])[0]
    assert (labels == -1).any() and (labels > 0).any() and (labels == 0).any()
    for row, label in zip(ids, labels.tolist()):
        text = tok.decode(row, skip_special_tokens=True)
        if label == -1:
            assert torch.equal(row, empty)
        elif label == 0:
            assert not any(phrase in text for phrase in data.POSITION_PHRASE.values()), text
        else:
            assert data.POSITION_PHRASE[data.POSITIONS[label]] in text, text


def test_held_out_placed_and_large_placed_prompts_ask_what_they_say() -> None:
    from gouache_training import evaluate

    cases = evaluate.held_out_placed_cases(2)
    assert len(cases) == 12 * 4 * 2 and len({(c.prompt, c.seed) for c in cases}) == len(cases)
    assert {c.scene.triple for c in cases} == set(data.HELD_OUT)
    assert {c.scene.position for c in cases} == set(data.POSITIONS[1:])
    assert all(checker.read(data.render(c.scene)).position == c.scene.position for c in cases[::7])
    large = evaluate.large_placed_cases(8)
    assert all(c.scene.size == "large" and c.scene.position is not None for c in large)
    assert all(c.scene.triple in data.TRAIN_TRIPLES for c in large)


def test_freely_placed_shapes_stay_inside_and_their_silhouette_is_where_the_checker_finds_the_render() -> None:
    rng = np.random.default_rng(11)
    scenes = [data.place_anywhere(rng, data.sample_scene(rng, place_share=0.0)) for _ in range(200)]
    centres = np.array([(s.cx, s.cy) for s in scenes])
    assert centres.min() < 30 and centres.max() > 98  # out towards the corners, not only the five prompt spots
    from gouache_training import evaluate

    assert sum(not evaluate.expressible(x, y) for x, y in centres) > 120  # large shapes have less room
    for scene in scenes[:24]:
        assert scene.position is None
        mask = data.silhouette(scene)
        assert mask.dtype == np.uint8 and mask.shape == (128, 128) and mask.max() == 255
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()), scene
        render = data.render(scene)
        want = checker.centroid(np.repeat(mask[..., None], 3, axis=-1))
        got = checker.centroid(render)
        assert want is not None and got is not None
        assert np.hypot(want[0] - got[0], want[1] - got[1]) < 1.0
        assert checker.read(render).shape == scene.shape
