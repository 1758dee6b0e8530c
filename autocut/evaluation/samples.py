"""Evaluation samples: the planning requests built from a held-out split's reference ads, with what each
is scored against (candidate spans, positives, reference sequence, sentences, BGM track, selling points).

Each reference ad of the split (`Catalog.reference_edits(split)`) gives two planning requests that go
through the real `autocut.planning.pipeline.plan_with_catalog` path (candidates, planner, FAISS grounding,
voice fitting), so a score is the score of a plan a user would get:

- **script-driven** (select + order + BGM): product info + the ad's sentences as the script; the pool is
  the ad's own source video(s) (the product's reel) plus the reels of `negative_products` other products
  of the same split, same category first (as `autocut.demo_world.stats` builds its pools), kept under
  `CandidateConfig.max_candidates` candidates, in a random order seeded by the ad (the own reel first
  would reward a planner that answers the first indices). When the split holds no other product (a tiny world), the
  negatives come from another split and the sample says so (`negatives_from`).
- **footage-driven** (order + script + BGM): pool = the product's reel alone, budget 120 s (the most a
  request allows), so every candidate is used when the reel fits. Two ads of one product in one language
  make the same request: it is planned once per planner and seed and that plan is scored against each
  ad (the row says `same_request_as`; timing counts planned requests only).

Why whole reels: a `PoolItem` names a whole source (a `photo_id` or an ingested path); a request cannot
name a sub-span, and the planner's candidates are the visual clips of whole sources
(`autocut.planning.candidates`). So the ad's own clips cannot be handed over alone. Consequences, said plainly:

- positives = candidate clips that overlap a reference segment (by at least half of the shorter of the
  two); the reel's other clips (unused hooks or features, the look-alike rival's distractor shots) are
  negatives *in the same pool*, next to other products' clips. An unused second hook of the right
  product counts as a wrong pick, as in the paper's CSA;
- the reference sequence = per reference segment the candidate overlapping it most;
- **role-equivalent positives** (beside the strict ones above): a demo-world reel holds interchangeable
  alternatives (a second hook shot, a second usage shot). From the world manifest (`<library>/world/world.json`,
  `autocut.demo_world.manifest`: every shot's reel, offset, product, role, kind ad|distractor and selling
  point; every ad's segments with their shot, role and selling point), a candidate is a role-equivalent
  positive for a reference segment when it is one of the segment's strict positives, or it shows (overlaps by
  at least half of the shorter of the two) an *ad* shot of the ad's product with the segment's role and selling
  point (the look-alike rival's distractor shots never are). `role_segments` holds that set per segment,
  `role_positives` their union. A library without a world manifest (or an ad the manifest does not list) gets
  role-equivalent = strict, and the sample's notes say so. `candidate_roles` is each candidate's role when it
  shows an ad shot of the ad's product (else ""), what footage-driven role-order scoring needs;
- BGM moods come from the catalog's `mood` column (the world build measures them; the manifest's `bgm`
  entries hold the same): `ref_mood` is the reference track's, `mood_track_ids` every track of that mood.
- footage-driven ordering is scored on the planner's order *restricted to the reference clips*
  (`autocut.evaluation.scoring`). The planner orders every clip of the reel and is not given the script,
  so this is harder than the paper's sorting task (clips + ordered script).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast

from autocut.demo_world.manifest import load_manifest
from autocut.errors import CatalogError, ConfigError, PlanError
from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord
from autocut.planning.candidates import CandidateConfig, build_candidates
from autocut.types import Language, PlanRequest, PoolItem, ProductInfo

__all__ = [
    "CandidateSpan",
    "EvalSample",
    "SampleSet",
    "build_samples",
    "most_overlapping",
    "pool_order",
    "span_overlaps",
]

log = logging.getLogger(__name__)

# A request may last at most 120 s (PlanRequest.max_duration_s); the whole reel fits under it.
_MAX_REQUEST_S = 120.0


@dataclass(frozen=True)
class CandidateSpan:
    """Where a pool candidate lies in its source (what grounded segments are mapped back to)."""

    index: int
    photo_id: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(eq=False)
class EvalSample:
    """One planning request built from a reference ad, with what it is scored against."""

    sample_id: str  # "<edit_id>/<scenario>"
    edit_id: str
    product_id: str
    scenario: str  # "script" | "footage"
    language: str
    request: PlanRequest  # seed 0; each run copies it with its seed
    product_photo_ids: list[int]  # the ad's own sources
    candidates: list[CandidateSpan]
    positives: frozenset[int]  # candidate indices overlapping a reference segment
    reference: list[int]  # per reference segment, the candidate overlapping it most (may repeat)
    ref_sentences: list[str]
    ref_durations_s: list[float]
    ref_audio_id: int | None
    selling_points: list[str]  # in the ad's language
    negatives_from: str = ""  # "same split", "other splits (...)", "none" (script-driven only)
    notes: list[str] = field(default_factory=list)
    # Per reference segment, its strict positives (the union is `positives`); [] = {reference[k]} each.
    segment_positives: list[frozenset[int]] = field(default_factory=list)
    # Per reference segment, its role-equivalent positives (a superset of its strict ones); [] = strict.
    role_segments: list[frozenset[int]] = field(default_factory=list)
    # Union of `role_segments` and `positives`; empty = computed from them.
    role_positives: frozenset[int] = frozenset()
    role_source: str = ""  # "world manifest", or why role-equivalent = strict
    candidate_roles: list[str] = field(default_factory=list)  # per candidate: its role when an ad shot of the product
    candidate_shots: list[str] = field(default_factory=list)  # per candidate: the world shot it shows most ("" none)
    ref_roles: list[str] = field(default_factory=list)  # per reference segment ("" unknown)
    ref_selling_points: list[str | None] = field(default_factory=list)  # per reference segment (key; None: none)
    ref_mood: str = ""  # the reference track's mood ("" unknown)
    mood_track_ids: frozenset[int] = frozenset()  # every BGM track of `ref_mood`

    def __post_init__(self) -> None:
        m = len(self.reference)
        if not self.segment_positives:
            self.segment_positives = [frozenset({c}) for c in self.reference]
        if not self.role_segments:
            self.role_segments = list(self.segment_positives)
        for name, sets in (("segment_positives", self.segment_positives), ("role_segments", self.role_segments)):
            if len(sets) != m:
                raise ConfigError(f"{self.sample_id}: {len(sets)} {name} for {m} reference segments")
        union = frozenset(c for seg in self.role_segments for c in seg)
        self.role_positives = frozenset(self.role_positives) | union | self.positives

    @property
    def reference_distinct(self) -> list[int]:
        out: list[int] = []
        for c in self.reference:
            if c not in out:
                out.append(c)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "edit_id": self.edit_id,
            "product_id": self.product_id,
            "scenario": self.scenario,
            "language": self.language,
            "n_candidates": len(self.candidates),
            "pool_photo_ids": [p.photo_id for p in self.request.pool],
            "positives": sorted(self.positives),
            "reference": self.reference,
            "ref_sentences": self.ref_sentences,
            "ref_audio_id": self.ref_audio_id,
            "negatives_from": self.negatives_from,
            "notes": self.notes,
            "segment_positives": [sorted(p) for p in self.segment_positives],
            "role_positives": sorted(self.role_positives),
            "role_segments": [sorted(p) for p in self.role_segments],
            "role_source": self.role_source,
            "candidate_roles": self.candidate_roles,
            "candidate_shots": self.candidate_shots,
            "ref_roles": self.ref_roles,
            "ref_selling_points": self.ref_selling_points,
            "ref_mood": self.ref_mood,
            "n_mood_tracks": len(self.mood_track_ids),
        }


class SampleSet(NamedTuple):
    """What `build_samples` returns (unpacks as `samples, skipped`)."""

    samples: list[EvalSample]
    skipped: list[dict[str, str]]  # {"edit_id", "reason"} per reference ad that gave no sample


# --------------------------------------------------------------------------- spans


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def span_overlaps(
    photo_id: int | None, a: float, b: float, spans: Sequence[CandidateSpan]
) -> list[tuple[CandidateSpan, float]]:
    """(span, seconds of overlap with a..b) for every span of source `photo_id`, in span order (none for a
    segment with no catalog photo_id)."""
    return [(sp, _overlap(a, b, sp.start_s, sp.end_s)) for sp in spans if sp.photo_id == photo_id]


def most_overlapping(overlaps: list[tuple[CandidateSpan, float]], *, eps: float) -> int | None:
    """Index of the first span overlapping most (by more than `eps` over an earlier one); None if none does."""
    best, best_ov = None, 0.0
    for sp, ov in overlaps:
        if ov > best_ov + eps:
            best, best_ov = sp.index, ov
    return best


# --------------------------------------------------------------------------- building


@dataclass(frozen=True, eq=False)
class _Sources:
    """What sample building looks up: the catalog, its products, and each product's reel per split."""

    catalog: Catalog
    products: dict[str, ProductRecord]
    reels: dict[tuple[str, str], list[int]]  # (split, product_id) -> source photo ids, in first-use order
    candidates: CandidateConfig
    world: _World | None = None  # the demo world's manifest, when the library has one
    world_missing: str = ""  # why there is none
    moods: dict[int, str] = field(default_factory=dict)  # audio id -> mood ("" unknown), from the catalog

    def n_candidates(self, photo_id: int) -> int:
        if self.candidates.split == "whole":
            return 1
        return max(1, len(self.catalog.clips(photo_id)))


@dataclass(frozen=True)
class _ReferenceMatch:
    """A request's candidate pool with the reference ad mapped onto it."""

    candidates: list[CandidateSpan]
    positives: frozenset[int]  # candidates overlapping a reference segment enough
    reference: list[int]  # per reference segment, the candidate overlapping it most
    segment_positives: list[frozenset[int]]  # per reference segment, the candidates overlapping it enough


class _Negatives(NamedTuple):
    where: str  # where they come from ("same split", "other splits (...)", "none (...)")
    photo_ids: list[int]


def _product_info(p: ProductRecord, language: str) -> tuple[ProductInfo, list[str]]:
    """The product as a user of that language would send it (localised name/brand/selling points), and
    all its selling points in that language (the request keeps 20).

    `category` stays the library's category key: planners look up per-category statistics by it.
    """
    loc = p.language_names.get(language, {}) if isinstance(p.language_names, dict) else {}
    points = list(loc.get("selling_points") or p.selling_points)
    info = ProductInfo(
        name=(loc.get("name") or p.name)[:200],
        brand=(loc.get("brand") or p.brand)[:200],
        category=p.category[:100],
        selling_points=points[:20],
        description=(loc.get("description") or p.description)[:4000],
        image_path=p.image_path,
    )
    return info, points


def _stable_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _ordered_unique(xs: Sequence[int]) -> list[int]:
    out: list[int] = []
    for x in xs:
        if x not in out:
            out.append(int(x))
    return out


def _round_robin(ads: Sequence[RefEditRecord]) -> list[RefEditRecord]:
    """Ads ordered so the first N cover as many products as possible (first ad of each product, then second...)."""
    by_product: dict[str, list[RefEditRecord]] = {}
    for a in sorted(ads, key=lambda a: a.edit_id):
        by_product.setdefault(a.product_id, []).append(a)
    out = []
    depth = max((len(v) for v in by_product.values()), default=0)
    for k in range(depth):
        for pid in sorted(by_product):
            if k < len(by_product[pid]):
                out.append(by_product[pid][k])
    return out


def _match_reference(
    catalog: Catalog, request: PlanRequest, ad: RefEditRecord, cfg: CandidateConfig
) -> _ReferenceMatch:
    pool = build_candidates(catalog, request.pool, cfg)
    spans = [CandidateSpan(c.index, c.photo_id, float(c.start_s), float(c.end_s)) for c in pool.candidates]
    per_segment: list[frozenset[int]] = []
    reference: list[int] = []
    for k, seg in enumerate(ad.segments):
        a, b = seg.start_s, seg.start_s + seg.duration_s
        overlaps = span_overlaps(seg.photo_id, a, b, spans)
        best = most_overlapping(overlaps, eps=0.0)
        if best is None:
            raise PlanError(f"reference segment {k + 1} ({seg.photo_id} @ {a:.1f}-{b:.1f} s) overlaps no candidate")
        hit = {sp.index for sp, ov in overlaps if _shows(ov, sp.duration_s, seg.duration_s)}
        per_segment.append(frozenset(hit | {best}))
        reference.append(best)
    positives = frozenset(c for seg_pos in per_segment for c in seg_pos)
    return _ReferenceMatch(spans, positives, reference, per_segment)


def _shows(overlap_s: float, a_s: float, b_s: float) -> bool:
    """Two spans show the same footage: they overlap by at least half of the shorter of the two."""
    return overlap_s > 0 and overlap_s >= 0.5 * min(a_s, b_s)


# --------------------------------------------------------------------------- the world's roles


@dataclass(frozen=True)
class _Shot:
    """One shot of the demo world, as the manifest records it."""

    shot_id: str
    product_id: str
    role: str
    kind: str  # "ad" (the product) | "distractor" (a look-alike rival)
    selling_point: str | None
    photo_id: int
    start_s: float  # in its reel
    end_s: float


@dataclass(frozen=True, eq=False)
class _World:
    """What the world manifest says about the footage: the shots of each reel and every ad's segments."""

    shots: dict[int, list[_Shot]]  # reel photo_id -> its shots
    by_id: dict[str, _Shot]
    ads: dict[str, list[tuple[str, str, str | None]]]  # edit_id -> per segment (shot_id, role, selling point)


def _load_world(catalog: Catalog) -> tuple[_World | None, str]:
    """The world manifest's shots and ads, or None and why (no manifest, or one that cannot be read)."""
    try:
        man = load_manifest(catalog.root)
        shots: dict[int, list[_Shot]] = {}
        by_id: dict[str, _Shot] = {}
        for d in man["shots"]:
            start = float(d["offset_s"])
            shot = _Shot(
                shot_id=str(d["shot_id"]),
                product_id=str(d["product_id"]),
                role=str(d["role"]),
                kind=str(d["kind"]),
                selling_point=d.get("selling_point"),
                photo_id=int(d["photo_id"]),
                start_s=start,
                end_s=start + float(d["duration_s"]),
            )
            shots.setdefault(shot.photo_id, []).append(shot)
            by_id[shot.shot_id] = shot
        ads = {
            str(a["edit_id"]): [(str(g["shot_id"]), str(g["role"]), g.get("selling_point")) for g in a["segments"]]
            for a in man["ads"]
        }
    except CatalogError as exc:
        return None, f"no world manifest ({exc})"
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("the world manifest of %s cannot be read (%s): role-equivalent = strict", catalog.root, exc)
        return None, f"the world manifest cannot be read ({type(exc).__name__}: {exc})"
    return _World(shots, by_id, ads), ""


@dataclass(frozen=True)
class _Roles:
    """A sample's role facts (see `EvalSample`)."""

    role_segments: list[frozenset[int]]
    role_source: str
    candidate_roles: list[str]
    candidate_shots: list[str]
    ref_roles: list[str]
    ref_selling_points: list[str | None]


def _roles(sources: _Sources, ad: RefEditRecord, match: _ReferenceMatch) -> _Roles:
    """Role-equivalent positives per reference segment from the world manifest; strict ones without it."""
    spans = match.candidates
    strict = _Roles(
        list(match.segment_positives),
        "",
        [""] * len(spans),
        [""] * len(spans),
        [s.role for s in ad.segments],
        [None] * len(ad.segments),
    )
    world = sources.world
    if world is None:
        return replace(strict, role_source=f"{sources.world_missing}: role-equivalent = strict")
    segs = world.ads.get(ad.edit_id)
    if segs is None or len(segs) != len(ad.segments):
        why = "not in the world manifest" if segs is None else "has another segment count in the world manifest"
        return replace(strict, role_source=f"the reference ad {why}: role-equivalent = strict")
    for (shot_id, _, _), seg in zip(segs, ad.segments):
        used = world.by_id.get(shot_id)
        if used is None or used.photo_id != seg.photo_id:
            return replace(
                strict, role_source=f"shot {shot_id} is not where the manifest says: role-equivalent = strict"
            )
    shown: list[_Shot | None] = []
    for sp in spans:
        best, best_ov = None, 0.0
        for shot in world.shots.get(sp.photo_id, []):
            ov = _overlap(sp.start_s, sp.end_s, shot.start_s, shot.end_s)
            if ov > best_ov:
                best, best_ov = shot, ov
        shown.append(best)

    def own(shot: _Shot | None) -> bool:
        return shot is not None and shot.kind == "ad" and shot.product_id == ad.product_id

    pool_shots = [shot for pid in _ordered_unique([sp.photo_id for sp in spans]) for shot in world.shots.get(pid, [])]
    role_segments: list[frozenset[int]] = []
    for (_, role, point), strict_k in zip(segs, match.segment_positives):
        alike = [s for s in pool_shots if own(s) and s.role == role and s.selling_point == point]
        extra = {
            sp.index
            for sp in spans
            for shot in alike
            if sp.photo_id == shot.photo_id
            and _shows(
                _overlap(sp.start_s, sp.end_s, shot.start_s, shot.end_s), sp.duration_s, shot.end_s - shot.start_s
            )
        }
        role_segments.append(frozenset(strict_k | extra))
    return _Roles(
        role_segments,
        "world manifest",
        [shot.role if own(shot) and shot is not None else "" for shot in shown],
        [shot.shot_id if shot is not None else "" for shot in shown],
        [role for _, role, _ in segs],
        [point for _, _, point in segs],
    )


def build_samples(
    catalog: Catalog,
    split: str,
    *,
    scenarios: Sequence[str] = ("script", "footage"),
    max_ads: int | None = None,
    negative_products: int = 1,
    candidates: CandidateConfig | None = None,
) -> SampleSet:
    """Evaluation samples from `split`'s reference edits, and the ads skipped with the reason."""
    cfg = candidates or CandidateConfig()
    bad = set(scenarios) - {"script", "footage"}
    if bad or not scenarios:
        raise ConfigError(f"scenarios must be 'script' and/or 'footage', got {list(scenarios)}")
    if negative_products < 0:
        raise ConfigError(f"negative_products must be >= 0, got {negative_products}")
    all_edits = catalog.reference_edits()
    ads = [a for a in all_edits if a.split == split]
    if not ads:
        splits = Counter(a.split for a in all_edits)
        raise ConfigError(
            f"library {catalog.root} has no reference edits in split {split!r}"
            + (
                f" (it has {dict(sorted(splits.items()))})"
                if splits
                else " (it has none at all: build the demo world or import reference ads)"
            )
        )
    ads = _round_robin(ads)
    if max_ads is not None:
        if max_ads < 1:
            raise ConfigError(f"max_ads must be >= 1, got {max_ads}")
        ads = ads[:max_ads]
    # Sources per product and split, from every reference edit (what a product's reel is).
    reels: dict[tuple[str, str], list[int]] = {}
    for a in all_edits:
        key = (a.split, a.product_id)
        reels[key] = _ordered_unique(reels.get(key, []) + [s.photo_id for s in a.segments])
    world, world_missing = _load_world(catalog)
    moods = {int(b.audio_id): str(b.mood or "") for b in catalog.bgm_tracks()}
    sources = _Sources(catalog, {p.product_id: p for p in catalog.products()}, reels, cfg, world, world_missing, moods)
    samples: list[EvalSample] = []
    skipped: list[dict[str, str]] = []
    for ad in ads:
        try:
            samples.extend(_samples_for(sources, ad, scenarios, negative_products))
        except (PlanError, ConfigError) as exc:
            skipped.append({"edit_id": ad.edit_id, "reason": str(exc)})
            log.warning("skipping reference ad %s: %s", ad.edit_id, exc)
    return SampleSet(samples, skipped)


def _samples_for(
    sources: _Sources, ad: RefEditRecord, scenarios: Sequence[str], negative_products: int
) -> list[EvalSample]:
    cfg = sources.candidates
    if ad.language not in ("en", "zh"):
        raise ConfigError(f"language {ad.language!r} is not a request language (en, zh)")
    language = cast(Language, ad.language)  # checked just above
    if not ad.segments:
        raise ConfigError("the reference edit has no segments")
    prod = sources.products.get(ad.product_id)
    if prod is None:
        raise ConfigError(f"product {ad.product_id!r} is not in the catalog")
    info, points = _product_info(prod, ad.language)
    own = _ordered_unique([s.photo_id for s in ad.segments])
    own_n = sum(sources.n_candidates(p) for p in own)
    if own_n > cfg.max_candidates:
        raise PlanError(f"the ad's own sources yield {own_n} candidates (> {cfg.max_candidates})")
    sentences = [s.sentence for s in ad.segments]
    ref_mood = sources.moods.get(int(ad.audio_id), "") if ad.audio_id is not None else ""
    common: dict[str, Any] = {
        "edit_id": ad.edit_id,
        "product_id": ad.product_id,
        "language": ad.language,
        "product_photo_ids": own,
        "ref_sentences": sentences,
        "ref_durations_s": [float(s.duration_s) for s in ad.segments],
        "ref_audio_id": ad.audio_id,
        "selling_points": points,
        "ref_mood": ref_mood,
        "mood_track_ids": frozenset(a for a, m in sources.moods.items() if m == ref_mood) if ref_mood else frozenset(),
    }
    out = []
    for scenario in scenarios:
        notes: list[str] = []
        negatives_from = ""
        pool_ids = list(own)
        if scenario == "script":
            negatives_from, neg = _negatives(sources, ad, negative_products, cfg.max_candidates - own_n)
            pool_ids += neg
            pool_ids = pool_order(pool_ids, ad.edit_id)
            request = PlanRequest(
                product=info,
                pool=[PoolItem(photo_id=p) for p in pool_ids],
                script=sentences,
                language=language,
                max_duration_s=_MAX_REQUEST_S,
            )
        else:
            request = PlanRequest(
                product=info,
                pool=[PoolItem(photo_id=p) for p in pool_ids],
                language=language,
                max_duration_s=_MAX_REQUEST_S,
            )
        match = _match_reference(sources.catalog, request, ad, cfg)
        spans, reference = match.candidates, match.reference
        if len(set(reference)) < len(reference):
            notes.append("two reference segments fall in one candidate clip: SRA/CRA cannot be exact")
        if scenario == "script" and len(sentences) > len(spans):
            raise PlanError(f"{len(sentences)} sentences but only {len(spans)} candidates")
        if scenario == "footage" and sum(s.duration_s for s in spans) > _MAX_REQUEST_S:
            notes.append(f"the reel is longer than {_MAX_REQUEST_S:.0f} s: the planner uses a subset")
        roles = _roles(sources, ad, match)
        if roles.role_source != "world manifest":
            notes.append(roles.role_source)
        if ad.audio_id is not None and not ref_mood:
            notes.append("the reference track has no mood in the catalog: mood metrics n/a")
        out.append(
            EvalSample(
                sample_id=f"{ad.edit_id}/{scenario}",
                scenario=scenario,
                request=request,
                candidates=spans,
                positives=match.positives,
                reference=reference,
                negatives_from=negatives_from,
                notes=notes,
                segment_positives=list(match.segment_positives),
                role_segments=roles.role_segments,
                role_source=roles.role_source,
                candidate_roles=roles.candidate_roles,
                candidate_shots=roles.candidate_shots,
                ref_roles=roles.ref_roles,
                ref_selling_points=roles.ref_selling_points,
                **common,
            )
        )
    return out


def pool_order(photo_ids: list[int], edit_id: str) -> list[int]:
    """A script-driven pool's sources in a random order seeded by the ad. With the ad's own reel always
    first, a planner answering "1,2,...,n" (what an undertrained LM does) would seem to pick the product."""
    out = list(photo_ids)
    random.Random(_stable_seed("eval-pool-order", edit_id)).shuffle(out)
    return out


def _negatives(sources: _Sources, ad: RefEditRecord, n_products: int, room: int) -> _Negatives:
    """Sources of up to `n_products` other products (same split and category first) that fit `room` candidates."""
    if n_products == 0:
        return _Negatives("none (negative_products=0)", [])
    products, reels = sources.products, sources.reels
    rng = random.Random(_stable_seed("eval-negatives", ad.edit_id))
    cat = products[ad.product_id].category
    own = {s.photo_id for s in ad.segments}

    def candidates_in(splits: set[str]) -> list[tuple[str, str]]:
        keys = [k for k in reels if k[0] in splits and k[1] != ad.product_id]
        same = sorted(k for k in keys if products.get(k[1]) and products[k[1]].category == cat)
        other = sorted(k for k in keys if k not in same)
        rng.shuffle(same)
        rng.shuffle(other)
        return same + other

    order = candidates_in({ad.split})
    where = "same split"
    if not order:
        others = {k[0] for k in reels} - {ad.split}
        order = candidates_in(others)
        where = f"other splits ({', '.join(sorted(others))}): split {ad.split!r} has no other product"
        if order:
            log.warning("reference ad %s: %s", ad.edit_id, where)
    chosen: list[int] = []
    used = 0
    taken = 0
    for key in order:
        if taken >= n_products:
            break
        srcs = [p for p in reels[key] if p not in own and p not in chosen]
        n = sum(sources.n_candidates(p) for p in srcs)
        if not srcs or used + n > room:
            continue
        chosen += srcs
        used += n
        taken += 1
    if not chosen:
        return _Negatives("none (no other product's footage fits)", [])
    return _Negatives(where, chosen)
