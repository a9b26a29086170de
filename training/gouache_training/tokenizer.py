"""A CLIP-compatible BPE tokenizer over the data set's own words.

The files are CLIP's format (vocab.json and merges.txt with `</w>` word ends and
`<|startoftext|>`/`<|endoftext|>`), so transformers' `CLIPTokenizer` and diffusers' pipelines load
them unchanged. The merges are learnt with `tokenizers` until every caption word is one token.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTokenizer

from .data import vocabulary

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77


def learn_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges that encode each of `words` as a single token.

    Ids follow CLIP's layout: characters, characters with `</w>`, merged tokens in merge order,
    then the two special tokens last.
    """
    tok = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=10_000, min_frequency=1, end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(sorted(words), trainer)
    spec = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    chars = sorted({c for w in words for c in w})
    tokens = chars + [c + "</w>" for c in chars]
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """Write vocab.json and merges.txt (and the tokenizer config) into `folder` and load them back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = learn_bpe(vocabulary())
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LENGTH)
    tok.save_pretrained(folder)
    return CLIPTokenizer.from_pretrained(folder)
