"""The one exception type the model-loading layer raises."""

from __future__ import annotations


class ModelLoadError(ValueError):
    """A model file or folder could not be read or understood.

    The message names the file and says what to do about it; nodes turn it into a NodeError.
    """
