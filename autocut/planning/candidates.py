"""A request's clip pool -> the candidate clips a planner chooses from
(docs/method.md, "Candidates and prompt budget").

Each pool item (a library video, or an upload already ingested into the library) is split into
its visual clips from segmentation, or kept whole (an option). A candidate carries at most K of
its 1 fps frames, uniformly sampled, because every frame costs ~10 prompt tokens
(`<|frame_start|>` + 8 codes + `<|frame_end|>`): a 60 s clip would otherwise be 600 tokens.
A pool whose candidates do not fit the prompt budget is refused with the limit named.

The `CandidatePool` also keeps every 1 fps frame and visual clip of the pool's sources, which is
what grounding searches (a per-request exact index, so fresh uploads need no index rebuild).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from autocut.errors import CatalogError, ConfigError, PlanError
from autocut.library.catalog import Catalog, ClipRow, SourceRow
from autocut.library.ids import split_frame_ids
from autocut.types import PoolItem

__all__ = [
    "CLIP_OVERHEAD_TOKENS",
    "TOKENS_PER_FRAME",
    "Candidate",
    "CandidateCache",
    "CandidateConfig",
    "CandidatePool",
    "build_candidates",
    "resolve_pool",
    "sample_uniform",
]

log = logging.getLogger(__name__)

# One frame in a prompt: <|frame_start|> + 8 video code tokens + <|frame_end|> (docs/method.md, "Token vocabulary").
TOKENS_PER_FRAME = 10
# Per candidate: "k)" (about 2 tokens) + <|clip_start|><|video_start|> ... <|video_end|><|clip_end|>.
CLIP_OVERHEAD_TOKENS = 6

SplitMode = Literal["clips", "whole"]


@dataclass(frozen=True)
class CandidateConfig:
    """How a pool becomes candidates, and the prompt budget they must fit."""

    # "clips": one candidate per visual clip from segmentation; "whole": one per pool item.
    split: SplitMode = "clips"
    # K: frames shown per candidate, uniformly sampled over its span
    # (docs/method.md, "Candidates and prompt budget"). As in the corpus the LM trains on
    # (`CorpusConfig.max_frames_per_clip`), K is halved until the listing fits.
    max_frames: int = 8
    # Hard cap on candidates (selection prompts list them all; answers index them 1..N).
    max_candidates: int = 64
    # Token budget for the candidate listing; the SFT cutoff is 4,000 tokens (AutoCut Table 4) and the
    # product header, script and answer need the rest.
    max_prompt_tokens: int = 3000

    def __post_init__(self) -> None:
        if self.split not in ("clips", "whole"):
            raise ConfigError(f"candidate split must be 'clips' or 'whole', got {self.split!r}")
        if self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.max_candidates < 1 or self.max_prompt_tokens < 1:
            raise ConfigError("max_candidates and max_prompt_tokens must be >= 1")


@dataclass(frozen=True, eq=False)
class Candidate:
    """One clip a planner may choose: a span of a source plus the frames a prompt shows of it."""

    index: int  # 0-based position in the pool's candidate list (prompts show index + 1)
    pool_item: int  # 0-based index of the request's pool item it came from
    photo_id: int
    source_path: str  # absolute path of the source video
    source_duration_s: float
    start_s: float
    end_s: float
    clip_id: int | None  # the visual clip it is (None for a whole source of several clips)
    frame_ids: np.ndarray  # (K,) int64, the uniformly sampled 1 fps frames shown in prompts
    frame_vectors: np.ndarray  # (K, D) float32, their 128-d embeddings
    vector: np.ndarray  # (D,) clip embedding: mean of all its 1 fps frames, L2-normalised
    text: str = ""  # a known text snippet (pool item text), empty if none

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def prompt_tokens(self) -> int:
        return CLIP_OVERHEAD_TOKENS + TOKENS_PER_FRAME * len(self.frame_ids)


@dataclass(eq=False)
class CandidatePool:
    """Candidates of one request plus the pool-wide frames and clips grounding searches."""

    candidates: list[Candidate]
    sources: dict[int, SourceRow]  # photo_id -> source, in pool order
    frame_ids: np.ndarray  # (F,) int64 every 1 fps frame of the pool's sources
    frame_vectors: np.ndarray  # (F, D) float32
    clip_ids: np.ndarray  # (C,) int64 every visual clip of the pool's sources
    clip_vectors: np.ndarray  # (C, D) float32
    clip_rows: dict[int, ClipRow] = field(default_factory=dict)  # clip_id -> row
    config: CandidateConfig = field(default_factory=CandidateConfig)

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def photo_ids(self) -> list[int]:
        return list(self.sources)

    @property
    def prompt_tokens(self) -> int:
        """Tokens the candidate listing takes in a prompt (without product info and script)."""
        return sum(c.prompt_tokens for c in self.candidates)

    @property
    def vectors(self) -> np.ndarray:
        """(N, D) clip embeddings of the candidates, in candidate order."""
        return np.stack([c.vector for c in self.candidates]) if self.candidates else np.zeros((0, 0), np.float32)

    @property
    def durations_s(self) -> np.ndarray:
        return np.array([c.duration_s for c in self.candidates], np.float64)


def sample_uniform(n: int, k: int) -> np.ndarray:
    """Indices of `k` items spread evenly over `n` (all of them when n <= k); always includes item 0."""
    if n <= k:
        return np.arange(n)
    # Centres of k equal bins, so a 2-frame pick of 10 frames is (2, 7), not the two ends.
    return np.unique(np.floor((np.arange(k) + 0.5) * n / k).astype(np.int64).clip(0, n - 1))


def _l2(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return (x / n).astype(np.float32) if n > 1e-12 else x.astype(np.float32)


def resolve_pool(catalog: Catalog, pool: list[PoolItem]) -> list[tuple[int, SourceRow, PoolItem]]:
    """Pool items -> (pool position, source, item), resolving paths to ingested sources.

    Uploads are ingested before planning, so a `path` must name a library source; the same source
    listed twice is kept once.
    """
    if not pool:
        raise PlanError("the clip pool is empty: give at least one photo_id or ingested video path")
    out: list[tuple[int, SourceRow, PoolItem]] = []
    seen: set[int] = set()
    for i, item in enumerate(pool):
        if item.photo_id is not None:
            try:
                src = catalog.source(item.photo_id)
            except CatalogError:
                raise PlanError(
                    f"pool item {i + 1}: unknown photo_id {item.photo_id} (no such video in library {catalog.root})"
                ) from None
        else:
            assert item.path is not None  # PoolItem's validator guarantees one of the two
            found = catalog.video_by_path(item.path)
            if found is None and not Path(item.path).is_absolute():
                found = catalog.video_by_path(catalog.root / item.path)
            if found is None:
                raise PlanError(
                    f"pool item {i + 1}: {item.path} is not in library {catalog.root}; "
                    "uploads must be ingested (`autocut ingest`) before planning"
                )
            src = found
        if src.photo_id in seen:
            log.info("pool item %d repeats photo_id %d; using it once", i + 1, src.photo_id)
            continue
        if src.n_frames < 1:
            raise PlanError(f"pool item {i + 1}: photo_id {src.photo_id} ({src.path}) has no decoded frames")
        seen.add(src.photo_id)
        out.append((i, src, item))
    return out


def build_candidates(catalog: Catalog, pool: list[PoolItem], config: CandidateConfig | None = None) -> CandidatePool:
    """Resolve the pool, cut it into candidates, and check the prompt budget."""
    cfg = config or CandidateConfig()
    resolved = resolve_pool(catalog, pool)
    photo_ids = [src.photo_id for _, src, _ in resolved]
    frame_ids, frame_vecs = catalog.frame_vectors(photo_ids)  # ordered by frame_id: per photo, by time
    clip_ids, clip_vecs = catalog.clip_vectors(photo_ids)
    if len(frame_ids) == 0:
        raise PlanError("the pool's videos have no frame embeddings (ingest did not finish?)")
    clip_rows = {r.clip_id: r for pid in photo_ids for r in catalog.clips(pid)}
    clip_pos = {int(c): i for i, c in enumerate(clip_ids)}
    frame_photo, frame_index = split_frame_ids(frame_ids)

    spans_of: list[
        tuple[int, SourceRow, PoolItem, list[tuple[float, float, int | None, np.ndarray, np.ndarray, np.ndarray]]]
    ] = []
    for pool_pos, src, item in resolved:
        mask = frame_photo == src.photo_id
        f_ids, f_idx, f_vecs = frame_ids[mask], frame_index[mask], frame_vecs[mask]
        rows = sorted((r for r in clip_rows.values() if r.photo_id == src.photo_id), key=lambda r: r.start_s)
        spans: list[tuple[float, float, int | None, ClipRow | None]]
        if cfg.split == "whole" or not rows:
            spans = [(0.0, float(src.duration_s), rows[0].clip_id if len(rows) == 1 else None, None)]
        else:
            spans = [(float(r.start_s), float(r.end_s), r.clip_id, r) for r in rows]
        built = []
        for start_s, end_s, cid, row in spans:
            if row is not None:
                inside = (f_idx >= row.start_frame) & (f_idx < row.start_frame + row.duration_frames)
            else:
                inside = (f_idx >= math.ceil(start_s - 1e-6)) & (f_idx < end_s)
            if not inside.any():
                # A clip shorter than a frame interval: show the nearest 1 fps frame.
                inside = np.zeros_like(inside)
                inside[int(np.argmin(np.abs(f_idx - start_s)))] = True
            span_ids, span_vecs = f_ids[inside], f_vecs[inside]
            if cid is not None and cid in clip_pos and row is not None:
                vec = clip_vecs[clip_pos[cid]]
            else:
                vec = span_vecs.mean(axis=0)
            built.append((start_s, min(end_s, float(src.duration_s)), cid, span_ids, span_vecs, _l2(vec)))
        spans_of.append((pool_pos, src, item, built))
    n_candidates = sum(len(spans) for *_, spans in spans_of)
    if not n_candidates:
        raise PlanError("the pool yields no candidate clips")
    if n_candidates > cfg.max_candidates:
        raise PlanError(
            f"the pool yields {n_candidates} candidate clips from {len(resolved)} videos; the limit is "
            f"{cfg.max_candidates} (a prompt lists every candidate): send fewer or shorter videos"
            + (", or keep videos whole (split='whole')" if cfg.split == "clips" else "")
        )

    def make(k: int) -> CandidatePool:
        candidates: list[Candidate] = []
        for pool_pos, src, item, spans in spans_of:
            for start_s, end_s, cid, span_ids, span_vecs, vec in spans:
                pick = sample_uniform(len(span_ids), k)
                candidates.append(
                    Candidate(
                        index=len(candidates),
                        pool_item=pool_pos,
                        photo_id=src.photo_id,
                        source_path=src.path,
                        source_duration_s=float(src.duration_s),
                        start_s=start_s,
                        end_s=end_s,
                        clip_id=cid,
                        frame_ids=span_ids[pick].astype(np.int64),
                        frame_vectors=span_vecs[pick],
                        vector=vec,
                        text=item.text,
                    )
                )
        return CandidatePool(
            candidates=candidates,
            sources={src.photo_id: src for _, src, _ in resolved},
            frame_ids=frame_ids,
            frame_vectors=frame_vecs,
            clip_ids=clip_ids,
            clip_vectors=clip_vecs,
            clip_rows=clip_rows,
            config=replace(cfg, max_frames=k),
        )

    k = cfg.max_frames
    result = make(k)
    while result.prompt_tokens > cfg.max_prompt_tokens and k > 1:
        k = max(1, k // 2)
        result = make(k)
    if result.prompt_tokens > cfg.max_prompt_tokens:
        raise PlanError(
            f"the pool's {n_candidates} candidates need {result.prompt_tokens} prompt tokens even at one frame "
            f"per clip ({TOKENS_PER_FRAME} tokens a frame + {CLIP_OVERHEAD_TOKENS} per clip); the limit is "
            f"{cfg.max_prompt_tokens}: send fewer or shorter videos"
        )
    log.debug(
        "pool of %d videos -> %d candidates at K=%d frames, %d prompt tokens",
        len(resolved),
        n_candidates,
        k,
        result.prompt_tokens,
    )
    return result


class CandidateCache:
    """`build_candidates` remembered per (library, pool items, config), for a caller that plans one pool many
    times (the evaluator plans each sample with every planner and seed).

    Planners and grounding only read a pool, so the same `CandidatePool` is handed out again. A refused pool is
    not remembered (it raises again, as a fresh build would). The library must not change while the cache is
    used; at most `max_entries` pools are kept, least recently used dropped first.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max(1, max_entries)
        self._pools: OrderedDict[tuple, CandidatePool] = OrderedDict()
        self.hits = 0
        self.builds = 0

    def build(self, catalog: Catalog, pool: list[PoolItem], config: CandidateConfig | None = None) -> CandidatePool:
        """`build_candidates(catalog, pool, config)`, built once per key."""
        cfg = config or CandidateConfig()
        key = (str(catalog.root), tuple(item.model_dump_json() for item in pool), cfg)
        found = self._pools.get(key)
        if found is not None:
            self._pools.move_to_end(key)
            self.hits += 1
            return found
        built = build_candidates(catalog, pool, cfg)
        self.builds += 1
        self._pools[key] = built
        while len(self._pools) > self.max_entries:
            self._pools.popitem(last=False)
        return built
