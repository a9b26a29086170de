"""Nodes that turn prompts into conditioning: TextEncode, and ClipSetLastLayer ("CLIP skip").

The prompt syntax (weights, windows, ``BREAK``, ``embedding:NAME``) is ``gouache.nodes.prompt``'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gouache.engine import CachePolicy, Input, InputError, Node, Output
from gouache.nodes.embeddings import KIND, find_name, references, unknown_message
from gouache.nodes.support import fingerprint_of, manager_of
from gouache.nodes.types import ClipHandle, Conditioning

MAX_PROMPT = 20_000
"""Longest prompt, in characters: about 65 windows of 75 tokens, seconds per encoder on a CPU."""
DEEPEST_LAYER = 48
"""How far back ``stop_at_layer`` may reach at validation; the encoders' own depth is checked when it runs."""


def _embedding_entries(ctx: Any, text: str) -> dict[str, Any]:
    """The model entry of every embedding ``text`` refers to, by the name it uses; unknown names fail on ``text``."""
    names = ctx.models.names(KIND)
    entries = {}
    for name in references(text):
        found = find_name(name, names)
        if found is None:
            raise InputError("text", unknown_message(name, names), "unknown_embedding")
        entries[name] = ctx.models.resolve(KIND, found)
    return entries


class TextEncode(Node):
    """Encode a prompt. ``(word:1.3)``, ``(word)`` and ``[word]`` weigh words; long prompts are
    split into 75-token windows, never cut; ``BREAK`` starts a new window; ``embedding:NAME`` puts a
    textual-inversion embedding from the embeddings folder in the prompt."""

    type_name = "TextEncode"
    version = 2
    category = "conditioning"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("clip", "CLIP"), Input("text", "STRING", default="", multiline=True, max_length=MAX_PROMPT,
                    description=f"The prompt; at most {MAX_PROMPT:,} characters.")]
    outputs = [Output("conditioning", "CONDITIONING")]

    def check(self, values, choices):
        text = values.get("text") or ""
        names = choices(KIND) if "embedding:" in text else []
        return [InputError("text", unknown_message(name, names), "unknown_embedding")
                for name in references(text) if find_name(name, names) is None]

    def fingerprint(self, ctx, text, **_):
        # The embedding files the prompt names: rewriting one encodes the prompt again.
        return "|".join(f"{name}={fingerprint_of(entry.path)}" for name, entry in _embedding_entries(ctx, text).items())

    def run(self, ctx, clip, text):
        from contextlib import ExitStack

        import torch

        from gouache.nodes.embeddings import read_embedding
        from gouache.nodes.lora import patched
        from gouache.nodes.prompt import encode

        try:
            embeddings = {name: read_embedding(entry.path, name) for name, entry in _embedding_entries(ctx, text).items()}
        except ValueError as error:
            raise InputError("text", str(error), "wrong_embedding") from None
        manager = manager_of(ctx)
        parts = clip.parts()
        device = manager.on_device([module for _, module in parts])
        with torch.no_grad(), ExitStack() as stack:
            for slot, module in parts:
                stack.enter_context(patched(manager, slot, module, clip.patches))
            try:
                embeds, pooled = encode(clip.checkpoint.loaded, text, device, ctx.check_interrupt,
                                        stop_at_layer=clip.stop_at_layer, embeddings=embeddings)
            except ValueError as error:  # an embedding made for another family
                raise InputError("text", str(error), "wrong_embedding") from None
        pooled = pooled.to("cpu") if pooled is not None else None
        return {"conditioning": Conditioning(embeds.to("cpu"), pooled, None, text)}


class ClipSetLastLayer(Node):
    """Stop the text encoders at an earlier layer ("CLIP skip"): -1 is the last layer, -2 the one before, ...

    As ComfyUI's CLIPSetLastLayer. SD 1.x/2.x read the last layer by default, so -2 there is diffusers'
    ``clip_skip=1`` (through the final layer norm); SDXL and SD 3 read the penultimate layer by default,
    so -3 there is ``clip_skip=1``. A new CLIP handle; the loaded model is unchanged.
    """

    type_name = "ClipSetLastLayer"
    category = "conditioning"
    inputs = [Input("clip", "CLIP"),
              Input("stop_at_layer", "INT", default=-1, min=-DEEPEST_LAYER, max=-1,
                    description="The layer whose output the prompt's conditioning is, counted from the end.")]
    outputs = [Output("clip", "CLIP")]

    def run(self, ctx, clip: ClipHandle, stop_at_layer):
        from gouache.nodes.prompt import layer_count

        for encoder in clip.checkpoint.loaded.encoders:
            if encoder.spec.layout != "t5" and -stop_at_layer > layer_count(encoder.model):
                raise InputError("stop_at_layer", f"{stop_at_layer} reaches past the {layer_count(encoder.model)} "
                                 f"layers of this CLIP's {encoder.spec.slot}", "too_deep")
        return {"clip": replace(clip, stop_at_layer=stop_at_layer)}


TEXT_NODES = [TextEncode, ClipSetLastLayer]
