"""On-disk RQ-VAE checkpoints: one safetensors file whose header carries the config as JSON.

Format `autocut-rqvae` version 1. Header metadata (all strings, as safetensors requires):
- `format` = "autocut-rqvae", `format_version` = "1";
- `config`: `RQVAEConfig.to_dict()` as JSON (model architecture + the training settings used);
- `provenance`: JSON with `pca_version` (the PCA the input vectors were projected with: a refit
  invalidates every code built on the old one), `encoder` (the embedding model),
  `created_at` and the torch / vector-quantize-pytorch versions that wrote it;
- `extra`: free JSON from the caller (training summary, held-out groups, metrics);
- `sha256`: digest of every tensor's name, dtype, shape and bytes, so a flipped byte in the data
  section (which safetensors itself does not notice) is reported as corruption.
Tensors: the `RQVAE` module's state dict (encoder/decoder weights, BatchNorm running stats,
codebooks and their EMA buffers). One file means one `os.replace` makes a write atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rqvae.config import RQVAEConfig
from rqvae.errors import RQVAECheckpointError, RQVAEConfigError, RQVAEMismatchError
from rqvae.model import RQVAE

__all__ = [
    "CHECKPOINT_FILENAME",
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointInfo",
    "load_checkpoint",
    "read_checkpoint_info",
    "resolve_checkpoint_path",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT = "autocut-rqvae"
FORMAT_VERSION = 1
# File name used when a checkpoint path names a directory (e.g. <library>/models/rqvae_video/).
CHECKPOINT_FILENAME = "rqvae.safetensors"


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything in a checkpoint's header: what the weights are and what they were built on."""

    path: Path
    format_version: int
    config: RQVAEConfig
    pca_version: str | None
    encoder: str | None
    created_at: str
    software: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return self.config.model.modality

    @property
    def input_dim(self) -> int:
        return self.config.model.input_dim


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """A directory means the checkpoint file inside it; a file path is used as is."""
    p = Path(path)
    return p / CHECKPOINT_FILENAME if p.is_dir() else p


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # Raw bytes through a uint8 view work for every dtype, bool and int64 included.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _software_versions() -> dict[str, str]:
    versions: dict[str, str] = {"torch": torch.__version__}  # TorchVersion is a str
    # It is a hard dependency, so the suppress is a formality.
    with contextlib.suppress(importlib_metadata.PackageNotFoundError):
        versions["vector_quantize_pytorch"] = importlib_metadata.version("vector-quantize-pytorch")
    return versions


def save_checkpoint(
    path: str | os.PathLike[str],
    model: RQVAE,
    config: RQVAEConfig,
    *,
    pca_version: str | None,
    encoder: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` atomically (tmp file + os.replace); returns the file written.

    `path` may be a directory (created if missing; the file is `rqvae.safetensors` inside) or a file.
    """
    if config.model != model.config:
        raise RQVAEConfigError("config.model does not describe the model being saved")
    if not model.initialised:
        raise RQVAECheckpointError("refusing to save an untrained model: its codebooks were never initialised")
    p = Path(path)
    if p.is_dir() or p.suffix == "":
        p.mkdir(parents=True, exist_ok=True)
        p = p / CHECKPOINT_FILENAME
    else:
        p.parent.mkdir(parents=True, exist_ok=True)

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    provenance = {
        "pca_version": pca_version,
        "encoder": encoder,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **_software_versions(),
    }
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "provenance": json.dumps(provenance, sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True),
        "sha256": _digest(tensors),
    }
    blob = st_save(tensors, metadata=meta)
    # A per-process tmp name: two writers never share a half-written file.
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("saved RQ-VAE checkpoint %s (%s, %d bytes)", p, config.model.modality, len(blob))
    return p


def _parse_header(path: Path, meta: dict[str, str] | None) -> CheckpointInfo:
    meta = meta or {}
    if meta.get("format") != FORMAT:
        raise RQVAECheckpointError(f"{path}: not an RQ-VAE checkpoint (header format {meta.get('format')!r})")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise RQVAECheckpointError(f"{path}: unreadable format_version {meta.get('format_version')!r}") from None
    if version != FORMAT_VERSION:
        raise RQVAEMismatchError(
            f"{path}: checkpoint format version {version}, this code reads version {FORMAT_VERSION}; "
            "retrain the tokenizer (autocut rqvae train) or use a matching release"
        )
    try:
        config = RQVAEConfig.from_dict(json.loads(meta["config"]))
        provenance = json.loads(meta["provenance"])
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, json.JSONDecodeError, RQVAEConfigError) as exc:
        raise RQVAECheckpointError(f"{path}: corrupt checkpoint header ({exc})") from exc
    software = {k: str(v) for k, v in provenance.items() if k not in ("pca_version", "encoder", "created_at")}
    return CheckpointInfo(
        path=path,
        format_version=version,
        config=config,
        pca_version=provenance.get("pca_version"),
        encoder=provenance.get("encoder"),
        created_at=str(provenance.get("created_at", "")),
        software=software,
        extra=extra,
    )


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    if not path.exists():
        raise RQVAECheckpointError(f"{path}: no RQ-VAE checkpoint here (train one with `autocut rqvae train`)")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise RQVAECheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
    try:
        tensors = st_load(blob)
        # safetensors.torch.load drops the metadata; the header is a length-prefixed JSON object.
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__")
    except (SafetensorError, ValueError) as exc:
        raise RQVAECheckpointError(f"{path}: corrupt or truncated checkpoint ({exc})") from exc
    return tensors, meta


def read_checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Header only: what a checkpoint holds, without building the model."""
    p = resolve_checkpoint_path(path)
    _, meta = _read(p)
    return _parse_header(p, meta)


def _check_expectations(
    info: CheckpointInfo,
    *,
    expect_modality: str | None,
    expect_dim: int | None,
    expect_pca_version: str | None,
    expect_encoder: str | None,
) -> None:
    p = info.path
    if expect_modality is not None and info.modality != expect_modality:
        raise RQVAEMismatchError(f"{p}: checkpoint is a {info.modality} tokenizer, expected {expect_modality}")
    if expect_dim is not None and info.input_dim != expect_dim:
        raise RQVAEMismatchError(
            f"{p}: checkpoint takes {info.input_dim}-d vectors, expected {expect_dim}-d "
            "(the embedding encoder changed; retrain the tokenizer)"
        )
    if expect_pca_version is not None and info.pca_version != expect_pca_version:
        raise RQVAEMismatchError(
            f"{p}: checkpoint was trained on PCA version {info.pca_version!r}, the library is at "
            f"{expect_pca_version!r}; its codes are stale - retrain with `autocut rqvae train`"
        )
    if expect_encoder is not None and info.encoder != expect_encoder:
        raise RQVAEMismatchError(
            f"{p}: checkpoint was trained on embeddings from {info.encoder!r}, expected {expect_encoder!r}"
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expect_modality: str | None = None,
    expect_dim: int | None = None,
    expect_pca_version: str | None = None,
    expect_encoder: str | None = None,
) -> tuple[RQVAE, CheckpointInfo]:
    """Load and verify a checkpoint; the model comes back in eval mode.

    Each `expect_*` left as None is not checked. Raises `RQVAEMismatchError` when the checkpoint is
    sound but built for something else, `RQVAECheckpointError` when it is missing or corrupt.
    """
    p = resolve_checkpoint_path(path)
    tensors, meta = _read(p)
    info = _parse_header(p, meta)
    _check_expectations(
        info,
        expect_modality=expect_modality,
        expect_dim=expect_dim,
        expect_pca_version=expect_pca_version,
        expect_encoder=expect_encoder,
    )
    if meta is None or _digest(tensors) != meta.get("sha256"):
        raise RQVAECheckpointError(f"{p}: corrupt checkpoint (tensor data does not match its sha256)")
    model = RQVAE(info.config.model, commitment_weight=info.config.train.commitment_weight)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise RQVAECheckpointError(f"{p}: tensors do not fit the stored config ({exc})") from exc
    if not model.initialised:
        raise RQVAECheckpointError(f"{p}: checkpoint holds codebooks that were never initialised")
    model.eval()
    return model, info
