"""Derive CLIP's tokenizer files (vocab.json, merges.txt) from open_clip's MIT-licensed BPE merges.

Stable Diffusion 1.x, 2.x and both SDXL text encoders share CLIP's byte-level BPE (49,408 tokens).
Its merges ship inside the PyPI wheel ``open-clip-torch`` as ``open_clip/bpe_simple_vocab_16e6.txt.gz``;
this script rebuilds the vocabulary the way open_clip's ``SimpleTokenizer`` does, so nothing comes
from a model hub. Run it once when the wheel changes and commit the output::

    pip download --no-deps open-clip-torch -d /tmp/oc
    python nodes/configs/make_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl nodes/configs/clip_tokenizer
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# open_clip keeps 49,152 - 256 - 2 merges (lines 2 to 48,895 of the file); the rest are unused.
NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def bytes_to_unicode() -> dict[int, str]:
    """Map each byte to a printable unicode character, in the order GPT-2 and CLIP list them."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def read_merges(source: Path) -> list[str]:
    """Read the merge lines from the wheel (or from the bare ``.txt.gz``) at ``source``."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(BPE_MEMBER)
    else:
        raw = source.read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = lines[1 : NUM_MERGES + 1]
    if len(merges) != NUM_MERGES or any(len(m.split(" ")) != 2 for m in merges):
        raise ValueError(f"{source}: expected {NUM_MERGES} merge lines of two symbols each; is it open_clip's BPE file?")
    return merges


def build_vocab(merges: list[str]) -> dict[str, int]:
    """Build the 49,408-entry vocabulary: bytes, bytes + ``</w>``, each merge joined, then the two specials."""
    base = list(bytes_to_unicode().values())
    tokens = base + [t + "</w>" for t in base] + [m.replace(" ", "") for m in merges] + list(SPECIAL_TOKENS)
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ValueError(f"derived {len(tokens)} tokens ({len(set(tokens))} distinct), expected {VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer_files(source: Path, out_dir: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` (transformers' CLIPTokenizer format) into ``out_dir``."""
    merges = read_merges(source)
    vocab = build_vocab(merges)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="open_clip_torch wheel, or bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("out_dir", type=Path, help="folder to write vocab.json and merges.txt into")
    args = parser.parse_args()
    write_tokenizer_files(args.source, args.out_dir)


if __name__ == "__main__":
    main()
