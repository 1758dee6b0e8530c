"""Library tokenizers over a real catalog: `autocut rqvae train|eval`, held-out split, PCA refusal."""

from __future__ import annotations

import re

import numpy as np
import pytest

from autocut.cli import main as cli_main
from autocut.encoders.base import l2_normalize
from autocut.errors import CatalogError, CheckpointError, VersionMismatchError
from autocut.library.catalog import Catalog, NewBgm
from autocut.library.codes import (
    evaluate_library_tokenizer,
    load_library_tokenizer,
    tokenizer_dir,
    train_library_tokenizer,
    training_arrays,
)
from rqvae import read_checkpoint_info

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def library(tmp_path, synthetic_source):
    root = tmp_path / "lib"
    rng = np.random.default_rng(0)
    with Catalog.open(root, writable=True, frame_encoder="enc-test", audio_encoder="aud-test") as cat:
        cat.set_meta("pca_version", "pca-test-1")
        for i in range(1, 9):
            cat.add_source(synthetic_source(i))
        tracks = []
        for k in range(12):
            blocks = l2_normalize(rng.standard_normal(64) + rng.normal(0, 0.3, (4, 64)))
            tracks.append(NewBgm(f"b{k}", f"/music/{k}.ogg", 0.0, 9.2, blocks, l2_normalize(blocks.mean(axis=0))))
        cat.add_bgm(tracks)
    return root


def test_training_arrays_group_frames_by_source_and_blocks_by_track(library):
    with Catalog.open(library, create=False) as cat:
        vecs, groups = training_arrays(cat, "video")
        assert vecs.shape == (240, 128) and sorted(set(groups.tolist())) == list(range(1, 9))
        assert np.bincount(groups)[1:].tolist() == [30] * 8
        blocks, tracks = training_arrays(cat, "audio")
        assert blocks.shape == (48, 64) and len(set(tracks.tolist())) == 12


def test_cli_train_then_eval_video(library, capsys):
    rc = cli_main(
        [
            "--library",
            str(library),
            "rqvae",
            "train",
            "--modality",
            "video",
            "--epochs",
            "2",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "video tokenizer ->" in out and "held out" in out
    assert re.search(r"epochs       2/2 \(completed\), batch 210,", out)  # 8 videos x 30 frames, 1 held out
    info = read_checkpoint_info(tokenizer_dir(library, "video"))
    assert (info.modality, info.input_dim, info.pca_version, info.encoder) == ("video", 128, "pca-test-1", "enc-test")
    held = info.extra["val_groups"]
    assert held and set(held) <= set(range(1, 9)) and len(held) < 8
    assert info.config.model.encoder_hidden == (512, 512) and info.config.train.epochs == 2

    tok = load_library_tokenizer(library, "video")
    with Catalog.open(library, create=False) as cat:
        _, vecs = cat.frame_vectors()
    assert tok.encode(vecs).shape == (240, 8)

    assert cli_main(["--library", str(library), "rqvae", "eval", "--modality", "video", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "all rows" in out and "fast path" in out


def test_pca_refit_makes_the_tokenizer_refused(library, capsys):
    train_library_tokenizer(library, "video", epochs=1)
    with Catalog.open(library, writable=True) as cat:
        cat.set_meta("pca_version", "pca-test-2")
    with pytest.raises(VersionMismatchError, match=r"PCA version 'pca-test-1'.*rqvae train --modality video"):
        load_library_tokenizer(library, "video")
    assert cli_main(["--library", str(library), "rqvae", "eval", "--modality", "video"]) == 2
    assert "pca-test-2" in capsys.readouterr().err


def test_audio_tokenizer_scores_pooled_tracks(library):
    report = train_library_tokenizer(library, "audio", epochs=2, seed=1)
    assert report.checkpoint == tokenizer_dir(library, "audio") / "rqvae.safetensors"
    assert report.train_rows + report.val_rows == 48 and report.val_groups >= 1
    info = read_checkpoint_info(report.checkpoint)
    assert (info.input_dim, info.pca_version, info.encoder) == (64, None, "aud-test")
    ev = evaluate_library_tokenizer(library, "audio")
    assert ev.pooled_tracks is not None and ev.pooled_tracks.rows == 12
    assert ev.pooled_held_out is not None and ev.pooled_held_out.rows == report.val_groups
    assert ev.held_out is not None and ev.held_out.rows == report.val_rows
    assert ev.paths.unexplained_rows == 0
    assert "tracks" in ev.to_text()


def test_time_budget_flag_and_missing_pieces(library, tmp_path, capsys):
    rc = cli_main(
        [
            "--library",
            str(library),
            "rqvae",
            "train",
            "--modality",
            "audio",
            "--epochs",
            "500",
            "--time-budget-s",
            "0.5",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "(time_budget)" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match=r"no RQ-VAE checkpoint here.*rqvae train --modality video"):
        load_library_tokenizer(library, "video")
    empty = tmp_path / "empty"
    with Catalog.open(empty, writable=True, frame_encoder="enc-test", audio_encoder="aud-test"):
        pass
    with pytest.raises(CatalogError, match="no BGM blocks"):
        train_library_tokenizer(empty, "audio", epochs=1)
    assert cli_main(["--library", str(empty), "rqvae", "eval"]) == 2
    assert "no RQ-VAE tokenizer" in capsys.readouterr().err
