"""HTTP routes, one module per resource."""

from server.routes import admin, clips, edits, health, jobs, library

__all__ = ["admin", "clips", "edits", "health", "jobs", "library"]
