"""Frame and audio encoders (numpy in, pooled float32 features out) and the frame PCA."""

from autocut.encoders.audio import (
    AUDIO_ENCODER_NAMES,
    DEFAULT_AUDIO_ENCODER,
    AisfxEncoder,
    PannsEncoder,
    load_audio_encoder,
)
from autocut.encoders.base import AudioEncoder, FrameEncoder, l2_normalize, resample_mono
from autocut.encoders.frames import (
    DEFAULT_FRAME_ENCODER,
    FRAME_ENCODER_NAMES,
    EfficientNetLite0Encoder,
    ResNetEncoder,
    load_frame_encoder,
)
from autocut.encoders.pca import PCA_DIM, PCA_FORMAT_VERSION, FramePca, default_pca_path, fit_pca, load_pca

__all__ = [
    "AUDIO_ENCODER_NAMES",
    "DEFAULT_AUDIO_ENCODER",
    "DEFAULT_FRAME_ENCODER",
    "FRAME_ENCODER_NAMES",
    "PCA_DIM",
    "PCA_FORMAT_VERSION",
    "AisfxEncoder",
    "AudioEncoder",
    "EfficientNetLite0Encoder",
    "FrameEncoder",
    "FramePca",
    "PannsEncoder",
    "ResNetEncoder",
    "default_pca_path",
    "fit_pca",
    "l2_normalize",
    "load_audio_encoder",
    "load_frame_encoder",
    "load_pca",
    "resample_mono",
]
