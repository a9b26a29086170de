"""The diffusion domain of gouache: socket types, model loading and the built-in node pack."""
