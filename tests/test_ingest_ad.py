"""`autocut ingest --kind ad`: a finished ad becomes a library source plus its ASR reference edit, once.

Ads are made as in tests/test_lm_asr.py (`autocut.lm.synthetic_ad`: espeak-ng sentences over a chord
bed, muxed under a lavfi video), so the spoken script is known. Everything runs for real: frame encoder,
silero VAD, the packaged whisper-base model, the audio encoder for the ad's BGM.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autocut.cli import main as cli_main
from autocut.errors import CatalogError, ConfigError
from autocut.library.ads import error_rate
from autocut.library.catalog import Catalog, ProductRecord
from autocut.library.ingest import IngestConfig, ingest_paths
from autocut.lm.synthetic_ad import make_synthetic_ad
from media_factory import make_video

pytest.importorskip("faster_whisper")

SCRIPT = ["No time for breakfast?", "This juicer cup makes fresh juice in thirty seconds."]


def _library(root: Path, *products: str) -> Path:
    with Catalog.open(root, create=True, writable=True) as cat:
        for pid in products:
            cat.upsert_product(ProductRecord(product_id=pid, name=pid.title(), split="val"))
    return root


def test_ad_ingest_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = make_synthetic_ad(tmp_path / "music_only.mp4", [], lead_s=1.5, tail_s=1.5).path  # chord bed, no voice
    mute = make_video(tmp_path / "mute.mp4", duration_s=3.0)  # no audio stream
    lib = _library(tmp_path / "lib", "juicer", "kettle")
    with pytest.raises(ConfigError, match="--product-id"):
        ingest_paths(lib, [quiet], kind="ad")
    with pytest.raises(ConfigError, match="finished ads"):
        ingest_paths(lib, [mute], kind="footage", product_id="juicer")
    # An unknown product stops the run before any file is read, naming the product and what exists.
    assert cli_main(["--library", str(lib), "ingest", "--kind", "ad", str(quiet), "--product-id", "blender"]) == 2
    err = capsys.readouterr().err
    assert "unknown product 'blender'" in err and "juicer" in err
    with pytest.raises(CatalogError, match="no products yet"):
        ingest_paths(_library(tmp_path / "empty"), [quiet], kind="ad", product_id="juicer")

    rep = ingest_paths(lib, [quiet, mute], kind="ad", product_id="juicer", config=IngestConfig(num_threads=1))
    reasons = {Path(r.path).name: r.reason for r in rep.results if r.status == "failed"}
    assert "no speech found" in reasons["music_only.mp4"] and "no audio stream" in reasons["mute.mp4"]
    with Catalog.open(lib) as cat:
        # The videos are stored (a re-run retries only the reference edit); no edit, no BGM was invented.
        assert sorted(s.kind for s in cat.sources()) == ["ad", "ad"]
        assert cat.reference_edits() == [] and cat.bgm_tracks() == []
        assert len(cat.failures()) == 2


def test_ad_reference_edit_stored_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = _library(tmp_path / "lib", "juicer")
    args = ["--library", str(lib), "ingest", "--kind", "ad", "--product-id", "juicer", "--threads", "1"]
    # A first, voiceless cut of the ad fails; the final cut at the same path succeeds and clears that failure.
    make_synthetic_ad(tmp_path / "ad.mp4", [], lead_s=1.5, tail_s=1.5)
    assert cli_main([*args, str(tmp_path / "ad.mp4")]) == 1  # exit 1: a file failed
    with Catalog.open(lib) as cat:
        assert [Path(p).name for p, _ in cat.failures()] == ["ad.mp4"]
        assert len(cat.sources()) == 1
    ad = make_synthetic_ad(tmp_path / "ad.mp4", SCRIPT, language="en", lead_s=1.5, tail_s=1.5)
    assert cli_main([*args, str(ad.path)]) == 0
    out = capsys.readouterr().out  # per-file lines (tqdm.write) and the summary
    assert "reference edit asr-2 stored (2 sentences)" in out and "added 1" in out
    with Catalog.open(lib) as cat:
        assert cat.failures() == []
        src = cat.video_by_path(ad.path)  # the new content (photo 2); the voiceless cut keeps photo 1
        [rec] = cat.reference_edits()
        [bgm] = cat.bgm_tracks()
    assert src.kind == "ad" and rec.edit_id == f"asr-{src.photo_id}"
    assert (rec.product_id, rec.language, rec.split, rec.audio_id) == ("juicer", "en", "val", bgm.audio_id)
    assert "ad_bgm" in bgm.flags
    assert error_rate(" ".join(SCRIPT), " ".join(s.sentence for s in rec.segments)) <= 0.2
    # One clip per sentence, tiling the ad: the cut sits in the pause between the two sentences.
    assert [s.photo_id for s in rec.segments] == [src.photo_id] * 2 and rec.segments[0].start_s == 0.0
    cut = rec.segments[1].start_s
    assert ad.speech_s[0][1] - 0.5 <= cut <= ad.speech_s[1][0] + 0.5
    assert abs(rec.segments[1].start_s + rec.segments[1].duration_s - ad.duration_s) < 0.1

    # The same ad again, and under another name: nothing new, still one edit and one BGM track.
    copy = shutil.copy(ad.path, tmp_path / "ad_copy.mp4")
    assert cli_main([*args, str(ad.path), str(copy)]) == 0
    out = capsys.readouterr().out
    assert "added 0" in out and "already present 2" in out
    assert out.count("reference edit asr-2 already stored (2 sentences)") == 2
    with Catalog.open(lib) as cat:
        assert cat.reference_edits() == [rec] and len(cat.bgm_tracks()) == 1 and len(cat.sources()) == 2
