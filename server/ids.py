"""Resource ids: `<prefix>_<hex>`, minted by `new_id` and matched by `id_pattern` (the API's patterns).

Prefixes: `job` (jobs), `bat` (batches), `clp` (uploaded clips), `img` (product images), `key` (API
key ids). The random part is 12 bytes (24 hex digits), 8 bytes for API key ids.
"""

from __future__ import annotations

import secrets
from typing import Literal

__all__ = ["IdPrefix", "id_pattern", "new_id"]

IdPrefix = Literal["job", "bat", "clp", "img", "key"]

_RANDOM_BYTES = 12


def new_id(prefix: IdPrefix, nbytes: int = _RANDOM_BYTES) -> str:
    """A fresh id, e.g. `new_id("job")` -> `job_0123456789abcdef01234567`."""
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def id_pattern(prefix: IdPrefix, nbytes: int = _RANDOM_BYTES) -> str:
    """The regular expression every `new_id(prefix, nbytes)` matches."""
    return rf"^{prefix}_[0-9a-f]{{{2 * nbytes}}}$"
