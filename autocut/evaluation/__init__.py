"""Evaluation: planners scored on the held-out split (`autocut eval`), metrics, script proxies,
the optional LLM judge, held-out LM likelihoods and variant distinctness."""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.evaluation.runner import EvalConfig, EvalResult, METRICS, build_samples, evaluate, load_result, parse_planner_spec, summary_text, write_report
    from autocut.evaluation.variants import VariantReport, variant_distinctness

__all__ = [
    "EvalConfig",
    "EvalResult",
    "METRICS",
    "VariantReport",
    "build_samples",
    "evaluate",
    "load_result",
    "parse_planner_spec",
    "summary_text",
    "variant_distinctness",
    "write_report",
]

_SOURCES = {
    "EvalConfig": "runner",
    "EvalResult": "runner",
    "METRICS": "runner",
    "VariantReport": "variants",
    "build_samples": "runner",
    "evaluate": "runner",
    "load_result": "runner",
    "parse_planner_spec": "runner",
    "summary_text": "runner",
    "variant_distinctness": "variants",
    "write_report": "runner",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
