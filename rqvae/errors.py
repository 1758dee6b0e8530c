"""Errors raised by the RQ-VAE package.

`rqvae` cannot import `autocut.errors` (`rqvae` never imports `autocut`; docs/method.md,
"Architecture and queue delivery"), so it has its own small hierarchy; callers in `autocut` wrap
these into the one project hierarchy. All subclass `ValueError` because every one of them is
caused by a bad argument (array, file, expectation).
"""

from __future__ import annotations

__all__ = [
    "RQVAECheckpointError",
    "RQVAEConfigError",
    "RQVAEError",
    "RQVAEInputError",
    "RQVAEMismatchError",
]


class RQVAEError(ValueError):
    """Base class of every error this package raises on purpose."""


class RQVAEConfigError(RQVAEError):
    """A configuration value is out of range or inconsistent."""


class RQVAEInputError(RQVAEError):
    """An array passed in has the wrong shape, dtype, values (NaN/inf) or code range."""


class RQVAECheckpointError(RQVAEError):
    """A checkpoint file is missing, unreadable, corrupt or truncated."""


class RQVAEMismatchError(RQVAECheckpointError):
    """A readable checkpoint does not match what the caller expects.

    Wrong modality, input dimension, format version, PCA version or encoder: the file is fine,
    but using it would produce codes in another space than the caller's vectors.
    """
