"""The RQ-VAE network: MLP encoder -> residual vector quantizer -> MLP decoder.

Layout follows the AutoCut reference code (`emb_vqvae/modeling/vq_vae.py`): each hidden block is
Linear -> GELU -> BatchNorm1d, then a plain Linear to the output width; the quantizer is
`vector_quantize_pytorch.ResidualVQ` with k-means init, cosine-similarity codebooks and dead-code
replacement (AutoCut Table 3). With cosine codebooks every level picks the code closest in angle to
the current residual and subtracts that unit-norm code, so the quantized latent is a sum of
`num_quantizers` unit vectors, one per level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import ResidualVQ

from rqvae.config import ModelConfig

__all__ = ["MLP", "RQVAE", "RQVAEOutput", "prepare_input"]


def prepare_input(x: Tensor, config: ModelConfig) -> Tensor:
    """What the encoder sees: `x` (N, D), L2-normalised when `config.normalize_input`."""
    return F.normalize(x, dim=-1) if config.normalize_input else x


class MLP(nn.Sequential):
    """(Linear -> GELU -> BatchNorm1d) per hidden width, then Linear to `out_dim`."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.BatchNorm1d(h)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


@dataclass(frozen=True, slots=True)
class RQVAEOutput:
    """One forward pass."""

    recon: Tensor  # (N, D) reconstruction
    codes: Tensor  # (N, Q) int64 code per level
    quantized: Tensor  # (N, C) sum of the chosen codebook vectors (decoder input)
    commit_loss: Tensor  # scalar; 0 unless a commitment weight is set


class RQVAE(nn.Module):
    """Encoder MLP + ResidualVQ + decoder MLP for (N, input_dim) embeddings."""

    def __init__(self, config: ModelConfig, *, commitment_weight: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.encoder = MLP(config.input_dim, config.encoder_hidden, config.codebook_dim)
        self.quantizer = ResidualVQ(
            dim=config.codebook_dim,
            num_quantizers=config.num_quantizers,
            codebook_size=config.codebook_size,
            kmeans_init=True,
            kmeans_iters=config.kmeans_iters,
            use_cosine_sim=True,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
            decay=config.ema_decay,
            # Table 3: commitment weight 0; passing it keeps the library from computing an unused loss.
            commitment_weight=commitment_weight,
        )
        self.decoder = MLP(config.codebook_dim, config.decoder_hidden, config.input_dim)

    @torch.no_grad()
    def init_output_at(self, mean: Tensor, *, weight_scale: float = 0.0) -> None:
        """Start the decoder's output at `mean` (D,): last-layer bias = mean, weights scaled (default: zeroed)."""
        last = self.decoder[-1]
        assert isinstance(last, nn.Linear)
        last.bias.copy_(mean)
        last.weight.mul_(weight_scale)

    def forward(self, x: Tensor) -> RQVAEOutput:
        z = self.encoder(prepare_input(x, self.config))  # (N, C)
        quantized, codes, commit = self.quantizer(z)  # (N, C), (N, Q), (Q,)
        return RQVAEOutput(self.decoder(quantized), codes, quantized, commit.sum())

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        """Codes (N, Q) through the library's own forward (call in eval mode)."""
        _, codes, _ = self.quantizer(self.encoder(prepare_input(x, self.config)))
        return codes

    @torch.no_grad()
    def quantized_from_codes(self, codes: Tensor) -> Tensor:
        """The quantized latent (N, C) rebuilt from codes by the library."""
        return self.quantizer.get_output_from_indices(codes)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Reconstruction (N, D) from codes through the library path (call in eval mode)."""
        return self.decoder(self.quantized_from_codes(codes))

    def codebooks(self) -> Tensor:
        """All codebooks stacked, (Q, K, C); unit-norm rows once initialised."""
        return self.quantizer.codebooks.detach()

    @property
    def initialised(self) -> bool:
        """True once every codebook has been k-means initialised (after the first training batch)."""
        return all(bool(layer._codebook.initted) for layer in self.quantizer.layers)
