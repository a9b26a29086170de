"""The embedded default model: a tiny text-to-image latent diffusion model trained by the project."""
