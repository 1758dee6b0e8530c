"""AutoCut service: HTTP API, durable job queue and workers (`python -m server api|worker|all`)."""

from server.settings import Settings

__all__ = ["Settings"]
