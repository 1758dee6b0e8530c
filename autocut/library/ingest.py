"""Ingest media into the material library: validate, embed, segment, store (idempotent, resumable).

Footage: probe + validate -> content hash (skip if known) -> one ffmpeg decode giving 1 fps frames
at the encoder's size and a dense thumbnail stream -> CNN features (raw, stored) -> PCA 128-d ->
visual clips -> one catalog transaction. Decoding runs in ffmpeg while the previous batch is
embedded, so a source costs about max(decode, encode), not their sum.

BGM: decoded with ffmpeg, resampled to the audio encoder's rate, cut into excerpts, embedded per
block and pooled per excerpt (docs/method.md, "Encoders and the library PCA").

Finished ads (``kind="ad"``, with the product they advertise): stored as a source like footage, then
ASR turns them into a reference edit (`autocut.library.ads.reference_edit_from_ad`: one clip per spoken
sentence, BGM from the non-speech audio). One edit per ad: a re-run skips ads whose edit is stored.

A bad file is reported (and recorded in the catalog's `failures`) and skipped; the rest of the
batch goes on. Each source is committed on its own, so a kill loses at most the file in flight.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from autocut.errors import AutoCutError, CatalogError, ConfigError, MediaError
from autocut.library.catalog import Catalog, NewBgm, NewSource, ProductRecord
from autocut.library.ids import MAX_FRAME_INDEX
from autocut.library.layout import LibraryLayout
from autocut.library.media import (
    FrameBatch,
    MediaInfo,
    _run_sampler,
    content_hash,
    load_audio_mono,
    probe,
    validate_footage,
)
from autocut.library.segmentation import SegmentationConfig, clip_embeddings, segment_clips

if TYPE_CHECKING:
    from autocut.encoders.base import AudioEncoder, FrameEncoder
    from autocut.encoders.pca import FramePca

__all__ = [
    "FileResult",
    "IngestConfig",
    "IngestReport",
    "expand_paths",
    "ingest_paths",
]

log = logging.getLogger(__name__)

Kind = Literal["footage", "bgm", "ad"]

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
AUDIO_SUFFIXES = {".mp3", ".ogg", ".oga", ".wav", ".flac", ".m4a", ".aac", ".opus", ".wma"}


@dataclass(frozen=True)
class IngestConfig:
    frame_encoder: str = "efficientnet-lite0"
    frame_weights: Path | None = None  # local weights dir (resnet50)
    audio_encoder: str = "aisfx"
    audio_weights: Path | None = None  # local checkpoint (panns)
    frame_rate_hz: float = 1.0  # AutoCut 4.1 samples frames at 1 fps; ids assume it
    thumb_rate_hz: float = 5.0  # dense stream for boundary detection
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    bgm_excerpt_s: float | None = 25.0  # None = whole file is one track
    bgm_min_excerpt_s: float = 10.0  # shorter tails are dropped
    num_threads: int | None = None
    decode_threads: int = 2
    # Ads: spoken language for ASR (None = whisper detects it) and where the packaged whisper model is
    # joined once (None = LIBRARY/models/asr).
    ad_language: Literal["en", "zh"] | None = None
    asr_cache_dir: Path | None = None


@dataclass
class FileResult:
    path: str
    status: Literal["added", "skipped", "failed"]
    reason: str = ""
    ids: list[int] = field(default_factory=list)  # photo_id, or audio_ids of the excerpts
    duration_s: float = 0.0
    seconds: float = 0.0
    edit_id: str | None = None  # ads: the reference edit stored (or already present)
    n_sentences: int = 0  # ads: spoken sentences found = clips of the reference edit


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)

    @property
    def added(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "added"]

    @property
    def skipped(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        media_s = sum(r.duration_s for r in self.added)
        wall = sum(r.seconds for r in self.results)
        lines = [
            f"added {len(self.added)} ({media_s:.0f} s of media in {wall:.1f} s), "
            f"already present {len(self.skipped)}, failed {len(self.failed)}"
        ]
        lines += [
            f"  reference edit {r.edit_id}: {r.n_sentences} sentences from {r.path}" for r in self.added if r.edit_id
        ]
        lines += [f"  FAILED {r.path}: {r.reason}" for r in self.failed]
        return "\n".join(lines)


def expand_paths(paths: Iterable[str | os.PathLike[str]], kind: Kind) -> list[Path]:
    """Files given directly are kept as they are; directories are walked for media of `kind`."""
    suffixes = AUDIO_SUFFIXES if kind == "bgm" else VIDEO_SUFFIXES
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in suffixes))
        else:
            out.append(p)
    return out


class _Models:
    """Encoders and PCA, loaded once per ingest run (lazily: BGM-only runs never load the CNN)."""

    def __init__(self, cfg: IngestConfig, catalog: Catalog) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self._frame: FrameEncoder | None = None
        self._audio: AudioEncoder | None = None
        self._pca: FramePca | None = None
        self._asr_dir: Path | None = None

    @property
    def frame(self):
        if self._frame is None:
            from autocut.encoders import load_frame_encoder

            self._frame = load_frame_encoder(
                self.cfg.frame_encoder, weights_dir=self.cfg.frame_weights, num_threads=self.cfg.num_threads
            )
        return self._frame

    @property
    def audio(self):
        if self._audio is None:
            from autocut.encoders import load_audio_encoder

            self._audio = load_audio_encoder(
                self.cfg.audio_encoder, weights_path=self.cfg.audio_weights, num_threads=self.cfg.num_threads
            )
        return self._audio

    @property
    def pca(self):
        if self._pca is None:
            from autocut.library.pca import current_pca

            self._pca = current_pca(self.catalog, self.cfg.frame_encoder)
        return self._pca

    @property
    def asr_dir(self) -> Path:
        """The packaged whisper model, joined into the cache directory on first use."""
        if self._asr_dir is None:
            from autocut.library.ads import whisper_model_dir

            self._asr_dir = whisper_model_dir(self.cfg.asr_cache_dir or LibraryLayout(self.catalog.root).asr_models_dir)
        return self._asr_dir


def _threaded(gen: Iterator[FrameBatch], depth: int = 4) -> Iterator[FrameBatch]:
    """Run a generator in a thread so ffmpeg keeps decoding while the caller embeds.

    At most `depth` batches wait in the queue (frames stream through the encoder; memory does not
    grow with the video's length). When the caller stops early (an encoder error, a cancelled job),
    the producer closes `gen`, which stops its ffmpeg, instead of blocking on a full queue forever."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    sentinel = object()
    err: list[BaseException] = []
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in gen:
                if not put(item):
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            err.append(exc)
        finally:
            close = getattr(gen, "close", None)
            if stop.is_set() and close is not None:
                close()  # kills the decoder (see `_run_sampler`)
            put(sentinel)

    t = threading.Thread(target=run, name="ingest-decode", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not sentinel:
            yield item
    finally:
        stop.set()
        t.join(timeout=30)
    if err:
        raise err[0]


def _ingest_footage(path: Path, cat: Catalog, models: _Models, cfg: IngestConfig, kind: str) -> FileResult:
    t0 = time.perf_counter()
    info = validate_footage(probe(path))
    if info.duration_s * cfg.frame_rate_hz > MAX_FRAME_INDEX + 1:
        raise MediaError(
            path,
            f"longer than {MAX_FRAME_INDEX} s ({info.duration_s:.0f} s): AutoCut frame ids "
            "allow at most 9,999 1 fps frames per source; split the file first",
        )
    digest = content_hash(path)
    if (pid := cat.has_source(digest)) is not None:
        if cat.video_by_path(path) is None:
            cat.add_source_alias(path, pid)  # usable by its own path too
        return FileResult(
            str(path),
            "skipped",
            "already in the library (same content)",
            [pid],
            info.duration_s,
            time.perf_counter() - t0,
        )
    enc = models.frame
    thumbs: list[np.ndarray] = []
    raw_parts: list[np.ndarray] = []
    gen = _run_sampler(
        str(path),
        rate_hz=cfg.frame_rate_hz,
        size_hw=enc.input_size,
        thumb_rate_hz=cfg.thumb_rate_hz,
        thumb_size_hw=(36, 64),
        threads=cfg.decode_threads,
        batch_size=16,
        thumbs_out=thumbs,
    )
    for batch in _threaded(gen):
        raw_parts.append(enc.encode(batch.frames))
    if not raw_parts:
        raise MediaError(path, "no frames could be decoded (corrupt or truncated video stream)")
    raw = np.concatenate(raw_parts)
    vecs = models.pca.transform(raw)
    thumb_arr = thumbs[0] if thumbs else np.zeros((0, 36, 64), np.uint8)
    # Decoded length can be shorter than the container claims (truncated files): trust the decode.
    decoded_s = max(len(raw) / cfg.frame_rate_hz, len(thumb_arr) / cfg.thumb_rate_hz)
    duration_s = min(info.duration_s, decoded_s) if decoded_s > 0 else info.duration_s
    spans = segment_clips(thumb_arr, cfg.thumb_rate_hz, duration_s, cfg.segmentation)
    spans = [s for s in spans if s.start_frame < len(vecs)]
    clips = clip_embeddings(spans, vecs)
    probe_d = {k: v for k, v in info.__dict__.items() if k != "tags"}
    photo_id = cat.add_source(
        NewSource(
            content_hash=digest,
            path=str(path.resolve()),
            kind=kind,
            duration_s=duration_s,
            probe=probe_d,
            frame_times_s=[i / cfg.frame_rate_hz for i in range(len(vecs))],
            frames_raw=raw,
            frames=vecs,
            clip_spans=[(s.start_s, s.end_s) for s in spans],
            clips=clips,
        )
    )
    return FileResult(str(path), "added", "", [photo_id], duration_s, time.perf_counter() - t0)


def _excerpt_windows(duration_s: float, cfg: IngestConfig) -> list[tuple[float, float]]:
    if cfg.bgm_excerpt_s is None or duration_s <= cfg.bgm_excerpt_s * 1.5:
        return [(0.0, duration_s)]
    n = int(duration_s // cfg.bgm_excerpt_s)
    wins = [(k * cfg.bgm_excerpt_s, cfg.bgm_excerpt_s) for k in range(n)]
    tail = duration_s - n * cfg.bgm_excerpt_s
    if tail >= cfg.bgm_min_excerpt_s:
        wins.append((n * cfg.bgm_excerpt_s, tail))
    return wins


def _ingest_bgm(path: Path, cat: Catalog, models: _Models, cfg: IngestConfig) -> FileResult:
    t0 = time.perf_counter()
    info: MediaInfo = probe(path)
    if not info.has_audio:
        raise MediaError(path, "no audio stream (BGM needs audio)")
    if info.duration_s < cfg.bgm_min_excerpt_s:
        raise MediaError(path, f"too short for BGM: {info.duration_s:.1f} s < {cfg.bgm_min_excerpt_s:.0f} s")
    digest = content_hash(path)
    wins = _excerpt_windows(info.duration_s, cfg)
    keys = [hashlib.sha256(f"{digest}:{a:.3f}:{d:.3f}".encode()).hexdigest() for a, d in wins]
    todo = [(w, k) for w, k in zip(wins, keys) if cat.has_bgm(k) is None]
    if not todo:
        return FileResult(
            str(path), "skipped", "already in the library (same content)", [], info.duration_s, time.perf_counter() - t0
        )
    enc = models.audio
    wave = load_audio_mono(path, enc.sample_rate_hz)
    tracks = []
    for (start, dur), key in todo:
        a, b = int(start * enc.sample_rate_hz), int((start + dur) * enc.sample_rate_hz)
        piece = wave[a:b]
        if len(piece) < enc.sample_rate_hz:  # decoded shorter than the container claimed
            continue
        blocks = enc.encode_blocks(piece)
        track = blocks.mean(axis=0)
        track = track / max(float(np.linalg.norm(track)), 1e-12)
        tracks.append(
            NewBgm(
                content_hash=key,
                source_path=str(path.resolve()),
                start_s=start,
                duration_s=len(piece) / enc.sample_rate_hz,
                blocks=blocks,
                track=track,
                title=f"{path.stem} @{start:.0f}s",
            )
        )
    if not tracks:
        raise MediaError(path, "no decodable audio in the file")
    ids = cat.add_bgm(tracks)
    return FileResult(str(path), "added", "", ids, sum(t.duration_s for t in tracks), time.perf_counter() - t0)


def _ingest_ad(path: Path, cat: Catalog, models: _Models, cfg: IngestConfig, product: ProductRecord) -> FileResult:
    """Store a finished ad as a source, then its ASR reference edit (AutoCut 4.1), once per ad."""
    from autocut.library.ads import reference_edit_from_ad
    from autocut.library.vad import VAD_SAMPLE_RATE_HZ, speech_regions

    t0 = time.perf_counter()
    res = _ingest_footage(path, cat, models, cfg, "ad")
    src = cat.source(res.ids[0])
    if src.kind != "ad":
        raise MediaError(
            path,
            f"this content is already in the library as {src.kind} (photo {src.photo_id}, "
            f"{src.path}); a finished ad cannot also be footage",
        )
    if not src.has_audio:
        raise MediaError(path, "no audio stream: a finished ad's reference edit is cut at its spoken sentences")
    edit_id = f"asr-{src.photo_id}"  # reference_edit_from_ad's default id: one edit per ad source
    old = next((e for e in cat.reference_edits() if e.edit_id == edit_id), None)
    if old is not None and old.product_id == product.product_id:  # another product: redone and replaced
        return FileResult(
            str(path),
            "skipped",
            f"already in the library with reference edit {edit_id}",
            [src.photo_id],
            src.duration_s,
            time.perf_counter() - t0,
            edit_id,
            len(old.segments),
        )
    # The stored copy is the one the catalog knows by path (the same content may come under another name).
    ad_path = Path(src.path)
    if not ad_path.exists():
        raise MediaError(
            path,
            f"same content as photo {src.photo_id}, ingested from {src.path}, which no "
            "longer exists: restore that file to build its reference edit",
        )
    # Whisper makes words up on silence and music (a lone "You" is typical), so an ad where voice activity
    # detection hears no speech is refused before the ASR can invent a script for it.
    if not speech_regions(load_audio_mono(ad_path, VAD_SAMPLE_RATE_HZ), VAD_SAMPLE_RATE_HZ):
        raise MediaError(
            path, "no speech found (voice activity detection heard none): a reference edit needs the ad's spoken script"
        )
    found = reference_edit_from_ad(
        cat,
        ad_path,
        product_id=product.product_id,
        model_dir=models.asr_dir,
        language=cfg.ad_language,
        edit_id=edit_id,
        audio_encoder=models.audio,
        num_threads=cfg.num_threads or 2,
    )
    return FileResult(
        str(path),
        "added",
        "",
        [src.photo_id],
        src.duration_s,
        time.perf_counter() - t0,
        edit_id,
        len(found.record.segments),
    )


def _product_for_ads(cat: Catalog, product_id: str | None) -> ProductRecord:
    if not product_id:
        raise ConfigError("ingesting finished ads needs the product they advertise (--product-id)")
    try:
        return cat.product(product_id)
    except CatalogError:
        known = [p.product_id for p in cat.products()]
        hint = (
            f"the library has {len(known)} products, e.g. {', '.join(known[:5])}"
            if known
            else "the library has no products yet (`autocut demo-world build` stores its products)"
        )
        raise CatalogError(f"unknown product {product_id!r}: {hint}") from None


ProgressFn = Callable[[int, int, FileResult], None]


def ingest_paths(
    library: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    *,
    kind: Kind = "footage",
    config: IngestConfig | None = None,
    progress: ProgressFn | None = None,
    product_id: str | None = None,
) -> IngestReport:
    """Ingest files (or directories of them) into `library`. Bad files are reported and skipped.

    `kind="ad"`: finished ads of product `product_id` (which must be in the library), each stored with
    its ASR reference edit. An ad with no recognisable speech is reported as failed (its video stays
    stored; a re-run retries the ASR).
    """
    cfg = config or IngestConfig()
    if kind not in ("footage", "bgm", "ad"):
        raise ConfigError(f"unknown ingest kind {kind!r} (expected footage, bgm or ad)")
    if product_id is not None and kind != "ad":
        raise ConfigError(f"a product id is for finished ads (kind 'ad'), not {kind}")
    files = expand_paths(paths, kind)
    report = IngestReport()
    # Ads need both encoders: frames for the source, audio for the ad's BGM track.
    with Catalog.open(
        library,
        writable=True,
        frame_encoder=cfg.frame_encoder if kind != "bgm" else None,
        audio_encoder=cfg.audio_encoder if kind != "footage" else None,
    ) as cat:
        product = _product_for_ads(cat, product_id) if kind == "ad" else None
        models = _Models(cfg, cat)
        for i, path in enumerate(files):
            t0 = time.perf_counter()
            try:
                if kind == "bgm":
                    res = _ingest_bgm(path, cat, models, cfg)
                elif product is not None:
                    res = _ingest_ad(path, cat, models, cfg, product)
                else:
                    res = _ingest_footage(path, cat, models, cfg, kind)
            except AutoCutError as exc:
                log.warning("skipping %s: %s", path, exc)
                cat.record_failure(str(path), kind, str(exc))
                res = FileResult(str(path), "failed", str(exc), seconds=time.perf_counter() - t0)
            else:
                cat.clear_failure(str(path))  # e.g. an ad whose ASR failed before and succeeds now
            report.results.append(res)
            if progress is not None:
                progress(i + 1, len(files), res)
    return report
