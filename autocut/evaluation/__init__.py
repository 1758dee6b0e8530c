"""Evaluation: planners scored on the held-out split (`autocut eval`), metrics, script proxies,
the optional LLM judge, held-out LM likelihoods and variant distinctness.

Modules, in import order (each imports only modules above it):

- `metrics`: the metric functions (CSA, CRA, SRA, WCD, SSA, BGM Hit@k, ...) on plain ids and strings;
- `metric_table`: which metrics `autocut eval` reports and how (`METRICS`), and the paper's rows (`PAPER_ANCHORS`);
- `planner_spec`: "label=name:key=value,..." -> `PlannerSpec`;
- `samples`: evaluation samples built from a split's reference ads (`build_samples`);
- `text_proxies`: BLEU-4, ROUGE-L, repetition, selling-point coverage (`ScriptProxies`);
- `scoring`: one plan's scores against its sample, and exact chance expectations;
- `result`: `EvalResult`, its summary over seeds, `load_result`;
- `runner`: `EvalConfig` and `evaluate` (plans every sample with every planner and seed);
- `report`: eval.json, eval.md and plots (`write_report`, `summary_text`);
- `judge` (LLM judge for VSC / SQ), `heldout` (held-out LM scores), `variants` (variant distinctness).
"""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.evaluation.metric_table import METRICS, PAPER_ANCHORS, MetricDef
    from autocut.evaluation.planner_spec import PlannerSpec, parse_planner_spec
    from autocut.evaluation.report import summary_text, write_report
    from autocut.evaluation.result import EVAL_FORMAT_VERSION, EvalResult, load_result
    from autocut.evaluation.runner import EvalConfig, evaluate
    from autocut.evaluation.samples import CandidateSpan, EvalSample, build_samples
    from autocut.evaluation.scoring import chance_scores, score_footage_plan, score_script_plan, segment_candidates
    from autocut.evaluation.text_proxies import ScriptProxies, bleu4, repetition, rouge_l
    from autocut.evaluation.variants import VariantReport, variant_distinctness

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
    "VariantReport",
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
    "variant_distinctness",
    "write_report",
]

_SOURCES = {
    "EVAL_FORMAT_VERSION": "result",
    "METRICS": "metric_table",
    "PAPER_ANCHORS": "metric_table",
    "CandidateSpan": "samples",
    "EvalConfig": "runner",
    "EvalResult": "result",
    "EvalSample": "samples",
    "MetricDef": "metric_table",
    "PlannerSpec": "planner_spec",
    "ScriptProxies": "text_proxies",
    "VariantReport": "variants",
    "bleu4": "text_proxies",
    "build_samples": "samples",
    "chance_scores": "scoring",
    "evaluate": "runner",
    "load_result": "result",
    "parse_planner_spec": "planner_spec",
    "repetition": "text_proxies",
    "rouge_l": "text_proxies",
    "score_footage_plan": "scoring",
    "score_script_plan": "scoring",
    "segment_candidates": "scoring",
    "summary_text": "report",
    "variant_distinctness": "variants",
    "write_report": "report",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
