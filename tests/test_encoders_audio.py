"""Audio encoders: packaged aisfx weights vs the package's own pipeline; PANNs Cnn14 from a
local checkpoint vs panns-inference's own AudioTagging, without its import-time download."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from autocut.encoders import AisfxEncoder, PannsEncoder, load_audio_encoder
from autocut.errors import CheckpointError, ConfigError


def _test_signal(duration_s: float, sample_rate_hz: int, seed: int = 0) -> np.ndarray:
    """A chirp with harmonics and noise: broadband, deterministic."""
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    f = 220 + 400 * t / duration_s
    y = 0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(6 * np.pi * f * t)
    y += 0.03 * np.random.default_rng(seed).standard_normal(len(t))
    return y.astype(np.float32)


# ---------------------------------------------------------------- aisfx


@pytest.fixture(scope="module")
def aisfx() -> AisfxEncoder:
    return load_audio_encoder("aisfx")


def test_aisfx_equals_the_package_pipeline(aisfx, tmp_path):
    """Same blocks as aisfx's librosa path + 'original' normalisation + blocking + EmbeddingNet,
    with its (mels, frames) output transposed as the Essentia path would give it."""
    from aisfx.inference import get_path_modelWeights, load_bestModel, model_get_embedding
    from aisfx.preprocessing import spectrogram_normalize
    from aisfx.spectrogram.spectrogram_librosa import compute_spectrogram

    y = _test_signal(5.0, 44100)
    sf.write(tmp_path / "x.wav", y, 44100, subtype="FLOAT")
    weights, datasets = torch.load(get_path_modelWeights(), map_location="cpu", weights_only=False)
    model = load_bestModel(weights, datasets, "cpu")
    spec = compute_spectrogram(str(tmp_path / "x.wav"), 44100.0, 2048, 1024, 96, 0.0, 22050.0).T
    expected = model_get_embedding(spectrogram_normalize(spec), 0.5, True, model, "cpu").numpy()

    got = aisfx.encode_blocks(y)
    assert got.shape == expected.shape == (3, 512)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_aisfx_blocks_track_and_resampling(aisfx):
    assert (aisfx.sample_rate_hz, aisfx.dim) == (44100, 512)
    assert aisfx.block_duration_s == pytest.approx(2.32, abs=0.01)
    short = aisfx.encode_blocks(_test_signal(0.5, 44100))
    assert short.shape == (1, 512)  # shorter than a block: zero-padded to one block

    y = _test_signal(4.0, 44100, seed=3)
    blocks = aisfx.encode_blocks(y)
    track = aisfx.encode_track(y)
    assert track.shape == (512,) and track.dtype == np.float32
    assert np.linalg.norm(track) == pytest.approx(1.0, abs=1e-5)
    mean = blocks.mean(axis=0)
    np.testing.assert_allclose(track, mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)

    # 22.05 kHz input is resampled to 44.1 kHz: same blocks as resampling first, close to the original.
    from scipy.signal import resample_poly

    low = resample_poly(y, 1, 2).astype(np.float32)
    via_rate = aisfx.encode_track(low, sample_rate_hz=22050)
    np.testing.assert_allclose(
        via_rate, aisfx.encode_track(resample_poly(low, 2, 1).astype(np.float32)), rtol=1e-4, atol=1e-5
    )
    assert float(via_rate @ track) > 0.9


def test_aisfx_tells_music_pieces_apart(aisfx):
    """Real weights on real music: each excerpt's nearest other excerpt is from the same piece."""
    music = Path("/usr/share/games/wesnoth/1.16/data/core/music")
    if not music.is_dir():
        pytest.skip("wesnoth-1.16-music not installed")
    from autocut.encoders.base import resample_mono

    def excerpt(name: str, start_s: float, duration_s: float = 5.0) -> np.ndarray:
        sr = sf.info(music / name).samplerate
        y, _ = sf.read(
            music / name,
            dtype="float32",
            start=int(start_s * sr),
            stop=int((start_s + duration_s) * sr),
            always_2d=True,
        )
        return resample_mono(y.mean(axis=1), sr, 44100)

    pieces = ["battle.ogg", "elvish-theme.ogg", "underground.ogg"]
    tracks = np.stack([aisfx.encode_track(excerpt(p, start)) for p in pieces for start in (15, 45)])
    sims = tracks @ tracks.T
    np.fill_diagonal(sims, -np.inf)
    nearest_piece = sims.argmax(axis=1) // 2
    assert (nearest_piece == np.arange(len(tracks)) // 2).mean() >= 5 / 6, sims


def test_audio_input_validation(aisfx):
    with pytest.raises(ConfigError, match="empty"):
        aisfx.encode_blocks(np.zeros(0, dtype=np.float32))
    with pytest.raises(ConfigError, match="mono"):
        aisfx.encode_blocks(np.zeros((2, 44100), dtype=np.float32))
    with pytest.raises(ConfigError, match="float"):
        aisfx.encode_blocks(np.zeros(44100, dtype=np.int16))
    with pytest.raises(ConfigError, match="unknown audio encoder"):
        load_audio_encoder("vggish")
    with pytest.raises(ConfigError, match="weights_path"):
        load_audio_encoder("panns")


# ---------------------------------------------------------------- PANNs


def _write_labels_csv(home: Path) -> None:
    """A well-formed 527-row labels file so that importing panns_inference does not wget."""
    (home / "panns_data").mkdir(parents=True, exist_ok=True)
    rows = ["index,mid,display_name"] + [f'{i},/m/test{i},"Label {i}"' for i in range(527)]
    (home / "panns_data" / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def panns_reference(tmp_path_factory):
    """A random-init Cnn14 built by panns-inference itself, saved in the PANNs release format,
    and panns-inference's own AudioTagging wrapper loaded from that file (the reference)."""
    home = tmp_path_factory.mktemp("home")
    _write_labels_csv(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        from panns_inference import AudioTagging
        from panns_inference.models import Cnn14

        torch.manual_seed(0)
        model = Cnn14(
            sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527
        )
        path = tmp_path_factory.mktemp("ckpt") / "Cnn14_random.pth"
        torch.save({"model": model.state_dict(), "iteration": 0}, path)
        del model
        reference = AudioTagging(checkpoint_path=str(path), device="cpu")  # its own front-end settings
    return path, reference


def test_panns_equals_panns_inference_audiotagging(panns_reference):
    path, reference = panns_reference
    encoder = load_audio_encoder("panns", weights_path=path)
    assert isinstance(encoder, PannsEncoder) and (encoder.sample_rate_hz, encoder.dim) == (32000, 2048)
    y = _test_signal(1.5, 32000, seed=5)
    got = encoder.encode_blocks(y)
    assert got.shape == (1, 2048)  # shorter than the 10 s default block: one block
    np.testing.assert_allclose(got, reference.inference(y[None, :])[1], rtol=1e-4, atol=1e-5)
    track = encoder.encode_track(y)
    np.testing.assert_allclose(track, got[0] / np.linalg.norm(got[0]), rtol=1e-5, atol=1e-6)


def test_panns_blocks(panns_reference):
    path, reference = panns_reference
    encoder = PannsEncoder(path, block_s=1.0, min_last_block_s=0.3)
    y = _test_signal(2.5, 32000, seed=6)
    blocks = encoder.encode_blocks(y)
    assert blocks.shape == (3, 2048)  # 1 s + 1 s + the 0.5 s tail (>= min_last_block_s)
    expected = [reference.inference(part[None, :])[1][0] for part in (y[:32000], y[32000:64000], y[64000:])]
    np.testing.assert_allclose(blocks, np.stack(expected), rtol=1e-4, atol=1e-5)
    assert encoder.encode_blocks(y[:38000]).shape == (1, 2048)  # 0.19 s tail dropped
    assert encoder.encode_blocks(y[:3200]).shape == (1, 2048)  # 0.1 s alone: zero-padded to Cnn14's minimum


def test_panns_load_never_imports_panns_inference(panns_reference, tmp_path, monkeypatch):
    """With panns_inference unimported, an empty HOME and no wget on PATH, loading and running
    the encoder leaves no ~/panns_data (the package's config.py would create it) and never
    imports the package."""
    path, _ = panns_reference
    for name in [m for m in sys.modules if m.split(".")[0] in ("panns_inference", "_autocut_panns_inference")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", str(bin_dir))

    encoder = PannsEncoder(path)
    assert encoder.encode_track(_test_signal(1.0, 32000)).shape == (2048,)
    assert "panns_inference" not in sys.modules
    assert not (home / "panns_data").exists()


def test_panns_refuses_what_is_not_a_cnn14_checkpoint(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        PannsEncoder(tmp_path / "junk.pth").encode_blocks(np.zeros(32000, dtype=np.float32))
    torch.save(
        {"model": {"pre_conv0.weight": torch.zeros(64, 1, 11), "fc1.weight": torch.zeros(2048, 2048)}},
        tmp_path / "wavegram.pth",
    )
    with pytest.raises(CheckpointError, match="Wavegram_Logmel_Cnn14"):
        PannsEncoder(tmp_path / "wavegram.pth").encode_blocks(np.zeros(32000, dtype=np.float32))
    torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a Cnn14 checkpoint"):
        PannsEncoder(tmp_path / "other.pth").encode_blocks(np.zeros(32000, dtype=np.float32))
    with pytest.raises(CheckpointError, match="not found"):
        PannsEncoder(tmp_path / "missing.pth")
