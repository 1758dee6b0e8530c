"""`make demo` stage caching: when each stage's output counts as current, on real artifacts in tmp dirs.

A real (tiny) catalog, real RQ-VAE checkpoints and real FAISS indexes; the compact planner's model
directory is laid out the way `autocut train compact` writes it (the files the freshness check reads),
and the planner stage runs with its training and held-out check replaced by stand-ins.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from autocut.demo.cli import build_parser
from autocut.demo.config import DemoConfig
from autocut.demo.freshness import compact_freshness, index_freshness, rqvae_freshness
from autocut.demo.stages import Demo
from autocut.encoders.base import l2_normalize
from autocut.library.catalog import Catalog, NewBgm
from autocut.library.codes import train_library_tokenizer
from autocut.library.indexing import rebuild_indexes
from autocut.library.layout import LibraryLayout
from autocut.lm import compact_data, compact_heldout, compact_train
from autocut.lm.compact_train import CARD_NAME, read_card
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


# A held-out check as `autocut.lm.compact_heldout.heldout_check` records it: the LM resolved better on the
# gate metric and worse on none (`autocut.lm.card.lm_beats_heuristic`).
_WON = {
    "split": "val",
    "lm_wins": True,
    "reading": "held-out check (val): ... -> the LM wins",
    "metrics": {"precision_role": {"diff": {"diff": 0.2, "lo": 0.1, "hi": 0.3, "verdict": "better"}}},
}


def _compact_model(library, made_at: float, heldout: dict | None) -> None:
    """A compact planner's model directory as `train_compact` + `write_card` leave it (no weights)."""
    model = LibraryLayout(library).compact_model_dir
    model.mkdir(parents=True, exist_ok=True)
    card = {
        "format": "autocut-compact-planner",
        "train": {"steps": 7, "examples": 56, "seconds": 3.0, "final_loss": 1.25},
        "heldout": heldout,
    }
    (model / "config.json").write_text("{}")
    (model / CARD_NAME).write_text(json.dumps(card))
    _set_mtime(model / "config.json", made_at)
    _set_mtime(model / CARD_NAME, made_at)


def test_compact_planner_current_when_checked_and_newer_than_tokenizers_and_world(library):
    model = LibraryLayout(library).compact_model_dir
    fr = compact_freshness(library)
    assert not fr.current and not fr.resume and str(model) in fr.reason
    _compact_model(library, time.time() - 600, _WON)  # after the world (an hour ago)
    train_library_tokenizer(library, "audio", epochs=1)  # retrained after the model
    fr = compact_freshness(library)
    assert not fr.current and not fr.resume and "older than the tokenizers" in fr.reason
    _compact_model(library, time.time() + 5, _WON)
    fr = compact_freshness(library)
    assert fr.current and "7 steps" in fr.reason and "the LM wins" in fr.reason, fr.reason
    # Trained after its inputs, but its held-out check was never recorded: only the check is left to do.
    _compact_model(library, time.time() + 5, None)
    fr = compact_freshness(library)
    assert not fr.current and fr.resume and "no held-out check" in fr.reason
    # A world finished after the model: retrain.
    _compact_model(library, time.time() + 5, _WON)
    _set_mtime(library / "world" / "world.json", time.time() + 60)
    fr = compact_freshness(library)
    assert not fr.current and not fr.resume and "older than the world" in fr.reason


def test_planner_stage_trains_records_the_check_then_is_cached(library, monkeypatch, capsys):
    for modality in ("video", "audio"):
        train_library_tokenizer(library, modality, epochs=1)
    model = LibraryLayout(library).compact_model_dir
    calls: dict[str, list] = {"load": [], "train": [], "check": []}

    def load_world_data(lib, split, *, video, audio):
        calls["load"].append(split)
        return type("Data", (), {"ads": [1, 2, 3], "split": split})()

    def train_compact(data, out, *, codebooks, tokenizer_src, config, progress, val_data):
        calls["train"].append((data.split, val_data.split, config.budget_s, sorted(codebooks)))
        card = {
            "format": "autocut-compact-planner",
            "train": {"steps": 7, "examples": 56, "seconds": 3.0, "final_loss": 1.25},
            "heldout": None,
        }
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        compact_train.write_card(out, card)
        return card

    def heldout_check(lib, model_dir, *, split, max_ads):
        calls["check"].append((split, max_ads))
        return dict(_WON)

    monkeypatch.setattr(compact_data, "load_world_data", load_world_data)
    monkeypatch.setattr(compact_train, "train_compact", train_compact)
    monkeypatch.setattr(compact_heldout, "heldout_check", heldout_check)
    demo = Demo(DemoConfig(library=library, planner_budget_s=42.0))
    demo.planner()
    assert calls == {
        "load": ["train", "val"],
        "train": [("train", "val", 42.0, ["audio", "video"])],
        "check": [("val", 20)],
    }
    assert read_card(model)["heldout"]["lm_wins"] is True
    t = demo.report.timings[-1]
    assert (t.name, t.status) == ("planner", "ran")
    assert "7 steps" in t.detail and "loss 1.250" in t.detail and "the LM beat the heuristic" in t.detail
    assert "the LM wins" in capsys.readouterr().out  # the check's reading is printed
    demo.planner()
    assert demo.report.timings[-1].status == "cached" and len(calls["train"]) == 1
    # A run stopped during the check: the next one runs only the check.
    card = read_card(model)
    card["heldout"] = None
    compact_train.write_card(model, card)
    demo.planner()
    assert len(calls["train"]) == 1 and len(calls["check"]) == 2
    assert read_card(model)["heldout"] is not None and demo.report.timings[-1].status == "ran"
    # --force planner retrains and keeps the replaced model.
    Demo(DemoConfig(library=library, force=frozenset({"planner"}))).planner()
    assert len(calls["train"]) == 2 and (model.parent / "model.previous" / CARD_NAME).exists()


def test_indexes_current_until_the_library_grows(library, synthetic_source):
    assert not index_freshness(library).current
    rebuild_indexes(library, ["frames", "clips", "bgm"])
    fr = index_freshness(library)
    assert fr.current and "frames 180" in fr.reason
    with Catalog.open(library, writable=True) as cat:
        cat.add_source(synthetic_source(7))
    fr = index_freshness(library)
    assert not fr.current and "frames index holds 180 vectors, the library 210" in fr.reason


def test_auto_planner_is_the_compact_planner_only_when_its_check_won(tmp_path):
    assert resolve_planner("random", tmp_path) == "random"
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "heuristic"
    # A token LM has no recorded check: never the default.
    LibraryLayout(tmp_path).planner_model_dir.mkdir(parents=True)
    (LibraryLayout(tmp_path).planner_model_dir / "config.json").write_text("{}")
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "heuristic"
    _compact_model(tmp_path, time.time(), None)
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "heuristic"
    lost = {**_WON, "lm_wins": False, "metrics": {"precision_role": {"diff": {"lo": -0.1, "verdict": "tie"}}}}
    _compact_model(tmp_path, time.time(), lost)
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "heuristic"
    _compact_model(tmp_path, time.time(), _WON)
    assert resolve_planner(AUTO_PLANNER, tmp_path) == "compact"
    assert resolve_planner("heuristic", tmp_path) == "heuristic"


def test_cli_refuses_unknown_stage_to_force(tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--force", "everything"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--force", "lm"])  # the token LM stage is gone
    args = build_parser().parse_args(["--force", "planner", "--force", "indexes", "--world-size", "small"])
    assert args.force == ["planner", "indexes"] and args.world_size == "small"
    assert build_parser().parse_args([]).planner_budget_s == DemoConfig(library=tmp_path).planner_budget_s == 600.0
    assert build_parser().parse_args(["--planner-budget-s", "30"]).planner_budget_s == 30.0
