"""The diffusion socket types, and the light handles that travel along MODEL, CLIP and VAE links.

Nothing here imports torch: the pack registers these types while ``gouache nodes`` stays fast.
Handles are frozen and hold no tensors of their own. A MODEL or CLIP handle names the loaded
checkpoint it draws on plus an immutable tuple of LoRA patches; the sampler and the text encoder
apply the patches around each use and put the exact original weights back afterwards, so the
cached base model never changes (see ``gouache.nodes.lora``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gouache.engine import SocketType

if TYPE_CHECKING:
    from typing_extensions import Self

SOCKET_TYPES = [
    SocketType("MODEL", "#b39ddb", description="A denoising UNet with its noise schedule and any LoRA patches."),
    SocketType("CLIP", "#ffd500", description="The text encoder(s) and tokenizer(s) of a checkpoint."),
    SocketType("VAE", "#ff6e6e", description="The autoencoder that maps images to latents and back."),
    SocketType("CONDITIONING", "#ffa931",
               description="Encoded prompts: a list of entries (embeddings, SDXL's pooled embedding and size "
                           "conditioning), each with an optional area, mask, strength and timestep range."),
    SocketType("LATENT", "#ff9cf9",
               description="A dict with 'samples' [B,C,H/8,W/8] and an optional 'noise_mask' [B,1,H,W] (1 = repaint)."),
    SocketType("IMAGE", "#64b5f6", description="float32 tensor [B,H,W,C] with values in 0..1."),
    SocketType("MASK", "#81c784", description="float32 tensor [B,H,W] with values in 0..1 (1 = masked)."),
    SocketType("UPSCALE_MODEL", "#9e9e9e", description="A super-resolution model loaded through spandrel."),
    SocketType("NOISE", "#5e8c6a", description="Where the initial noise comes from: a seed, or none (DisableNoise)."),
    SocketType("SIGMAS", "#cddc39",
               description="A window of steps of a named noise schedule, with the noise levels it passes through."),
    SocketType("SAMPLER", "#ecb4b4", description="A sampler by name: the diffusers scheduler class that steps."),
    SocketType("GUIDER", "#66666f", description="A MODEL with its positive and negative conditioning and CFG scale."),
    SocketType("CONTROL_NET", "#00d78d",
               description="A ControlNet (SD 1.x/2.x/SDXL) that steers the UNet from a control image."),
]


@dataclass(frozen=True)
class LoraPatch:
    """One LoRA applied at a strength: ``key`` names the parsed LoRA in the model manager."""

    key: str
    name: str
    strength: float


@dataclass(frozen=True, eq=False)
class CheckpointRef:
    """A checkpoint owned by the model manager, and the cache key it is held under.

    It holds no model: ``loaded`` asks the manager, which loads the file again if it let the model
    go to stay within its RAM budget. So a handle kept in the output cache never pins a model.
    """

    key: str
    name: str
    resolve: Callable[[], Any] = field(repr=False)

    @property
    def loaded(self) -> Any:
        """The ``gouache.nodes.loading.LoadedCheckpoint``."""
        return self.resolve()


@dataclass(frozen=True)
class _Patchable(ABC):
    """A checkpoint part plus the LoRA patches applied, in order, while it runs."""

    checkpoint: CheckpointRef
    patches: tuple[LoraPatch, ...] = ()

    def with_patch(self, patch: LoraPatch) -> Self:
        """A new handle with one more LoRA on top; this one is unchanged."""
        return replace(self, patches=self.patches + (patch,))

    @abstractmethod
    def parts(self) -> list[tuple[str, Any]]:
        """The modules this handle runs, with their diffusers slots (what LoRA layers name)."""


@dataclass(frozen=True)
class ModelHandle(_Patchable):
    """MODEL: the denoiser of ``checkpoint`` with ``patches`` applied while it samples."""

    sampling: tuple[tuple[str, Any], ...] = ()
    """Scheduler config overrides a node set (``FlowShift``: the flow models' ``shift``)."""

    def parts(self) -> list[tuple[str, Any]]:
        """The denoiser, under its family's slot (``unet`` or ``transformer``)."""
        loaded = self.checkpoint.loaded
        return [(loaded.family.denoiser_slot, loaded.denoiser)]


@dataclass(frozen=True)
class ClipHandle(_Patchable):
    """CLIP: the text encoder(s) of ``checkpoint`` with ``patches`` applied while they encode."""

    stop_at_layer: int | None = None
    """Read the hidden states of this layer counted from the end (-1 the last, -2 the one before, ...);
    ``None``: the family's own choice (``ClipSetLastLayer``)."""

    def parts(self) -> list[tuple[str, Any]]:
        """Every text encoder, under its slot (``text_encoder``, ``text_encoder_2``, ...)."""
        return [(encoder.spec.slot, encoder.model) for encoder in self.checkpoint.loaded.encoders]


@dataclass(frozen=True)
class VaeHandle:
    """VAE: the autoencoder of ``checkpoint``."""

    checkpoint: CheckpointRef


@dataclass(frozen=True, eq=False)
class ControlNetHandle:
    """CONTROL_NET: a loaded diffusers ``ControlNetModel``; ``name`` is its file or folder name."""

    module: Any = field(repr=False)
    name: str = ""

    @property
    def cross_attention_dim(self) -> int:
        """The text embedding width it reads: tells the family (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)."""
        return int(self.module.config.cross_attention_dim)


@dataclass(frozen=True, eq=False)
class Control:
    """One ControlNet applied to a conditioning entry (``ControlNetApply``): the net, its control
    image (IMAGE [B,H,W,C] in 0..1), its strength and the part of the schedule it acts in."""

    net: ControlNetHandle
    image: Any = field(repr=False)
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass(frozen=True, eq=False)
class Conditioning:
    """CONDITIONING: what the sampler needs from a prompt, as a list of entries (ComfyUI's list of conds).

    This object is the first entry and ``more`` holds the others (``ConditioningCombine``); the
    sampler predicts with every entry active at a step and averages the predictions weighted by each
    entry's area, mask and strength (:mod:`gouache.nodes.regions`). A single entry with no area, mask
    or timestep range is one plain prompt, sampled exactly as before entries existed.

    ``embeds`` is [1, 77*k, D] (k prompt windows); ``pooled`` [1, D2] is SDXL's pooled text
    embedding, ``None`` otherwise. ``size`` is SDXL's (original_size, crop_top_left, target_size)
    in pixels as (h, w) pairs; ``None`` means "the size of the latent being sampled".
    """

    embeds: Any = field(repr=False)
    pooled: Any = field(default=None, repr=False)
    size: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    text: str = ""
    guidance: float | None = None
    """Flux.1 dev's distilled guidance strength (``FluxGuidance``); ``None``: the family's default."""
    area: tuple[str, float, float, float, float] | None = None
    """Where the entry applies: ``("pixels" | "fraction", x, y, width, height)``; ``None``: everywhere."""
    strength: float = 1.0
    """The entry's weight where it overlaps others (``ConditioningSetArea``)."""
    mask: Any = field(default=None, repr=False)
    """[B or 1, H, W] weights over the image (``ConditioningSetMask``); ``None``: no mask."""
    mask_strength: float = 1.0
    mask_bounds: bool = False
    """Run the model on the mask's bounding box only (ComfyUI's ``set_cond_area="mask bounds"``)."""
    timestep_range: tuple[float, float] = (0.0, 1.0)
    """The part of the schedule the entry is used in, as start and end fractions (0: the first step)."""
    more: tuple[Conditioning, ...] = field(default=(), repr=False)
    """The further entries (each with an empty ``more``)."""
    controls: tuple[Control, ...] = field(default=(), repr=False)
    """ControlNets steering the UNet while this entry is sampled (``ControlNetApply``; they stack)."""
    inpaint: Any = field(default=None, repr=False)
    """[B, 5, h, w]: the mask at the latent's size and the masked picture's latent, which a 9-channel
    inpainting UNet reads beside the noisy latent (``InpaintModelConditioning``); ``None``: none."""

    def entries(self) -> tuple[Conditioning, ...]:
        """Every entry, this one first, each on its own."""
        return (replace(self, more=()), *self.more) if self.more else (self,)

    @property
    def plain(self) -> bool:
        """One entry applying everywhere at every step: sampled in the pipelines' own batch."""
        return not self.more and self.area is None and self.mask is None and self.timestep_range == (0.0, 1.0)

    def map_entries(self, change: Callable[[Conditioning], Conditioning]) -> Conditioning:
        """A new conditioning with ``change`` applied to every entry; this one is unchanged."""
        first, *others = [change(entry) for entry in self.entries()]
        return replace(first, more=tuple(others))


@dataclass(frozen=True, eq=False)
class UpscaleModelHandle:
    """UPSCALE_MODEL: a spandrel model by the file it came from, resolved through the model manager."""

    key: str
    name: str
    resolve: Callable[[], Any] = field(repr=False)

    @property
    def descriptor(self) -> Any:
        """The spandrel ``ImageModelDescriptor`` (loaded again if the manager let it go)."""
        return self.resolve()


@dataclass(frozen=True)
class NoiseSource:
    """NOISE: the seed of the initial noise, or ``add=False`` for a latent that already carries its noise;
    ``convention`` says whose noise the seed draws (``gouache`` or ``comfyui``, ``nodes/schedulers.py``)."""

    seed: int = 0
    add: bool = True
    convention: str = "gouache"


@dataclass(frozen=True)
class SigmaWindow:
    """SIGMAS: steps ``start`` to ``end`` of the ``steps``-step ``scheduler`` schedule of a model.

    The schedule travels by name, not as numbers, so every sampler (every diffusers class) can follow it;
    ``sigmas`` are the noise levels of the window's boundaries as the Euler sampler sees them, for display
    and for splitting. In the ``comfyui`` convention ``sigmas`` are the levels themselves, as ComfyUI's
    SIGMAS are, and the sampler runs exactly those.
    """

    scheduler: str
    steps: int
    start: int
    end: int
    sigmas: tuple[float, ...] = ()
    convention: str = "gouache"


@dataclass(frozen=True)
class SamplerChoice:
    """SAMPLER: a sampler by name (``gouache.nodes.schedulers.SAMPLERS``)."""

    name: str


@dataclass(frozen=True, eq=False)
class Guider:
    """GUIDER: classifier-free guidance of ``model`` between ``positive`` and ``negative`` at scale ``cfg``."""

    model: ModelHandle
    positive: Conditioning
    negative: Conditioning
    cfg: float
