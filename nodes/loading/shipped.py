"""The configs and CLIP tokenizer that ship inside the package, so single files load offline.

``nodes/configs/<family>/`` is a diffusers-style folder holding only configs (no weights). The
49,408-token CLIP BPE lives once in ``nodes/configs/clip_tokenizer/`` (derived by
``make_clip_tokenizer.py``); the per-family ``tokenizer*/`` folders hold just
``tokenizer_config.json``, which says how to pad, and are completed from the shared files here.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gouache.nodes.families import FAMILIES, Family, TextEncoder

from .errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

# Keys of tokenizer_config.json that CLIPTokenizer's constructor understands.
_TOKENIZER_KWARGS = ("bos_token", "eos_token", "unk_token", "pad_token", "model_max_length")


def configs_root() -> Path:
    """Return the folder that holds the shipped configs (``gouache/nodes/configs``)."""
    return Path(str(resources.files("gouache.nodes").joinpath("configs")))


def shipped_config_dir(family: Family | str) -> Path:
    """Return the shipped diffusers-style config folder of ``family`` (a description or its name)."""
    name = family.name if isinstance(family, Family) else family
    if name not in FAMILIES:
        raise ModelLoadError(f"no shipped config for family {name!r}; known families: {', '.join(FAMILIES)}")
    folder = configs_root() / name
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"shipped config folder {folder} is incomplete; reinstall gouache")
    return folder


def clip_bpe_files() -> tuple[Path, Path]:
    """Return the shipped ``(vocab.json, merges.txt)`` of CLIP's byte-level BPE."""
    folder = configs_root() / "clip_tokenizer"
    return folder / "vocab.json", folder / "merges.txt"


def load_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """Load the CLIP tokenizer described by ``folder`` (a diffusers ``tokenizer``/``tokenizer_2`` folder).

    A complete folder (``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) loads as it is. A folder
    with only ``tokenizer_config.json``, as shipped here, gets the shared BPE files; its padding token
    is what tells SD 1.x (``<|endoftext|>``) from SD 2.x / SDXL's second encoder (``!``).
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{folder} holds no tokenizer: expected tokenizer.json, vocab.json + merges.txt, "
            "or at least tokenizer_config.json"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    kwargs = {key: config[key] for key in _TOKENIZER_KWARGS if key in config}
    vocab, merges = clip_bpe_files()
    # Positional paths: transformers 5 silently ignores vocab_file=/merges_file= keywords (FACTS.md).
    return CLIPTokenizer(str(vocab), str(merges), **kwargs)


def load_t5_tokenizer(folder: Path) -> Any:
    """Load the T5 tokenizer described by ``folder`` (a diffusers ``tokenizer_2``/``tokenizer_3`` folder).

    A complete folder (``tokenizer.json`` or ``spiece.model``) loads as it is; one with only
    ``tokenizer_config.json``, as shipped, gets T5's vocabulary from ``configs/t5_tokenizer``
    (Apache-2.0, see its LICENSE).
    """
    from transformers import T5TokenizerFast

    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file():
        return T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    shared = configs_root() / "t5_tokenizer" / "tokenizer.json"
    if not shared.is_file():
        raise ModelLoadError(
            f"{folder} holds no T5 tokenizer and the shipped one ({shared}) is missing: put T5's tokenizer.json "
            "(or spiece.model) in that folder, or reinstall gouache"
        )
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    kwargs = {key: config[key] for key in ("eos_token", "unk_token", "pad_token", "extra_ids", "model_max_length")
              if key in config}
    return T5TokenizerFast(tokenizer_file=str(shared), **kwargs)


def load_tokenizer(folder: Path, spec: TextEncoder) -> Any:
    """Load the tokenizer of the text encoder ``spec`` from ``folder`` (its diffusers tokenizer folder)."""
    if spec.layout in ("clip", "open_clip"):
        return load_clip_tokenizer(folder)
    if spec.layout == "t5":
        return load_t5_tokenizer(folder)
    raise ModelLoadError(f"{folder}: no tokenizer loader for {spec.layout!r} text encoders ({spec.model_class})")
