"""The demo ad world (issue 3): a generated, offline corpus of products, footage, BGM and reference ads."""

from autocut.demo_world.build import (
    SIZES,
    WORLD_FORMAT_VERSION,
    AdPlan,
    AdSegmentPlan,
    WorldConfig,
    WorldSummary,
    build_world,
    compose_ads,
    load_manifest,
    plan_shots,
)
from autocut.demo_world.products import CATEGORIES, ROLES, Product, build_catalogue, count_words, sentence
from autocut.demo_world.sheet import contact_sheet_by_product, contact_sheet_by_role
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
