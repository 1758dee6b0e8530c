"""The metrics `autocut eval` reports (key, label, scenario, direction, what a failed plan counts as) and the
paper's published rows printed beside them as anchors.

How each metric is computed: `autocut.evaluation.scoring` (per plan) on the functions of
`autocut.evaluation.metrics`; (docs/method.md, "Metrics").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["METRICS", "METRIC_BY_KEY", "PAPER_ANCHORS", "MetricDef"]

# Paper anchors, on the paper's data and encoders (AutoCut Table 1; "sft only" from Table 2). Their CRA is
# the sorting task with the ordered script given; MSS is a Music-Flamingo similarity, not our BGM cosine.
PAPER_ANCHORS: list[dict[str, Any]] = [
    {
        "label": "AutoCut (paper, their data)",
        "csa": 0.6593,
        "cra": 0.10714,
        "vsc": 1.0360,
        "sq": 84.6255,
        "wcd": 3.0182,
        "mss": 0.3475,
    },
    {
        "label": "AutoCut sft only (paper Table 2)",
        "csa": 0.4780,
        "cra": 0.08242,
        "vsc": 1.0043,
        "sq": 83.1898,
        "wcd": 4.4346,
    },
    {"label": "Qwen3-8B Caption (paper)", "csa": 0.1374, "cra": 0.01648, "vsc": 0.9308, "sq": 79.9947, "wcd": 5.2648},
    {
        "label": "Qwen3-8B Caption+SFT (paper)",
        "csa": 0.5687,
        "cra": 0.03022,
        "vsc": 1.1227,
        "sq": 59.1592,
        "wcd": 6.8230,
    },
    {
        "label": "GPT-4o + MGSV (paper)",
        "csa": 0.2689,
        "cra": 0.07756,
        "vsc": 1.1364,
        "sq": 83.0290,
        "wcd": 7.7457,
        "mss": 0.2656,
    },
]


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


# Selection is scored two ways (`autocut.evaluation.scoring`): strict (the clips the reference ad used) and
# role-equivalent (any ad shot of the product with the segment's role and selling point, "(role)"). The
# role-equivalent ones head the main table; their strict counterparts sit beside them (CSA) or in the detail
# table (precision, recall, F1, AUC).
METRICS: tuple[MetricDef, ...] = (
    MetricDef("csa", "CSA", "script", fail_value=0.0),
    MetricDef("csa_role", "CSA (role)", "script", fail_value=0.0),
    MetricDef("precision_role", "precision (role)", "script"),
    MetricDef("recall_role", "recall (role)", "script"),
    MetricDef("f1_role", "F1 (role)", "script"),
    MetricDef("auc_role", "AUC (role)", "script"),
    MetricDef("pairwise_script_role", "pairwise (script, role)", "script"),
    MetricDef("cra", "CRA", "footage", fail_value=0.0),
    MetricDef("sra", "SRA", "script", fail_value=0.0),
    MetricDef("pairwise", "pairwise", "footage"),
    MetricDef("tau", "tau", "footage"),
    MetricDef("pairwise_roles", "pairwise (hook/CTA)", "footage"),
    MetricDef("wcd", "WCD", "footage", higher_is_better=False, digits=2),
    MetricDef("wcd_free", "WCD (no length)", "footage", higher_is_better=False, digits=2),
    MetricDef("ssa", "SSA", "footage"),
    MetricDef("bgm_hit1", "Hit@1", "script", fail_value=0.0),
    MetricDef("bgm_hit5", "Hit@5", "script", fail_value=0.0),
    MetricDef("bgm_hit10", "Hit@10", "script", fail_value=0.0),
    MetricDef("bgm_mrr", "MRR", "script", fail_value=0.0),
    MetricDef("bgm_mood", "BGM mood", "script", fail_value=0.0),
    MetricDef("bgm_cos", "BGM cos", "script"),
    MetricDef("precision", "sel. precision", "script", main=False),
    MetricDef("recall", "sel. recall", "script", main=False),
    MetricDef("f1", "sel. F1", "script", main=False),
    MetricDef("auc", "sel. AUC", "script", main=False),
    MetricDef("on_product", "on-product", "script", main=False),
    MetricDef("pairwise_script", "pairwise (script)", "script", main=False),
    MetricDef("tau_script", "tau (script)", "script", main=False),
    MetricDef("tau_script_role", "tau (script, role)", "script", main=False),
    MetricDef("bgm_hit1_ceiling", "Hit@1 ceiling (mood oracle)", "script", main=False),
    MetricDef("lm_precision", "LM answer precision", "script", main=False),
    MetricDef("lm_precision_role", "LM answer precision (role)", "script", main=False),
    MetricDef("lm_recall", "LM answer recall", "script", main=False),
    MetricDef("lm_recall_role", "LM answer recall (role)", "script", main=False),
    MetricDef("lm_grounded_share", "grounded in LM answer", "script", main=False),
    MetricDef("ref_coverage", "ref. coverage", "footage", main=False),
    MetricDef("sp_coverage", "SP coverage", "footage", main=False),
    MetricDef("repetition", "repetition", "footage", higher_is_better=False, main=False),
    MetricDef("bleu", "BLEU-4", "footage", main=False),
    MetricDef("rouge_l", "ROUGE-L", "footage", main=False),
    MetricDef("grounded_match", "grounded = chosen", "script", main=False),
    MetricDef("vsc", "VSC (judge)", "footage", main=False),
    MetricDef("sq", "SQ (judge)", "footage", digits=1, main=False),
)
METRIC_BY_KEY: dict[str, MetricDef] = {m.key: m for m in METRICS}
