"""A CLIP-compatible BPE tokenizer over the data set's own words.

The files are CLIP's format (vocab.json and merges.txt with `</w>` word ends and
`<|startoftext|>`/`<|endoftext|>`), so transformers' `CLIPTokenizer` and diffusers' pipelines load
them unchanged. The merges are learnt here until every caption word is one token, the way
`tokenizers`' BPE trainer learns them but with ties always broken the same way: that trainer numbers
word-final symbols in hash order, so merges of equal count (`an`, `ar`, `at`) came out in a
different order from one call to the next and a retrained or resumed text encoder met other ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

from .data import vocabulary

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges over `words` (each counted once), until no word has two symbols left.

    Each word starts as its characters with `</w>` on the last one. The most frequent adjacent pair
    is merged first; ties go to the pair of lower ids, where characters are numbered in code point
    order, then word-final symbols in string order, then merged tokens as they are made.
    """
    chars = sorted({c for w in words for c in w})
    ids = {c: i for i, c in enumerate(chars)}
    seqs = [[*w[:-1], w[-1] + "</w>"] for w in sorted(set(words))]
    for symbol in sorted({s[-1] for s in seqs}):
        ids.setdefault(symbol, len(ids))
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], ids[p[0]], ids[p[1]]))
        merges.append(best)
        ids.setdefault(best[0] + best[1], len(ids))
        seqs = [_merge(seq, best) for seq in seqs]


def _merge(seq: list[str], pair: tuple[str, str]) -> list[str]:
    """`seq` with every non-overlapping occurrence of `pair`, left to right, joined into one symbol."""
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def learn_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges that encode each of `words` as a single token.

    Ids follow CLIP's layout: characters, characters with `</w>`, merged tokens in merge order,
    then the two special tokens last.
    """
    merges = learn_merges(words)
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
