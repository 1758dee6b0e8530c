"""One hierarchy for every error a user can cause or a job can hit.

Job-control code (the worker) decides retry vs. fail from the class alone:
`TransientError` subclasses may succeed on retry, everything else under
`AutoCutError` is permanent (bad input does not get better by retrying).
"""

from __future__ import annotations

__all__ = [
    "AutoCutError",
    "CatalogError",
    "CheckpointError",
    "ConfigError",
    "IdRangeError",
    "MediaError",
    "PlanError",
    "RenderError",
    "TransientError",
    "VersionMismatchError",
]


class AutoCutError(Exception):
    """Base class: a permanent error whose message is safe to show the user."""


class TransientError(AutoCutError):
    """May succeed if retried later (resource busy, broker down, disk momentarily full)."""


class ConfigError(AutoCutError):
    """Invalid configuration or option value."""


class MediaError(AutoCutError):
    """A media file is unreadable, unsupported or unsuitable for its role.

    The message always names the file and the reason.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CatalogError(AutoCutError):
    """The material library is missing, corrupt, or was asked for something it does not hold."""


class IdRangeError(CatalogError):
    """An AutoCut id would overflow its digit budget (docs/method.md, "Ids")."""


class VersionMismatchError(AutoCutError):
    """An artifact (index, checkpoint, codes) was built on another encoder/PCA version."""


class CheckpointError(AutoCutError):
    """A model checkpoint is missing, corrupt, or does not match what was asked for."""


class PlanError(AutoCutError):
    """An EditPlan is invalid or cannot be rendered as asked (checked before ffmpeg starts)."""


class RenderError(AutoCutError):
    """ffmpeg failed while rendering a valid plan."""
