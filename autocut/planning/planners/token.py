"""The token-LM planner: the fine-tuned extended-vocabulary LM edits (AutoCut appendix 7.2;
docs/method.md, "Decoding and grounding").

Per variant, with the prompts of `autocut.lm.prompts` rendered exactly as in training:

- script-driven: select (exactly one clip per sentence) -> sort (with the script) -> BGM;
- footage-driven: every candidate, or those that fit the duration budget -> script (one line per clip,
  each sized to its clip: word target from the clip's duration, WCD rate, and at most the characters
  the voice can say in it) -> sort (with the script) -> BGM.

Candidates are shown as the video RQ-VAE codes of their sampled frames. Every answer comes from
constrained decoding (`autocut.lm.decoding`, or the server backend `autocut.lm.vllm_backend`), so it
parses by construction. Grounding follows the paper: the chosen candidates' frame codes are RQ-VAE
decoded — `frame_queries` = the first shown frame, `clip_queries` = the mean of the shown frames
(L2-normalised) — and `autocut.planning.pipeline` searches the pool with them; the generated BGM codes are
decoded by the audio RQ-VAE into `bgm_query`, searched over the BGM library. Variant 0 is greedy;
later variants are sampled (``temperature``), and `Planner.plan` keeps only distinct ones.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from autocut.errors import CheckpointError, ConfigError, PlanError
from autocut.library.layout import LibraryLayout
from autocut.lm import tokens as T
from autocut.planning.planners.base import Decision, Planner, PlanningTask, select_under_budget
from autocut.speech.words import count_words, target_words

__all__ = ["LMBackend", "TokenPlanner", "TransformersLM"]

log = logging.getLogger(__name__)

# Where `autocut train sft` writes its model inside a library.
# Words a script line may hold without length targets (en, zh): far above any clip's target, so the
# LM's own line ends decide the length (`length_targets=False`).
FREE_LINE_MAX_WORDS = (40, 80)

# Long natural sentences whose prefixes measure how many characters the voice says in a clip.
_VOICE_PROBE = {
    "en": (
        "Wake up to fresh coffee every morning with a machine that grinds the beans, heats the water and "
        "pours the perfect cup while you get ready, then cleans itself in minutes so your kitchen stays "
        "tidy and your mornings stay calm, quick and easy for the whole family, every single day of the "
        "week, at home or at the office, with one button and no mess at all, for years to come."
    ),
    "zh": (
        "每天早上醒来就有一杯新鲜的咖啡，机器自动研磨咖啡豆，加热清水，在你梳洗的时候冲好一杯香浓的咖啡，"
        "几分钟就能自动清洁，厨房始终干净整洁，全家人的早晨都变得轻松从容，无论在家还是在办公室，"
        "只需轻轻一按，没有任何麻烦，陪伴你度过每一天的美好时光，让生活更有品质，更加健康，更加快乐。"
    ),
}


class LMBackend(Protocol):
    """The three constrained answer kinds, on a rendered prompt (in-process or on a server)."""

    def choose_indices(
        self,
        prompt: str,
        *,
        n_options: int,
        count: int | None,
        ascending: bool,
        permutation: bool,
        sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> list[int]: ...

    def generate_lines(
        self,
        prompt: str,
        *,
        n_lines: int,
        max_words: list[int],
        language: str,
        sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
        min_words: list[int] | None = None,
        max_chars: list[int] | None = None,
    ) -> list[str]: ...

    def generate_audio_codes(
        self, prompt: str, *, sample: bool = False, temperature: float = 1.0, seed: int = 0
    ) -> np.ndarray: ...


class TransformersLM:
    """`LMBackend` over an in-process Hugging Face model (`autocut.lm.decoding`)."""

    def __init__(self, model, tok) -> None:
        self.model, self.tok = model, tok

    def choose_indices(self, prompt: str, **kw: Any) -> list[int]:
        from autocut.lm.decoding import choose_indices

        return choose_indices(self.model, self.tok, prompt, **kw)

    def generate_lines(self, prompt: str, **kw: Any) -> list[str]:
        from autocut.lm.decoding import generate_lines

        return generate_lines(self.model, self.tok, prompt, **kw)

    def generate_audio_codes(self, prompt: str, **kw: Any) -> np.ndarray:
        from autocut.lm.decoding import generate_audio_codes

        return generate_audio_codes(self.model, self.tok, prompt, **kw)


class _Codec(Protocol):
    """What the planner needs from an RQ-VAE tokenizer (`rqvae.Tokenizer` satisfies it)."""

    def encode(self, x: np.ndarray) -> np.ndarray: ...  # (N, D) -> (N, 8) int

    def decode(self, codes: np.ndarray) -> np.ndarray: ...  # (N, 8) -> (N, D)


@dataclass(eq=False)
class _Loaded:
    library_dir: Path
    model_dir: Path
    lm: LMBackend
    tok: Any  # the model's tokenizer: renders prompts with its chat template
    video: _Codec
    audio: _Codec | None
    audio_path: Path
    load_s: float


@dataclass(eq=False)
class _TaskState:
    """Per-request values every variant reuses."""

    codes: list[np.ndarray]  # per candidate (K, 8) video codes of its shown frames
    blocks: list[str]  # per candidate clip block (no text)
    char_budget: dict[int, int] = field(default_factory=dict)  # clip duration (0.1 s) -> characters the voice says


@dataclass
class _Step:
    """What each LM step of one decision (select, sort, script, BGM) works with."""

    task: PlanningTask
    loaded: _Loaded
    state: _TaskState
    product: Any  # autocut.lm.prompts.ProductView
    decoding: dict[str, Any]  # sample / temperature / seed for the backend
    render: Callable[[Any], str]  # prompt -> chat-templated text
    notes: dict[str, str]  # the decision's notes, filled by each step
    timed: Callable[..., Any]  # timed(name, fn, *args, **kw): fn's result, its wall time recorded


def _l2(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return (x / n).astype(np.float32) if n > 1e-12 else x.astype(np.float32)


class TokenPlanner(Planner):
    """Plans with the fine-tuned token LM; see the module docstring."""

    name = "token"
    # A model directory (the token planner stores a Path); the caption planners also keep a backbone name here.
    model_dir: str | Path | None
    # Sampled retries (each a full decode) before a variant is given up as a duplicate.
    attempts_per_variant = 4

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        video_tokenizer: str | Path | _Codec | None = None,
        audio_tokenizer: str | Path | _Codec | None = None,
        temperature: float = 0.9,
        word_tolerance: float = 0.25,
        backend: Literal["transformers", "vllm"] = "transformers",
        server_url: str = "http://localhost:8000/v1",
        server_model: str = "autocut-lm",
        server_api: Literal["structured_outputs", "guided"] = "structured_outputs",
        device: str = "cpu",
        num_threads: int | None = None,
        length_targets: bool = True,
    ) -> None:
        """`model_dir` defaults to ``<library>/models/lm/sft/model``, the tokenizers to
        ``<library>/models/rqvae_video|rqvae_audio`` (paths or loaded codecs); all load once, on first use.

        `word_tolerance`: a script line may hold target x (1 +- tolerance) words (at least +-1);
        `length_targets=False` writes script lines without word targets or voice character budgets (only a
        safety cap of FREE_LINE_MAX_WORDS): what the LM writes on its own, for the "WCD (no length)" metric;
        lines the voice cannot say in their clips still lose trailing words in the plan (the raw lines are
        in the plan's notes). `backend="vllm"` sends the prompts to an OpenAI-compatible server at `server_url` serving
        `server_model` (the same fine-tuned model; its tokenizer is read from `model_dir`).
        """
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if not 0 <= word_tolerance < 1:
            raise ConfigError(f"word_tolerance must be in [0, 1), got {word_tolerance}")
        if backend not in ("transformers", "vllm"):
            raise ConfigError(f"backend must be 'transformers' or 'vllm', got {backend!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.video_tokenizer = video_tokenizer
        self.audio_tokenizer = audio_tokenizer
        self.temperature = temperature
        self.word_tolerance = word_tolerance
        self.backend = backend
        self.server = (server_url, server_model, server_api)
        self.device = device
        self.num_threads = num_threads
        self.length_targets = bool(length_targets)
        self._loaded: _Loaded | None = None
        self._task_state: tuple[int, _TaskState] | None = None

    # ------------------------------------------------------------------------------------------ loading

    def _load(self, library_dir: Path) -> _Loaded:
        """The LM and the library's RQ-VAEs (each loaded once; another library reloads only what changes)."""
        library_dir = Path(library_dir)
        if self._loaded is not None and self._loaded.library_dir == library_dir:
            return self._loaded
        t0 = time.perf_counter()
        model_dir = (
            Path(self.model_dir) if self.model_dir is not None else LibraryLayout.of(library_dir).planner_model_dir
        )
        if self._loaded is not None and self._loaded.model_dir == model_dir:
            lm, tok = self._loaded.lm, self._loaded.tok
        else:
            lm, tok = self._load_lm(model_dir)
        video = self._codec(
            self.video_tokenizer, LibraryLayout.of(library_dir).rqvae_dir("video"), "video", library_dir
        )
        apath = (
            Path(self.audio_tokenizer)
            if isinstance(self.audio_tokenizer, (str, Path))
            else LibraryLayout.of(library_dir).rqvae_dir("audio")
        )
        audio = (
            self._codec(self.audio_tokenizer, apath, "audio", library_dir)
            if self.audio_tokenizer is not None or apath.exists()
            else None
        )
        self._loaded = _Loaded(library_dir, model_dir, lm, tok, video, audio, apath, time.perf_counter() - t0)
        log.info("token planner: %s (%s backend) loaded in %.1f s", model_dir, self.backend, self._loaded.load_s)
        return self._loaded

    def _load_lm(self, model_dir: Path) -> tuple[LMBackend, Any]:
        if not (model_dir / "config.json").exists():
            raise ConfigError(
                f"no trained token LM at {model_dir}: train one with `autocut train align` then "
                "`autocut train sft` (or pass the model directory), or use another planner"
            )
        from autocut.lm.backbone import load_causal_lm, load_tokenizer

        if self.backend == "transformers":
            import torch

            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            model, tok = load_causal_lm(model_dir, device=self.device)
            model.eval()
            lm: LMBackend = TransformersLM(model, tok)
        else:
            from autocut.lm.vllm_backend import VllmClient

            tok = load_tokenizer(model_dir)
            url, served, api = self.server
            lm = VllmClient(url, served, api=api)
        if tok.convert_tokens_to_ids("<v_0_0>") in (None, tok.unk_token_id):
            raise ConfigError(
                f"{model_dir}: the tokenizer has no AutoCut code tokens (<v_l_c>): not a model "
                "trained by `autocut train`"
            )
        return lm, tok

    @staticmethod
    def _codec(given: str | Path | _Codec | None, default: Path, modality: str, library_dir: Path) -> _Codec:
        if given is not None and not isinstance(given, (str, Path)):
            return given
        path = Path(given) if given is not None else default
        if not path.exists():
            raise ConfigError(f"no {modality} RQ-VAE tokenizer at {path} (train one with `autocut rqvae train`)")
        from autocut.library.catalog import Catalog
        from rqvae import RQVAEError, Tokenizer

        pca = None
        if modality == "video":
            with Catalog.open(library_dir, create=False) as cat:
                pca = cat.pca_version or None
        try:
            return Tokenizer.load(path, expect_modality=modality, expect_pca_version=pca)
        except RQVAEError as exc:
            raise CheckpointError(str(exc)) from None  # the message names the file and the fix

    def _state(self, task: PlanningTask, loaded: _Loaded) -> _TaskState:
        """Candidate codes and clip blocks, computed once per request."""
        if self._task_state is not None and self._task_state[0] == id(task):
            return self._task_state[1]
        cands = task.pool.candidates
        sizes = [len(c.frame_vectors) for c in cands]
        codes = np.asarray(loaded.video.encode(np.concatenate([c.frame_vectors for c in cands])))
        split = np.split(codes, np.cumsum(sizes)[:-1])
        state = _TaskState(split, [T.clip_block(c) for c in split])
        self._task_state = (id(task), state)
        return state

    def warm_up(self, library_dir: str | Path) -> None:
        """Load the LM and the library's RQ-VAEs now (a worker calls this before its first job)."""
        self._load(Path(library_dir))

    # ------------------------------------------------------------------------------------------ planning

    def plan(self, task: PlanningTask, n_variants: int) -> list[Decision]:
        self._load(Path(task.library_dir))  # a missing model fails here, before any variant
        t0 = time.perf_counter()
        try:
            return super().plan(task, n_variants)
        finally:
            self._task_state = None
            log.info("token planner: %d variant(s) in %.1f s", n_variants, time.perf_counter() - t0)

    def decide(self, task: PlanningTask, variant: int, attempt: int, rng: np.random.Generator) -> Decision:
        """select -> sort -> BGM (script-driven) or script -> sort -> BGM (footage-driven), by the LM."""
        from autocut.lm.chat import render_prompt
        from autocut.lm.prompts import ProductView, task_prompt

        loaded = self._load(Path(task.library_dir))
        state = self._state(task, loaded)
        req = task.request
        lang = req.language
        product = ProductView(
            name=req.product.name, brand=req.product.brand, selling_points=list(req.product.selling_points)
        )
        sample = variant > 0 or attempt > 0
        decoding = {"sample": sample, "temperature": self.temperature, "seed": int(rng.integers(2**31))}
        render = functools.partial(render_prompt, loaded.tok)
        notes: dict[str, str] = {
            "lm_model": str(loaded.model_dir),
            "lm_decoding": (
                f"sampled, temperature {self.temperature}, seed {decoding['seed']}" if sample else "greedy"
            ),
        }
        times: dict[str, float] = {}
        n = task.n_candidates

        def timed(name: str, fn, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            times[name] = time.perf_counter() - t0
            return out

        step = _Step(
            task=task,
            loaded=loaded,
            state=state,
            product=product,
            decoding=decoding,
            render=render,
            notes=notes,
            timed=timed,
        )

        if task.n_select is not None:
            script = [s.strip() for s in req.script or []]
            prompt = task_prompt("select", lang, product, n=len(script), script=script, clips=state.blocks)
            picked = timed(
                "select",
                loaded.lm.choose_indices,
                render(prompt),
                n_options=n,
                count=task.n_select,
                ascending=True,
                permutation=False,
                **decoding,
            )
            notes["lm_select"] = T.format_indices(picked)
            selected = [i - 1 for i in picked]
            sentences_of = None
        else:
            priority = list(range(n)) if not sample else [int(i) for i in rng.permutation(n)]
            selected = select_under_budget(priority, task.pool.durations_s, task.budget_s)
            script, sentences_of = self._write_script(step, selected)
        # Sort: the selected clips shown in pool order (variants: shuffled), answered in playback order.
        shown = list(selected) if not sample else [selected[int(i)] for i in rng.permutation(len(selected))]
        if len(shown) > 1:
            prompt = task_prompt(
                "sort", lang, product, n=len(shown), script=script, clips=[state.blocks[i] for i in shown]
            )
            perm = timed(
                "sort",
                loaded.lm.choose_indices,
                render(prompt),
                n_options=len(shown),
                count=None,
                ascending=False,
                permutation=True,
                **decoding,
            )
            notes["lm_sort"] = T.format_indices(perm)
            order = [shown[k - 1] for k in perm]
        else:
            order = shown
        # One sentence per clip of the ad: the script's i-th line (script-driven) or the clip's own line.
        sentences = script if sentences_of is None else [sentences_of[i] for i in order]
        bgm_query = self._bgm(step, order, sentences)
        video = loaded.video
        frame_q = np.stack([_l2(video.decode(state.codes[i][:1])[0]) for i in order])
        clip_q = np.stack([_l2(video.decode(state.codes[i]).mean(axis=0)) for i in order])
        notes["lm_seconds"] = ", ".join(f"{k} {v:.2f}" for k, v in times.items())
        return Decision(
            tuple(sorted(selected)),
            tuple(order),
            tuple(sentences),
            frame_queries=frame_q,
            clip_queries=clip_q,
            bgm_query=bgm_query,
            notes=notes,
        )

    # ------------------------------------------------------------------------------------------ steps

    def _write_script(self, step: _Step, clips: list[int]) -> tuple[list[str], dict[int, str]]:
        """One line per clip (clips in `clips` order), sized to each clip; returns the lines and clip -> line."""
        task, loaded, state, product = step.task, step.loaded, step.state, step.product
        decoding, render, notes, timed = step.decoding, step.render, step.notes, step.timed
        from autocut.lm.prompts import task_prompt

        lang = task.request.language
        durations = [float(task.pool.candidates[i].duration_s) for i in clips]
        targets = [target_words(d, lang, words_per_s=task.words_per_s) for d in durations]
        tol = [max(1, math.ceil(self.word_tolerance * t)) for t in targets]
        lo = [max(1, t - k) for t, k in zip(targets, tol)]
        hi = [max(lo_i, t + k) for lo_i, t, k in zip(lo, targets, tol)]
        max_chars = [self._char_budget(task, state, d) for d in durations] if task.speech_rate is not None else None
        per_word = 1 if lang == "zh" else 2  # fewest characters a word takes (CJK character; space + letter)
        if not self.length_targets:
            lo, hi, max_chars = [1] * len(clips), [FREE_LINE_MAX_WORDS[lang == "zh"]] * len(clips), None
        if max_chars is not None:
            # Never ask for more words than the characters the voice has room for can hold.
            lo = [max(1, min(a, (c + 1) // per_word)) for a, c in zip(lo, max_chars)]
            hi = [max(a, min(b, (c + 1) // per_word)) for a, b, c in zip(lo, hi, max_chars)]
        prompt = render(
            task_prompt(
                "script",
                lang,
                product,
                n=len(clips),
                script=None,
                clips=[state.blocks[i] for i in clips],
                durations_s=durations,
            )
        )
        best: list[str] | None = None
        best_bad = math.inf
        caps = list(max_chars) if max_chars is not None else None
        for retry in range(3):  # the greedy/sampled answer, then up to two sampled retries
            kw = dict(decoding)
            if retry:
                kw.update(sample=True, seed=kw["seed"] + 7919 * retry)
            lines = timed(
                "script",
                loaded.lm.generate_lines,
                prompt,
                n_lines=len(clips),
                max_words=hi,
                language=lang,
                min_words=lo,
                max_chars=caps,
                **kw,
            )
            bad = self._unvoiceable(task, lines, durations)
            if len(bad) < best_bad:
                best, best_bad = lines, len(bad)
            if not bad or not self.length_targets:
                break
            if caps is not None:  # words the voice says slower than the probe text (numbers, spelled letters)
                for k in bad:
                    caps[k] = max(per_word * lo[k], int(caps[k] * 0.7))
        assert best is not None
        lines = self._fit_voice(task, best, durations)
        # The model's answer (clips in pool order; " / " cannot occur inside a line: no "/" in script text).
        notes["lm_script"] = " / ".join(best)
        notes["lm_script_clips"] = T.format_indices([i + 1 for i in clips])
        notes["lm_length_targets"] = "yes" if self.length_targets else "no"
        trimmed = [k + 1 for k, (x, y) in enumerate(zip(best, lines)) if x != y]
        if trimmed:
            notes["lm_script_trimmed"] = (
                f"lines {T.format_indices(trimmed)} lost trailing words the voice could not say in their clips"
            )
        notes["lm_script_words"] = ", ".join(f"{count_words(s)} ({a}-{b})" for s, a, b in zip(best, lo, hi))
        return lines, dict(zip(clips, lines))

    @staticmethod
    def _unvoiceable(task: PlanningTask, lines: list[str], durations: list[float]) -> list[int]:
        if task.speech_rate is None:
            return []
        return [k for k, (s, d) in enumerate(zip(lines, durations)) if task.speech_rate(s, d) is None]

    def _fit_voice(self, task: PlanningTask, lines: list[str], durations: list[float]) -> list[str]:
        """Drop trailing words of a line the voice cannot say in its clip (keeping at least one)."""
        out = list(lines)
        for k in self._unvoiceable(task, out, durations):
            words = out[k].split()
            while len(words) > 1 and task.speech_rate(" ".join(words), durations[k]) is None:  # type: ignore[misc]
                words.pop()
            out[k] = " ".join(words)
        return out

    @staticmethod
    def _char_budget(task: PlanningTask, state: _TaskState, duration_s: float) -> int:
        """Characters of natural text the request's voice says within a clip of `duration_s` (at up to
        the renderer's +15 % rate): the largest prefix of a probe sentence `task.speech_rate` accepts."""
        key = int(math.floor(duration_s * 10))
        if key not in state.char_budget:
            assert task.speech_rate is not None
            probe = _VOICE_PROBE["zh" if task.request.language == "zh" else "en"]
            lo, hi = 0, len(probe)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if task.speech_rate(probe[:mid], key / 10) is not None:
                    lo = mid
                else:
                    hi = mid - 1
            state.char_budget[key] = max(1, lo)
        return state.char_budget[key]

    def _bgm(self, step: _Step, order: list[int], sentences: list[str]) -> np.ndarray | None:
        """The BGM query embedding: generated audio codes decoded by the audio RQ-VAE (None: no BGM)."""
        task, loaded, state, product = step.task, step.loaded, step.state, step.product
        decoding, render, notes, timed = step.decoding, step.render, step.notes, step.timed
        from autocut.lm.prompts import task_prompt

        if len(task.bgm_ids) == 0:
            return None
        if loaded.audio is None:
            notes["lm_bgm"] = f"no audio RQ-VAE at {loaded.audio_path}: no BGM"
            return None
        try:
            clips = [T.clip_block(state.codes[i], s) for i, s in zip(order, sentences)]
        except T.TokenFormatError as exc:
            raise PlanError(f"a script line cannot go into a prompt: {exc}") from None
        prompt = task_prompt("bgm", task.request.language, product, n=len(order), script=None, clips=clips)
        codes = timed("bgm", loaded.lm.generate_audio_codes, render(prompt), **decoding)
        notes["lm_bgm"] = T.audio_block(codes)
        return _l2(np.asarray(loaded.audio.decode(codes[None, :]))[0])
