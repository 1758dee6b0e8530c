"""Inference: embeddings (N, D) -> codes (N, Q) and back, without any training code.

Two paths give the same codes:
- `method="library"` runs the trained `RQVAE` module (vector-quantize-pytorch's forward) in eval mode;
- `method="fast"` (default) is a plain re-implementation: the encoder MLP with each eval-mode
  BatchNorm folded into the next Linear, then per level `argmax(residual @ codebook.T)` and a
  subtraction. The library L2-normalises each residual before that dot product; a positive scale
  cannot change the argmax, so the fast path skips it. Both paths then differ only by float
  rounding, which can flip a level whose two best codes tie to within ~1e-6 in cosine;
  `Tokenizer.compare_paths` measures how often that happens (`autocut rqvae eval` reports the rate).
Codes come back as int64 in [0, codebook_size); decode returns the raw (unnormalised) reconstruction.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rqvae.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from rqvae.config import ModelConfig, RQVAEConfig
from rqvae.errors import RQVAEInputError
from rqvae.model import MLP, RQVAE, prepare_input

__all__ = ["DEFAULT_BATCH_SIZE", "Method", "PathAgreement", "Tokenizer"]

logger = logging.getLogger(__name__)

Method = Literal["fast", "library"]
# Rows per forward pass: the paper's batch size, and a bound on peak memory for huge inputs.
DEFAULT_BATCH_SIZE = 8192
# Two codes whose cosine scores differ by at most this are a numerical tie (float32 rounding of a
# 128-2048-d dot product is ~1e-7 relative; 1e-5 leaves headroom for the folded BatchNorm).
NEAR_TIE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class PathAgreement:
    """How the fast path's codes compare with the library forward's on the same vectors."""

    rows: int
    mismatched_rows: int  # rows whose 8 codes differ anywhere
    near_tie_rows: int  # mismatched rows whose first differing level is a numerical tie
    max_first_diff_gap: float  # largest cosine gap between the two paths' choices at a first difference
    max_abs_decode_diff: float  # largest |fast decode - library decode| over the same codes

    @property
    def mismatch_rate(self) -> float:
        return self.mismatched_rows / self.rows if self.rows else 0.0

    @property
    def unexplained_rows(self) -> int:
        """Mismatches that are not near-ties: should be 0, else the fast path is wrong."""
        return self.mismatched_rows - self.near_tie_rows


def _fold_mlp(mlp: MLP) -> list[tuple[Tensor, Tensor]]:
    """Linear layers of `mlp` with each BatchNorm (eval) folded into the following Linear.

    Block i is Linear_i -> GELU -> BN_i, and BN_i(g) = s * g + t with s = gamma / sqrt(var + eps),
    t = beta - mean * s; so Linear_{i+1}(BN_i(g)) = (W_{i+1} * s) g + (W_{i+1} t + b_{i+1}).
    Returns [(W, b)]: apply GELU after every layer but the last. Folding runs in float64.
    """
    layers = list(mlp)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    norms = [m for m in layers if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == len(norms) + 1
    folded: list[tuple[Tensor, Tensor]] = []
    scale: Tensor | None = None
    shift: Tensor | None = None
    for i, lin in enumerate(linears):
        w = lin.weight.detach().double()
        b = lin.bias.detach().double()
        if scale is not None and shift is not None:
            b = b + w @ shift
            w = w * scale
        folded.append((w.float().contiguous(), b.float().contiguous()))
        if i < len(norms):
            bn = norms[i]
            assert bn.running_mean is not None and bn.running_var is not None
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            shift = bn.bias.detach().double() - bn.running_mean.double() * scale
    return folded


def _plain_mlp(x: Tensor, layers: list[tuple[Tensor, Tensor]]) -> Tensor:
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        x = F.linear(x, w, b)
        if i < last:
            x = F.gelu(x)
    return x


class Tokenizer:
    """A trained RQ-VAE tokenizer: `encode` (N, D) floats -> (N, Q) codes, `decode` codes -> (N, D)."""

    def __init__(self, model: RQVAE, *, info: CheckpointInfo | None = None) -> None:
        """Wrap a trained model (copied, so later training does not change this tokenizer)."""
        if not model.initialised:
            raise RQVAEInputError("model is untrained: its codebooks were never initialised")
        self._model = copy.deepcopy(model).eval()
        self._info = info
        self._enc = _fold_mlp(self._model.encoder)
        self._dec = _fold_mlp(self._model.decoder)
        codebooks = self._model.codebooks().float().contiguous()  # (Q, K, C)
        self._codebooks = codebooks
        self._codebooks_t = codebooks.transpose(1, 2).contiguous()  # (Q, C, K) for residual @ C^T

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect_modality: str | None = None,
        expect_dim: int | None = None,
        expect_pca_version: str | None = None,
        expect_encoder: str | None = None,
    ) -> Tokenizer:
        """Load a checkpoint (file or its directory); each `expect_*` given must match or it raises."""
        model, info = load_checkpoint(
            path,
            expect_modality=expect_modality,
            expect_dim=expect_dim,
            expect_pca_version=expect_pca_version,
            expect_encoder=expect_encoder,
        )
        return cls(model, info=info)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        pca_version: str | None,
        encoder: str | None = None,
        train_config: RQVAEConfig | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write this tokenizer as a checkpoint (see `rqvae.checkpoint`)."""
        config = train_config or (self._info.config if self._info else RQVAEConfig(model=self.config))
        return save_checkpoint(path, self._model, config, pca_version=pca_version, encoder=encoder, extra=extra)

    # -- properties ------------------------------------------------------------------------------

    @property
    def config(self) -> ModelConfig:
        return self._model.config

    @property
    def info(self) -> CheckpointInfo | None:
        """Header of the checkpoint this was loaded from (None when built from a live model)."""
        return self._info

    @property
    def modality(self) -> str:
        return self.config.modality

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def pca_version(self) -> str | None:
        return self._info.pca_version if self._info else None

    def state_dict(self) -> dict[str, Tensor]:
        """Copies of the underlying `RQVAE` module's tensors (the checkpoint's contents)."""
        return {k: v.detach().clone() for k, v in self._model.state_dict().items()}

    def codebooks(self) -> np.ndarray:
        """(Q, K, C) float32 copy of the codebooks (unit-norm rows)."""
        return self._codebooks.numpy().copy()

    # -- validation ------------------------------------------------------------------------------

    def _vectors(self, x: Any) -> Tensor:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise RQVAEInputError(f"embeddings must be a real numeric array, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise RQVAEInputError(
                f"embeddings must be 2-D (N, {self.input_dim}), got shape {arr.shape}"
                + (" (wrap a single vector as x[None, :])" if arr.ndim == 1 else "")
            )
        if arr.shape[1] != self.input_dim:
            raise RQVAEInputError(
                f"this {self.modality} tokenizer takes {self.input_dim}-d embeddings, got {arr.shape[1]}-d"
            )
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise RQVAEInputError(f"embeddings contain NaN or inf in {bad.size} row(s), first at row {int(bad[0])}")
        return torch.from_numpy(arr)

    def _codes(self, codes: Any) -> Tensor:
        arr = np.asarray(codes)
        if not np.issubdtype(arr.dtype, np.integer):
            raise RQVAEInputError(f"codes must be an integer array, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != self.num_quantizers:
            raise RQVAEInputError(f"codes must have shape (N, {self.num_quantizers}), got {arr.shape}")
        if arr.size:
            bad = (arr < 0) | (arr >= self.codebook_size)
            if bad.any():
                row, level = (int(v) for v in np.argwhere(bad)[0])
                raise RQVAEInputError(
                    f"code {int(arr[row, level])} at row {row}, level {level} is outside [0, {self.codebook_size})"
                )
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))

    # -- encode / decode -------------------------------------------------------------------------

    def _encode_fast(self, x: Tensor) -> Tensor:
        residual = _plain_mlp(prepare_input(x, self.config), self._enc)  # (B, C)
        codes = torch.empty((x.shape[0], self.num_quantizers), dtype=torch.int64)
        for level in range(self.num_quantizers):
            idx = torch.mm(residual, self._codebooks_t[level]).argmax(dim=1)  # (B,)
            codes[:, level] = idx
            residual.sub_(self._codebooks[level].index_select(0, idx))
        return codes

    def _decode_fast(self, codes: Tensor) -> Tensor:
        quantized = self._codebooks[0].index_select(0, codes[:, 0])
        for level in range(1, self.num_quantizers):
            quantized.add_(self._codebooks[level].index_select(0, codes[:, level]))
        return _plain_mlp(quantized, self._dec)

    def encode(self, x: Any, *, method: Method = "fast", batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """(N, D) float embeddings -> (N, Q) int64 codes in [0, codebook_size). Deterministic."""
        xt = self._vectors(x)
        out = np.empty((xt.shape[0], self.num_quantizers), dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, xt.shape[0], batch_size):
                chunk = xt[start : start + batch_size]
                if method == "fast":
                    codes = self._encode_fast(chunk)
                elif method == "library":
                    codes = self._model.encode_codes(chunk)
                else:
                    raise RQVAEInputError(f"method must be 'fast' or 'library', got {method!r}")
                out[start : start + chunk.shape[0]] = codes.numpy()
        return out

    def decode(self, codes: Any, *, method: Method = "fast", batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """(N, Q) integer codes -> (N, D) float32 reconstructed embeddings (not normalised)."""
        ct = self._codes(codes)
        out = np.empty((ct.shape[0], self.input_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, ct.shape[0], batch_size):
                chunk = ct[start : start + batch_size]
                if method == "fast":
                    rec = self._decode_fast(chunk)
                elif method == "library":
                    rec = self._model.decode_codes(chunk)
                else:
                    raise RQVAEInputError(f"method must be 'fast' or 'library', got {method!r}")
                out[start : start + chunk.shape[0]] = rec.numpy()
        return out

    def quantized_latent(self, codes: Any) -> np.ndarray:
        """(N, Q) codes -> (N, C) sum of the chosen codebook vectors (the decoder's input)."""
        ct = self._codes(codes)
        with torch.inference_mode():
            latent = sum(self._codebooks[q][ct[:, q]] for q in range(self.num_quantizers))
            assert isinstance(latent, Tensor)  # num_quantizers >= 1, so not sum()'s start value 0
            return latent.numpy()

    def reconstruct(self, x: Any) -> np.ndarray:
        """decode(encode(x))."""
        return self.decode(self.encode(x))

    # -- fast path check -------------------------------------------------------------------------

    def compare_paths(self, x: Any, *, tolerance: float = NEAR_TIE_TOLERANCE) -> PathAgreement:
        """Encode `x` both ways and classify every disagreement (see module docstring)."""
        xt = self._vectors(x)
        fast = self.encode(xt.numpy(), method="fast")
        lib = self.encode(xt.numpy(), method="library")
        differ = (fast != lib).any(axis=1)
        rows = np.flatnonzero(differ)
        near_ties = 0
        max_gap = 0.0
        if rows.size:
            with torch.inference_mode():
                sub = prepare_input(xt[torch.from_numpy(rows)], self.config)
                z = self._model.encoder(sub).double()  # library encoder, (M, C)
            books = self._codebooks.double()
            for j, row in enumerate(rows):
                level = int(np.flatnonzero(fast[row] != lib[row])[0])
                residual = z[j] - books[torch.arange(level), torch.from_numpy(lib[row, :level])].sum(0)
                scores = F.normalize(residual, dim=0) @ books[level].T
                gap = abs(float(scores[lib[row, level]] - scores[fast[row, level]]))
                max_gap = max(max_gap, gap)
                near_ties += gap <= tolerance
        dec_fast = self.decode(lib, method="fast")
        dec_lib = self.decode(lib, method="library")
        max_dec = float(np.abs(dec_fast - dec_lib).max()) if dec_fast.size else 0.0
        return PathAgreement(
            rows=int(xt.shape[0]),
            mismatched_rows=int(rows.size),
            near_tie_rows=int(near_ties),
            max_first_diff_gap=max_gap,
            max_abs_decode_diff=max_dec,
        )
