"""The demo ad world: a generated, offline corpus of products, footage, BGM and reference ads
(docs/demo_world.md).

Modules, in the order a build uses them: `products` (catalogue and script templates), `config`
(`WorldConfig`, size presets), `frame` (shot frame geometry), `media` (packaged photos and videos),
`shots` (shot planning), `drawing` (PIL primitives, product sprites, icons), `overlays` (role graphics
of one shot), `reels` (ffmpeg encoding of a product's reel), `reference_ads` (ads planned from the
shots), `music` (BGM and moods), `manifest` (`world/world.json`), `build` (the whole build); then
`stats` (learnability statistics) and `sheet` (contact sheets). Names below load their module on
first use.
"""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.demo_world.build import WorldSummary, build_world
    from autocut.demo_world.config import SIZES, WORLD_FORMAT_VERSION, WorldConfig
    from autocut.demo_world.manifest import load_manifest
    from autocut.demo_world.products import (
        CATEGORIES,
        ROLES,
        Product,
        build_catalogue,
        count_words,
        sentence,
    )
    from autocut.demo_world.reference_ads import AdPlan, AdSegmentPlan, compose_ads
    from autocut.demo_world.sheet import contact_sheet_by_product, contact_sheet_by_role
    from autocut.demo_world.shots import plan_shots
    from autocut.demo_world.stats import (
        OrderScores,
        SelectionScores,
        WorldStats,
        greedy_chain_order,
        pairwise_order_accuracy,
        select_by_similarity,
        world_stats,
    )

__all__ = [
    "CATEGORIES",
    "ROLES",
    "SIZES",
    "WORLD_FORMAT_VERSION",
    "AdPlan",
    "AdSegmentPlan",
    "OrderScores",
    "Product",
    "SelectionScores",
    "WorldConfig",
    "WorldStats",
    "WorldSummary",
    "build_catalogue",
    "build_world",
    "compose_ads",
    "contact_sheet_by_product",
    "contact_sheet_by_role",
    "count_words",
    "greedy_chain_order",
    "load_manifest",
    "pairwise_order_accuracy",
    "plan_shots",
    "select_by_similarity",
    "sentence",
    "world_stats",
]

_SOURCES = {
    "CATEGORIES": "products",
    "ROLES": "products",
    "SIZES": "config",
    "WORLD_FORMAT_VERSION": "config",
    "AdPlan": "reference_ads",
    "AdSegmentPlan": "reference_ads",
    "OrderScores": "stats",
    "Product": "products",
    "SelectionScores": "stats",
    "WorldConfig": "config",
    "WorldStats": "stats",
    "WorldSummary": "build",
    "build_catalogue": "products",
    "build_world": "build",
    "compose_ads": "reference_ads",
    "contact_sheet_by_product": "sheet",
    "contact_sheet_by_role": "sheet",
    "count_words": "products",
    "greedy_chain_order": "stats",
    "load_manifest": "manifest",
    "pairwise_order_accuracy": "stats",
    "plan_shots": "shots",
    "select_by_similarity": "stats",
    "sentence": "products",
    "world_stats": "stats",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
