"""The small exception hierarchy of aworld-recipe.

Every error a user can cause or hit says what went wrong and what to do next, so that a failed run is
fixed from the message alone rather than from a traceback deep inside a library.
"""

from __future__ import annotations


class AWorldError(Exception):
    """Base class: anything the recipe raises on purpose."""


class ConfigError(AWorldError):
    """A configuration value is missing, malformed or inconsistent. Raised before any work starts."""


class ModelNotFound(AWorldError):
    """A model directory does not exist or is not a HuggingFace model directory."""


class VLLMNotReady(AWorldError):
    """A vLLM server did not become healthy in time (or died while starting)."""


class EndpointUnreachable(AWorldError):
    """No configured OpenAI-compatible endpoint answered."""


class StorageError(AWorldError):
    """Reading or committing trajectory data failed."""


class TrainingError(AWorldError):
    """The training stage failed (bad batch, trainer crash, checkpoint not written)."""
