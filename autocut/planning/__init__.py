"""Planning: from a request and a clip pool to a typed `EditPlan`.

Modules: `pipeline` (candidates -> planner decision -> grounding -> voice fit -> plan), `candidates`
(the pool's candidate clips and their frames), `planners` (random, heuristic, token LM, caption LMs
behind one interface), `grounding` (decisions -> real clips and BGM through embeddings and FAISS),
`voice_fit` (the speech-rate rule the renderer checks too), `script` (template lines)."""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.planning.candidates import Candidate, CandidatePool, build_candidates
    from autocut.planning.pipeline import PlanOptions, plan_edit, plan_with_catalog
    from autocut.planning.script import write_script
    from autocut.planning.voice_fit import MAX_SPEECH_RATE, MIN_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S, fit_rate

__all__ = [
    "MAX_SPEECH_RATE",
    "MIN_SPEECH_RATE",
    "VOICE_LEAD_S",
    "VOICE_TAIL_S",
    "Candidate",
    "CandidatePool",
    "PlanOptions",
    "build_candidates",
    "fit_rate",
    "plan_edit",
    "plan_with_catalog",
    "write_script",
]

_SOURCES = {
    "Candidate": "candidates",
    "CandidatePool": "candidates",
    "MAX_SPEECH_RATE": "voice_fit",
    "MIN_SPEECH_RATE": "voice_fit",
    "PlanOptions": "pipeline",
    "VOICE_LEAD_S": "voice_fit",
    "VOICE_TAIL_S": "voice_fit",
    "build_candidates": "candidates",
    "fit_rate": "voice_fit",
    "plan_edit": "pipeline",
    "plan_with_catalog": "pipeline",
    "write_script": "script",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
