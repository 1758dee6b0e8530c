"""The planner interface: what every planner (token LM, baselines) receives and must return.

A planner decides, per variant, which candidates to use, in what order, what is said over each,
and a target BGM embedding (AutoCut appendix 7.2: select -> sort -> script -> BGM). It does not
touch the library's rows: `autocut.planning.pipeline` grounds its embeddings to real ids through FAISS and
fits the segments to the voice. `check_decision` enforces the constraints a decision must meet
(distinct indices, exact counts, a permutation, one sentence per clip), whoever produced it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from autocut.errors import ConfigError, PlanError
from autocut.library.catalog import Catalog
from autocut.library.layout import LibraryLayout
from autocut.planning.candidates import CandidatePool
from autocut.planning.script import write_script
from autocut.types import PlanRequest

__all__ = [
    "PLANNERS",
    "Decision",
    "Planner",
    "PlanningTask",
    "auto_planner",
    "check_decision",
    "default_planner",
    "get_planner",
    "select_under_budget",
]

log = logging.getLogger(__name__)

# Planner name -> "module:Class". The token-LM planner registers here as "token" when it lands.
PLANNERS: dict[str, str] = {
    "heuristic": "autocut.planning.planners.heuristic:HeuristicPlanner",
    "random": "autocut.planning.planners.random:RandomPlanner",
    "caption": "autocut.planning.planners.caption:CaptionPlanner",
    "caption-sft": "autocut.planning.planners.caption:CaptionSftPlanner",
    "token": "autocut.planning.planners.token:TokenPlanner",
    "compact": "autocut.planning.planners.compact:CompactPlanner",
}


@dataclass(eq=False)
class PlanningTask:
    """Everything a planner may look at for one request."""

    request: PlanRequest
    pool: CandidatePool
    catalog: Catalog
    library_dir: Path
    # Clips to choose: the script's sentence count (script-driven); None = footage-driven, where the
    # user curated the pool and every candidate is used as long as they fit `budget_s`.
    n_select: int | None
    budget_s: float  # output duration cap (the request's max_duration_s)
    bgm_ids: np.ndarray  # (M,) int64 audio ids the plan may use (user exclusions removed)
    bgm_vectors: np.ndarray  # (M, D_audio) float32 their pooled embeddings
    frame_weights: Path | None = None  # local frame-encoder weights (resnet50), for embedding product photos
    words_per_s: dict[str, float] | None = None  # script length targets in words/s per language (None: 2.5 en, 5 zh)
    # (sentence, clip duration_s) -> the speech rate the voice needs to fit it, None if it cannot fit
    # within the renderer's +-15 %; lets script writers pick lines the voice can say in their clips.
    speech_rate: Callable[[str, float], float | None] | None = None
    # Split whose reference edits a planner may learn from at plan time (never the evaluated split).
    reference_split: str = "train"

    @property
    def scenario(self) -> str:
        return self.request.scenario

    @property
    def n_candidates(self) -> int:
        return len(self.pool.candidates)


@dataclass(frozen=True, eq=False)
class Decision:
    """One planned variant, in candidate indices (0-based)."""

    selected: tuple[int, ...]  # chosen candidates, ascending (as selection answers list them)
    order: tuple[int, ...]  # the same candidates in ad order
    sentences: tuple[str, ...]  # one per clip of `order`
    # Grounding queries per clip of `order` (rows align with `order`); None = the candidates' own
    # embeddings (first shown frame for by-frame, clip embedding for by-clip).
    frame_queries: np.ndarray | None = None  # (n, D)
    clip_queries: np.ndarray | None = None  # (n, D)
    bgm_query: np.ndarray | None = None  # (D_audio,) target BGM embedding; None = no music
    notes: dict[str, str] = field(default_factory=dict)
    # (n_candidates,) the planner's relevance score per pool candidate (higher = more likely selected), for
    # ranking metrics (`autocut eval`: ROC-AUC against the positives); None = the planner has none.
    candidate_scores: np.ndarray | None = None
    # Ground each clip in its own candidate first (the planner named that clip), then elsewhere in its
    # source, and in another source only when the line does not fit there (the plan's notes then say so).
    # False: where the grounding queries lead, as the paper grounds generated codes.
    same_source: bool = False
    # Per clip of `order`, how long the planner wants its segment (seconds; with `same_source`, the cut of
    # its own candidate starts that long and grows only when the line needs more); None = the candidate's.
    durations_s: tuple[float, ...] | None = None

    def key(self) -> tuple:
        """Identity for variant distinctness: the clip sequence and the script."""
        return (self.order, self.sentences)


def check_decision(task: PlanningTask, d: Decision) -> None:
    """Raise `PlanError` unless `d` meets every constraint of the editing tasks."""
    n = task.n_candidates
    sel = list(d.selected)
    if not sel:
        raise PlanError("the planner selected no clips")
    if any(not 0 <= i < n for i in sel):
        raise PlanError(f"the planner selected candidate indices {sel} outside 0..{n - 1}")
    if len(set(sel)) != len(sel):
        raise PlanError(f"the planner selected a candidate twice: {sel}")
    if sel != sorted(sel):
        raise PlanError(f"selection answers list indices in ascending order, got {sel}")
    if task.n_select is not None and len(sel) != task.n_select:
        raise PlanError(f"the script has {task.n_select} sentences but the planner selected {len(sel)} clips")
    if sorted(d.order) != sel:
        raise PlanError(f"the order {list(d.order)} is not a permutation of the selection {sel}")
    if len(d.sentences) != len(d.order):
        raise PlanError(f"{len(d.sentences)} script lines for {len(d.order)} clips: one sentence per clip")
    if any(not s.strip() for s in d.sentences):
        raise PlanError("a script line is empty")
    for name, q in (("frame", d.frame_queries), ("clip", d.clip_queries)):
        if q is not None and (q.ndim != 2 or q.shape[0] != len(d.order)):
            raise PlanError(f"{name} grounding queries have shape {q.shape}, expected ({len(d.order)}, D)")
    if d.bgm_query is not None and d.bgm_query.ndim != 1:
        raise PlanError(f"the BGM query must be one embedding, got shape {d.bgm_query.shape}")
    if d.candidate_scores is not None and d.candidate_scores.shape != (n,):
        raise PlanError(f"candidate scores have shape {d.candidate_scores.shape}, expected ({n},)")


def select_under_budget(priority: Sequence[int], durations_s: np.ndarray, budget_s: float) -> list[int]:
    """Footage-driven selection: candidates in `priority` order while their durations fit the budget.

    Every candidate is used when the pool fits; otherwise the highest-priority ones that fit (at
    least one: a lone over-long clip is trimmed later).
    """
    if float(np.sum(durations_s)) <= budget_s:
        return sorted(int(i) for i in priority)
    chosen: list[int] = []
    total = 0.0
    for i in priority:
        if total + durations_s[i] <= budget_s:
            chosen.append(int(i))
            total += float(durations_s[i])
    if not chosen:
        chosen = [int(priority[0])]
    return sorted(chosen)


class Planner:
    """Base class: produce `n_variants` distinct decisions from per-step choices."""

    # Set per class; a wrapper may set it per instance (the evaluator's recorder takes its planner's name).
    name: str = ""
    # Attempts per requested variant before giving up on finding another distinct one.
    attempts_per_variant: ClassVar[int] = 12

    def plan(self, task: PlanningTask, n_variants: int) -> list[Decision]:
        """Up to `n_variants` decisions that differ in selection, order or script (fewer only if the pool
        cannot give more: the caller reports it)."""
        out: list[Decision] = []
        seen: set[tuple] = set()
        attempt = 0
        while len(out) < n_variants and attempt < n_variants * self.attempts_per_variant:
            rng = np.random.default_rng([int(task.request.seed), len(out), attempt])
            d = self.decide(task, len(out), attempt, rng)
            check_decision(task, d)
            attempt += 1
            if d.key() in seen:
                continue
            seen.add(d.key())
            out.append(d)
        if len(out) < n_variants:
            log.warning(
                "%s planner found %d distinct plans of the %d asked (small pool)", self.name, len(out), n_variants
            )
        return out

    def decide(self, task: PlanningTask, variant: int, attempt: int, rng: np.random.Generator) -> Decision:
        """One decision: select -> order -> script -> BGM (AutoCut appendix 7.2)."""
        selected = self.select(task, variant, attempt, rng)
        order = self.order(task, selected, variant, attempt, rng)
        sentences = self.script(task, order, variant, attempt, rng)
        bgm = self.bgm_query(task, order, sentences, variant, rng)
        return Decision(
            tuple(sorted(selected)),
            tuple(order),
            tuple(sentences),
            bgm_query=bgm,
            notes=self.notes(task),
            candidate_scores=self.candidate_scores(task),
        )

    # The per-step hooks `decide` calls. A planner implements them, or overrides `decide` (or `plan`) whole
    # and then never reaches them (the token LM planner, the evaluator's recorder).
    def select(self, task: PlanningTask, variant: int, attempt: int, rng: np.random.Generator) -> list[int]:
        """Candidate indices to use (exactly `task.n_select` when set)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither select() nor decide()")

    def order(
        self, task: PlanningTask, selected: list[int], variant: int, attempt: int, rng: np.random.Generator
    ) -> list[int]:
        """The selected candidates in ad order."""
        raise NotImplementedError(f"{type(self).__name__} implements neither order() nor decide()")

    def bgm_query(
        self, task: PlanningTask, order: list[int], sentences: list[str], variant: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        """Target BGM embedding in the library's audio space, or None when the library has no BGM."""
        raise NotImplementedError(f"{type(self).__name__} implements neither bgm_query() nor decide()")

    def script(
        self, task: PlanningTask, order: list[int], variant: int, attempt: int, rng: np.random.Generator
    ) -> list[str]:
        """Script-driven: the user's sentences; footage-driven: template lines fit to the clips' durations."""
        if task.request.script:
            return [s.strip() for s in task.request.script]
        durations = [task.pool.candidates[i].duration_s for i in order]
        lines = write_script(
            task.request.product,
            durations,
            task.request.language,
            seed=int(rng.integers(2**31)),
            words_per_s=task.words_per_s,
            speech_rate=task.speech_rate,
        )
        return [ln.text for ln in lines]

    def notes(self, task: PlanningTask) -> dict[str, str]:
        """Free-form facts recorded in the plan's notes (e.g. what a heuristic anchored on)."""
        return {}

    def candidate_scores(self, task: PlanningTask) -> np.ndarray | None:
        """(n_candidates,) relevance score per candidate, recorded in the decision for ranking metrics;
        None (the default) when the planner has no such scores."""
        return None


def get_planner(name: str, **options: object) -> Planner:
    """A planner by name (see `PLANNERS`), constructed with `options` (e.g. ``model_dir`` for "token")."""
    target = PLANNERS.get(name)
    if target is None:
        raise ConfigError(f"unknown planner {name!r}; choose one of {', '.join(sorted(PLANNERS))}")
    module, cls = target.split(":")
    planner_cls = getattr(importlib.import_module(module), cls)
    try:
        inspect.signature(planner_cls).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for the {name} planner: {exc}") from None
    return planner_cls(**options)


def auto_planner(library_dir: str | Path) -> tuple[str, str]:
    """What the server's "auto" planner uses, and why: the compact planner when the library holds one
    (``models/lm/compact/model``) whose model card records a held-out check it won against the heuristic
    (`autocut.lm.compact_heldout.lm_beats_heuristic`), else the heuristic. An LM without such a record (the
    token planner of ``models/lm/sft/model`` has none) is never picked by default."""
    import json

    from autocut.lm.card import lm_beats_heuristic

    layout = LibraryLayout.of(library_dir)
    model = layout.compact_model_dir
    card_path = model / "compact_card.json"
    if not (model / "config.json").exists():
        return "heuristic", f"auto: heuristic (no compact planner at {model.relative_to(layout.root)})"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return "heuristic", f"auto: heuristic (the compact planner's model card is unreadable: {exc})"
    check = card.get("heldout") if isinstance(card, dict) else None
    if not check:
        return "heuristic", "auto: heuristic (the compact planner has no held-out check in its model card)"
    if lm_beats_heuristic(check):
        return (
            "compact",
            f"auto: compact planner (it beat the heuristic on its held-out check: {check.get('reading', '')})",
        )
    return (
        "heuristic",
        f"auto: heuristic (the compact planner lost or tied on its held-out check: {check.get('reading', '')})",
    )


def default_planner(library_dir: str | Path) -> str:
    """The planner name `auto_planner` picks for `library_dir`."""
    return auto_planner(library_dir)[0]
