"""Architectures of the embedded model: stock diffusers/transformers classes with small configs.

Sizes are set by two limits: the shipped folder plus a single-file copy must fit in 25 MB at
fp16, and a 20-step render must stay well under two seconds on a 2-core CPU. The 16x16 latent
level dominates CPU time, so it has few channels and no attention.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from spandrel.architectures.Compact import Compact
from transformers import CLIPTextConfig, CLIPTextModel

LATENT_CHANNELS = 4
LATENT_SIZE = 16
TEXT_WIDTH = 128


def make_vae() -> AutoencoderKL:
    """SD's latent convention (4 channels, 8x downsampling) at about one million parameters."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,  # 8 groups of 2 channels erased flat colours (white, yellow, orange, red encoded alike)
        sample_size=128,
        scaling_factor=1.0,  # replaced by 1/std of the training latents once they are encoded
    )


def make_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    """A three-layer CLIP text transformer over the data set's own small vocabulary."""
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_WIDTH,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def make_unet() -> UNet2DConditionModel:
    """An SD1-layout UNet with cross-attention only at the 8x8 and 4x4 levels."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=16,
        use_linear_projection=False,
    )


def make_scheduler() -> EulerDiscreteScheduler:
    """Stable Diffusion's noise schedule, epsilon prediction, for 20-step Euler sampling."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )


def make_upscaler() -> Compact:
    """Compact Real-ESRGAN (SRVGGNetCompact) at 4x, small enough to train in minutes on a CPU."""
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=8, upscale=4, act_type="prelu")


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters in a module."""
    return sum(p.numel() for p in module.parameters())
