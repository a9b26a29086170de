"""Loaders for models that come as separate files: a diffusion model, its text encoders, a VAE.

SD 3.x and Flux.1 are mostly downloaded this way (ComfyUI's ``diffusion_models``, ``text_encoders``
and ``vae`` folders); a separate VAE is common for SD 1.x/2.x/XL too. Each node yields the same
handle a full checkpoint's loader does, holding only its part.
"""

from __future__ import annotations

from gouache.engine import CachePolicy, Input, InputError, Node, Output
from gouache.nodes.families import FAMILIES
from gouache.nodes.support import fingerprint_of, manager_of, resolve
from gouache.nodes.types import ClipHandle, ModelHandle, VaeHandle

WEIGHT_DTYPES = ("default", "bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2")
"""``default`` keeps the file's dtype; the others store the weights converted, tensor by tensor."""
SPLIT_TEXT_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.sampling == "flow")
ENCODER_INPUTS = ("text_encoder_1", "text_encoder_2", "text_encoder_3")


def _load_error(input_name: str, error: Exception) -> InputError:
    return InputError(input_name, str(error), "unreadable")


class DiffusionModelLoader(Node):
    """Load a diffusion model on its own (SD 3.x or Flux.1; ComfyUI's "Load Diffusion Model").

    The weights stay in the file's dtype (bf16, fp8) unless ``weight_dtype`` converts them; layers
    compute in the device's dtype one at a time, so no full-precision copy is made.
    """

    type_name = "DiffusionModelLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [
        Input("name", "COMBO", choices_from="diffusion_models", link="widget",
              description="A file or diffusers transformer folder in the diffusion_models folders."),
        Input("weight_dtype", "COMBO", default="default", choices=WEIGHT_DTYPES,
              description="Store the weights in another dtype; default keeps the file's."),
    ]
    outputs = [Output("model", "MODEL")]

    def fingerprint(self, ctx, name, weight_dtype):
        return f"{fingerprint_of(resolve(ctx, 'diffusion_models', name).path)}|{weight_dtype}"

    def run(self, ctx, name, weight_dtype):
        from gouache.nodes.loading.flow_models import WEIGHT_DTYPES as TORCH_DTYPES
        from gouache.nodes.loading.flow_models import load_diffusion_model

        path = resolve(ctx, "diffusion_models", name).path
        try:
            ref = manager_of(ctx).parts([path], name, weight_dtype,
                                        lambda: load_diffusion_model(path, TORCH_DTYPES[weight_dtype]))
        except ValueError as error:  # ModelLoadError is one
            raise _load_error("name", error) from None
        return {"model": ModelHandle(ref)}


class TextEncoderLoader(Node):
    """Load a family's text encoders from one file each (CLIP-L, CLIP-G, T5-XXL, in any order).

    SD 3.x takes three files, Flux.1 two; files are matched to encoders by what they hold.
    """

    type_name = "TextEncoderLoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [Input("family", "COMBO", default=SPLIT_TEXT_FAMILIES[0], choices=SPLIT_TEXT_FAMILIES,
                    description="The model family the encoders belong to.")] + [
        Input(name, "COMBO", choices_from="text_encoders", link="widget", optional=index > 0,
              description="A text encoder file from the text_encoders folders.")
        for index, name in enumerate(ENCODER_INPUTS)
    ]
    outputs = [Output("clip", "CLIP")]

    def check(self, values):
        family = FAMILIES.get(values.get("family", ""))
        if family is None:
            return []
        given = [name for name in ENCODER_INPUTS if values.get(name) is not None]
        wanted = len(family.encoders)
        if len(given) == wanted:
            return []
        where = ENCODER_INPUTS[len(given)] if len(given) < wanted else given[-1]
        return [InputError(where, f"{family.label} has {wanted} text encoders; {len(given)} file(s) are chosen",
                           "wrong_count")]

    def fingerprint(self, ctx, family, **files):
        paths = [resolve(ctx, "text_encoders", files[n], n).path for n in ENCODER_INPUTS if files[n] is not None]
        return f"{family}|" + "+".join(fingerprint_of(path) for path in paths)

    def run(self, ctx, family, text_encoder_1, text_encoder_2, text_encoder_3):
        from gouache.nodes.loading.flow_models import load_text_encoders

        chosen = [(n, f) for n, f in zip(ENCODER_INPUTS, (text_encoder_1, text_encoder_2, text_encoder_3)) if f]
        paths = [resolve(ctx, "text_encoders", file, n).path for n, file in chosen]
        description = FAMILIES[family]
        try:
            ref = manager_of(ctx).parts(paths, " + ".join(f for _, f in chosen), family,
                                        lambda: load_text_encoders(paths, description))
        except ValueError as error:
            raise _load_error(chosen[0][0], error) from None
        return {"clip": ClipHandle(ref)}


class VAELoader(Node):
    """Load a VAE file or diffusers folder from the vae folders, for a model family.

    The family decides how latents are scaled, which a VAE's weights do not show.
    """

    type_name = "VAELoader"
    category = "loaders"
    cache = CachePolicy.FINGERPRINT
    inputs = [
        Input("name", "COMBO", choices_from="vae", link="widget", description="A VAE from the vae folders."),
        Input("family", "COMBO", default="sd1", choices=tuple(FAMILIES),
              description="The family whose latents the VAE reads and writes."),
    ]
    outputs = [Output("vae", "VAE")]

    def fingerprint(self, ctx, name, family):
        return f"{fingerprint_of(resolve(ctx, 'vae', name).path)}|{family}"

    def run(self, ctx, name, family):
        from gouache.nodes.loading.flow_models import load_vae

        path = resolve(ctx, "vae", name).path
        try:
            ref = manager_of(ctx).parts([path], name, family, lambda: load_vae(path, FAMILIES[family]))
        except ValueError as error:
            raise _load_error("name", error) from None
        return {"vae": VaeHandle(ref)}
