"""`make demo` stage caching: when each stage's output counts as current, on real artifacts in tmp dirs.

A real (tiny) catalog, a real RQ-VAE checkpoint and real FAISS indexes; LM run directories are laid
out the way `autocut train` writes them (the files the freshness check reads), without training.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from autocut.demo.cli import build_parser
from autocut.demo.freshness import (
    Freshness,
    corpus_freshness,
    index_freshness,
    lm_freshness,
    rqvae_freshness,
)
from autocut.encoders.base import l2_normalize
from autocut.library.catalog import Catalog, NewBgm
from autocut.library.codes import train_library_tokenizer
from autocut.library.indexing import rebuild_indexes
from autocut.library.layout import LibraryLayout
from server.tasks import AUTO_PLANNER, resolve_planner

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _set_mtime(path, t: float) -> None:
    os.utime(path, (t, t))


@pytest.fixture
def library(tmp_path, synthetic_source):
    """A small real catalog plus a complete world manifest dated one hour ago."""
    root = tmp_path / "lib"
    rng = np.random.default_rng(0)
    with Catalog.open(root, writable=True, frame_encoder="enc-test", audio_encoder="aud-test") as cat:
        cat.set_meta("pca_version", "pca-test-1")
        for i in range(1, 7):
            cat.add_source(synthetic_source(i))
        tracks = []
        for k in range(8):
            blocks = l2_normalize(rng.standard_normal(64) + rng.normal(0, 0.3, (4, 64)))
            tracks.append(NewBgm(f"b{k}", f"/music/{k}.ogg", 0.0, 9.2, blocks, l2_normalize(blocks.mean(axis=0))))
        cat.add_bgm(tracks)
    world = root / "world" / "world.json"
    world.parent.mkdir(parents=True)
    world.write_text(json.dumps({"complete": True}))
    _set_mtime(world, time.time() - 3600)
    return root


def test_rqvae_current_only_for_this_vector_space_and_after_the_world(library):
    fr = rqvae_freshness(library, "video", pca_version="pca-test-1", encoder="enc-test")
    assert not fr.current and "no video tokenizer" in fr.reason
    train_library_tokenizer(library, "video", epochs=1)
    fr = rqvae_freshness(library, "video", pca_version="pca-test-1", encoder="enc-test")
    assert fr.current, fr.reason
    # Another PCA or encoder: the codes would mean something else.
    fr = rqvae_freshness(library, "video", pca_version="pca-test-2", encoder="enc-test")
    assert not fr.current and "pca-test-2" in fr.reason
    fr = rqvae_freshness(library, "video", pca_version="pca-test-1", encoder="other-enc")
    assert not fr.current and "other-enc" in fr.reason
    # A world finished after the tokenizer was trained: retrain.
    _set_mtime(library / "world" / "world.json", time.time() + 60)
    fr = rqvae_freshness(library, "video", pca_version="pca-test-1", encoder="enc-test")
    assert not fr.current and "older than the world" in fr.reason


def _write_corpus(library, created_at: float, pca: str = "pca-test-1") -> None:
    corpus = library / "lm" / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "align_train.jsonl").write_text("{}\n")
    (corpus / "manifest.json").write_text(
        json.dumps({"created_at": created_at, "pca_version": pca, "files": {"align_train.jsonl": 1}})
    )


def test_corpus_is_stale_after_a_tokenizer_retrain(library):
    assert not corpus_freshness(library, pca_version="pca-test-1").current
    _write_corpus(library, time.time() - 600)
    train_library_tokenizer(library, "audio", epochs=1)  # trained after the corpus was built
    fr = corpus_freshness(library, pca_version="pca-test-1")
    assert not fr.current and "older than the tokenizers" in fr.reason
    _write_corpus(library, time.time() + 1)
    assert corpus_freshness(library, pca_version="pca-test-1").current
    assert "pca-test-9" in corpus_freshness(library, pca_version="pca-test-9").reason
    (library / "lm" / "corpus" / "align_train.jsonl").unlink()
    fr = corpus_freshness(library, pca_version="pca-test-1")
    assert not fr.current and "align_train.jsonl" in fr.reason


def _trained_model(run_dir, created_at: float, data: list, init) -> None:
    model = run_dir / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "autocut_lm.json").write_text(
        json.dumps({"created_at": created_at, "steps": 7, "stop_reason": "time_budget"})
    )
    (run_dir / "run.json").write_text(json.dumps({"data_files": [str(p) for p in data], "init_dir": str(init)}))


def test_lm_model_current_when_newer_than_every_input(tmp_path):
    run, data, init = tmp_path / "sft", [tmp_path / "a.jsonl"], tmp_path / "align" / "model"
    now = time.time()
    assert lm_freshness(run, inputs={"the corpus": now}, data_files=data, init_dir=init) == Freshness(
        False, f"no trained model in {run / 'model'}"
    )
    _trained_model(run, now, data, init)
    fr = lm_freshness(
        run, inputs={"the corpus": now - 10, "the aligned model": now - 5}, data_files=data, init_dir=init
    )
    assert fr.current and "7 steps" in fr.reason
    # The aligned model was retrained after this SFT model: the SFT model is stale.
    fr = lm_freshness(
        run, inputs={"the corpus": now - 10, "the aligned model": now + 5}, data_files=data, init_dir=init
    )
    assert not fr.current and not fr.resume and "the aligned model" in fr.reason


def test_lm_interrupted_run_resumes_only_on_the_same_init_and_data(tmp_path):
    run, data, init = tmp_path / "align", [tmp_path / "a.jsonl"], tmp_path / "backbone"
    ckpt = run / "checkpoints" / "step-000040"
    ckpt.mkdir(parents=True)
    (ckpt / "progress.json").write_text(json.dumps({"step": 40}))
    (run / "run.json").write_text(json.dumps({"data_files": [str(data[0])], "init_dir": str(init)}))
    fr = lm_freshness(run, inputs={}, data_files=data, init_dir=init)
    assert not fr.current and fr.resume and "step-000040" in fr.reason
    fr = lm_freshness(run, inputs={}, data_files=[tmp_path / "other.jsonl"], init_dir=init)
    assert not fr.current and not fr.resume


def test_indexes_current_until_the_library_grows(library, synthetic_source):
    assert not index_freshness(library).current
    rebuild_indexes(library, ["frames", "clips", "bgm"])
    fr = index_freshness(library)
    assert fr.current and "frames 180" in fr.reason
    with Catalog.open(library, writable=True) as cat:
        cat.add_source(synthetic_source(7))
    fr = index_freshness(library)
    assert not fr.current and "frames index holds 180 vectors, the library 210" in fr.reason


def test_auto_planner_is_the_token_lm_once_trained(tmp_path):
    assert resolve_planner("random", tmp_path) == "random"
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "heuristic"
    LibraryLayout(tmp_path).planner_model_dir.mkdir(parents=True)
    (LibraryLayout(tmp_path).planner_model_dir / "config.json").write_text("{}")
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "token"
    assert resolve_planner("heuristic", tmp_path) == "heuristic"


def test_cli_refuses_unknown_stage_to_force():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--force", "everything"])
    args = build_parser().parse_args(["--force", "lm", "--force", "indexes", "--world-size", "small"])
    assert args.force == ["lm", "indexes"] and args.world_size == "small"
