"""The shipped CLIP tokenizer gives the ids the published Stable Diffusion tokenizers give."""

from __future__ import annotations

import json
import sys

import pytest

from gouache.nodes.loading import load_clip_tokenizer, shipped_config_dir
from gouache.nodes.loading.shipped import clip_bpe_files, configs_root

CAT = [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize(
    ("family", "subfolder", "pad_id"),
    [("sd1", "tokenizer", 49407), ("sd2", "tokenizer", 0), ("sdxl", "tokenizer", 49407), ("sdxl", "tokenizer_2", 0)],
)
def test_shipped_tokenizers_tokenise_and_pad_like_the_published_ones(family: str, subfolder: str, pad_id: int) -> None:
    tokenizer = load_clip_tokenizer(shipped_config_dir(family) / subfolder)
    assert tokenizer("a photo of a cat").input_ids == CAT
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    padded = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert padded == CAT + [pad_id] * 70


def test_shipped_vocabulary_is_the_derivation_of_the_shipped_merges() -> None:
    sys.path.insert(0, str(configs_root()))
    try:
        from make_clip_tokenizer import build_vocab
    finally:
        sys.path.pop(0)
    vocab_path, merges_path = clip_bpe_files()
    merges = merges_path.read_text(encoding="utf-8").splitlines()[1:]
    assert len(merges) == 48894
    assert json.loads(vocab_path.read_text(encoding="utf-8")) == build_vocab(merges)
    assert (vocab_path.parent / "LICENSE").read_text().startswith("Copyright")
