"""The demo world's reference ads, planned from a product's shots: a narrative (hook?, showcase,
features/usage, proof?, cta), one template sentence per clip, each clip as long as its sentence takes
to speak. `autocut.demo_world.build` stores them as catalog reference edits.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from autocut.demo_world.config import MIN_CLIP_S, WorldConfig
from autocut.demo_world.products import (
    CATEGORIES,
    Product,
    count_words,
    sentence,
    stable_seed,
)
from autocut.demo_world.shots import ShotSpec

__all__ = ["WORDS_PER_S", "AdPlan", "AdSegmentPlan", "compose_ads"]

# Speaking rates the clip lengths are fitted to: the WCD metric's defaults (docs/method.md, "Metrics";
# `autocut.speech.words.DEFAULT_WORDS_PER_S`).
WORDS_PER_S = {"en": 2.5, "zh": 5.0}


@dataclass(frozen=True)
class AdSegmentPlan:
    shot_id: str
    role: str
    start_s: float
    duration_s: float
    sentence: str
    selling_point: str | None = None


@dataclass(frozen=True)
class AdPlan:
    edit_id: str
    product_id: str
    language: str
    segments: tuple[AdSegmentPlan, ...]
    mood: str


def compose_ads(product: Product, shots: list[ShotSpec], cfg: WorldConfig, product_index: int) -> list[AdPlan]:
    """The product's reference ads: a narrative (hook?, showcase, features/usage, proof?, cta),
    one template sentence per clip, each clip cut from the matching shot and as long as its
    sentence takes to speak (WORDS_PER_S), so script length and clip length agree."""
    by_role: dict[str, list[ShotSpec]] = {}
    by_sp: dict[str, ShotSpec] = {}
    for s in shots:
        if s.kind != "ad":
            continue
        by_role.setdefault(s.role, []).append(s)
        if s.selling_point:
            by_sp[s.selling_point] = s
    cat = next(c for c in CATEGORIES if c.key == product.category)
    ads: list[AdPlan] = []
    seen: set[tuple] = set()
    for a in range(cfg.ads_per_product):
        rng = random.Random(stable_seed("ad", cfg.seed, product.product_id, a))
        lang = ("en", "zh")[(a + product_index) % 2]
        seq: list[tuple[str, str | None]] = []
        has_hook = rng.random() < 0.85
        if has_hook:
            seq.append(("hook", None))
        if not has_hook or rng.random() < 0.85:
            seq.append(("showcase", None))
        n_feat = rng.choice([k for k in (1, 2, 2, 3) if k <= len(product.selling_points)])
        middle: list[tuple[str, str | None]] = [
            ("feature", sp.key) for sp in rng.sample(product.selling_points, n_feat)
        ]
        if rng.random() < 0.7:
            middle.insert(rng.randint(0, len(middle)), ("usage", None))
        seq += middle
        if rng.random() < 0.6:
            seq.append(("proof", None))
        seq.append(("cta", None))
        segs: list[AdSegmentPlan] = []
        for role, sp_key in seq:
            shot = by_sp[sp_key] if sp_key else rng.choice(by_role[role])
            sp = next((x for x in product.selling_points if x.key == sp_key), None)
            text = sentence(role, product, lang, rng, sp)
            speak_s = count_words(text) / WORDS_PER_S[lang]
            dur = min(max(MIN_CLIP_S, round(speak_s * rng.uniform(1.0, 1.15), 1)), shot.duration_s - 0.2)
            start = float(rng.randint(0, max(0, int(math.floor(shot.duration_s - 0.1 - dur)))))
            segs.append(AdSegmentPlan(shot.shot_id, role, start, round(dur, 1), text, sp_key))
        sig = tuple((s.shot_id, s.sentence) for s in segs)
        if sig in seen:  # an identical ad twice would only duplicate training data
            continue
        seen.add(sig)
        ads.append(AdPlan(f"dw-{product.product_id}-{a + 1}", product.product_id, lang, tuple(segs), cat.mood))
    return ads
