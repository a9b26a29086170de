"""gouache: a node-based visual workflow engine for diffusion image generation."""

__version__ = "0.1.0"
