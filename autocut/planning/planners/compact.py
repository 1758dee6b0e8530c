"""The compact planner: a small token LM plans the whole ad in one exchange, one decision per token
(docs/method.md, "The compact planner"; format `autocut.lm.compact`, training `autocut train compact`).

Candidates enter the prompt as the 8 video RQ-VAE codes of their clip-mean embedding; the product photo (when
the request has one) as one frame block. The model names each clip of the ad by its codes. Decoding runs over
one KV cache and is constrained to the request's candidates: at each row, every candidate's 8-code path is
scored in one batched step (each level normalised over its 256 codes), and

- script-driven: after each script line, the row's scores over the candidates are kept and the best allowed
  one (unused, and long enough for the line's voice: `PlanningTask.speech_rate`) is fed back; the final clips
  are the assignment of lines to distinct candidates that maximises the summed log-probability among feasible
  pairs (Hungarian algorithm), so a plan fails only when no feasible assignment exists, and the error names
  the line;
- footage-driven: the model names the next clip among the unused ones that still fit the duration budget,
  writes its line (text tokens only, ended by the line break or a cap), and ends the ad by starting the BGM
  block (allowed once it has `min_clips` clips, or when nothing else fits);
- BGM: 8 audio codes, each level restricted to its own tokens, decoded by the audio RQ-VAE into the BGM
  query that `autocut.planning.pipeline` searches the library with (FAISS).

Grounding queries are the RQ-VAE decoded codes of the chosen candidates (the paper's path). Variant 0 is
greedy; later variants sample every decision at `temperature`.

Identity prior (script-driven requests with a product photo; `identity_weight` > 0, default: the weight the
model's card records under `decoding`, else 0): each clip decision adds `identity_weight` x the
candidate's z-scored similarity to the photo (`autocut.planning.identity`: the library's learned identity
metric; without one no prior, unless `identity="cosine"` asks for the raw cosine) to the LM's
log-probabilities, a product of experts at decoding time: the LM decides which clip fits each line and where,
the prior which clips show the product. 0 is the pure LM. The plan's notes say which prior was used and how
strongly. Footage-driven requests get no prior (their pool is one product's reel; a prior at every step would
reorder the ad by identity).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocut.errors import ConfigError, PlanError
from autocut.library.layout import LibraryLayout
from autocut.lm import tokens as T
from autocut.planning.planners.base import Decision, Planner, PlanningTask

__all__ = ["CompactPlanner"]

log = logging.getLogger(__name__)

_NEG = -1e9


def _l2(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return (x / n).astype(np.float32) if n > 1e-12 else x.astype(np.float32)


@dataclass(eq=False)
class _Loaded:
    library_dir: Path
    model_dir: Path
    model: Any
    tok: Any
    video: Any
    audio: Any
    lang_masks: dict  # language -> (V,) text tokens a line in that language may hold
    word_mask: np.ndarray  # (V,) tokens holding a letter or a CJK character
    card: dict


class CompactPlanner(Planner):
    """See the module docstring."""

    name = "compact"
    attempts_per_variant = 4

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        video_tokenizer: str | Path | Any | None = None,
        audio_tokenizer: str | Path | Any | None = None,
        temperature: float = 0.8,
        min_clips: int = 3,
        max_line_tokens: int = 40,
        num_threads: int | None = None,
        identity_weight: float | None = None,
        identity: str = "auto",
    ) -> None:
        from autocut.planning.identity import IdentityPrior

        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if min_clips < 1 or max_line_tokens < 1:
            raise ConfigError("min_clips and max_line_tokens must be >= 1")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.video_tokenizer = video_tokenizer
        self.audio_tokenizer = audio_tokenizer
        self.temperature = temperature
        self.min_clips = min_clips
        self.max_line_tokens = max_line_tokens
        self.num_threads = num_threads
        if identity_weight is not None and not (0.0 <= float(identity_weight) <= 100.0):
            raise ConfigError(f"identity_weight must be in [0, 100], got {identity_weight}")
        self.identity_weight = None if identity_weight is None else float(identity_weight)
        self.identity = IdentityPrior(identity)
        self._match_identity = IdentityPrior("learned")  # for models whose match buckets rank through it
        self._loaded: _Loaded | None = None
        self._photo_cache: tuple[str, np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------------------------------ loading

    def _load(self, library_dir: Path) -> _Loaded:
        if self._loaded is not None and self._loaded.library_dir == library_dir:
            return self._loaded
        import torch

        from autocut.lm.backbone import load_causal_lm
        from autocut.lm.compact_train import ids_of, read_card
        from autocut.planning.planners.token import TokenPlanner

        layout = LibraryLayout.of(library_dir)
        model_dir = self.model_dir if self.model_dir is not None else layout.compact_model_dir
        if not (model_dir / "config.json").exists():
            raise ConfigError(
                f"no compact planner at {model_dir}: train one with `autocut train compact` (or pass model_dir)"
            )
        card = read_card(model_dir)
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        model, tok = load_causal_lm(model_dir)
        model.eval()
        ids_of(tok)  # fails early when the tokenizer lacks the format's tokens
        video = TokenPlanner._codec(self.video_tokenizer, layout.rqvae_dir("video"), "video", library_dir)
        apath = layout.rqvae_dir("audio")
        audio = (
            TokenPlanner._codec(self.audio_tokenizer, apath, "audio", library_dir)
            if self.audio_tokenizer is not None or apath.exists()
            else None
        )
        rows = model.get_input_embeddings().weight.shape[0]
        n_base = len(tok) - len(tok.get_added_vocab())
        langs, word = _line_masks(tok, rows, n_base)
        self._loaded = _Loaded(library_dir, model_dir, model, tok, video, audio, langs, word, card)
        return self._loaded

    def warm_up(self, library_dir: str | Path) -> None:
        self._load(Path(library_dir))

    # ------------------------------------------------------------------------------------------ planning

    def _photo(self, task: PlanningTask, loaded: _Loaded) -> tuple[np.ndarray, np.ndarray] | None:
        """The product photo's embedding and codes (None without a photo); cached per library and path."""
        path = task.request.product.image_path
        if not path:
            return None
        key = f"{task.library_dir}|{path}"
        if self._photo_cache is not None and self._photo_cache[0] == key:
            return self._photo_cache[1], self._photo_cache[2]
        from autocut.planning.planners.heuristic import embed_product_image

        vec = embed_product_image(path, task.catalog, task.frame_weights)
        codes = np.asarray(loaded.video.encode(vec[None]))[0]
        self._photo_cache = (key, vec, codes)
        return vec, codes

    def decide(self, task: PlanningTask, variant: int, attempt: int, rng: np.random.Generator) -> Decision:
        import torch

        from autocut.lm.compact import match_buckets, user_message
        from autocut.lm.compact_train import ids_of, prompt_ids
        from autocut.lm.prompts import ProductView

        loaded = self._load(Path(task.library_dir))
        model, tok = loaded.model, loaded.tok
        ix = ids_of(tok)
        req = task.request
        cands = task.pool.candidates
        n = len(cands)
        from autocut.lm.compact import MAX_CANDIDATES

        if n > MAX_CANDIDATES:
            raise PlanError(f"{n} candidates; the compact planner takes at most {MAX_CANDIDATES}")
        t0 = time.perf_counter()
        trained = (loaded.card.get("train") or {}).get("config") or {}
        levels = int(trained.get("levels", T.NUM_LEVELS))
        edges = tuple(int(e) for e in trained.get("match_edges") or ())  # cards before match tokens: none
        vectors = np.stack([c.vector for c in cands])
        full_codes = np.asarray(loaded.video.encode(vectors))
        codes = full_codes[:, :levels]
        product = ProductView(req.product.name, req.product.brand, list(req.product.selling_points))
        scenario = "script" if task.n_select is not None else "footage"
        photo = self._photo(task, loaded)
        match = None
        if photo is not None and edges:
            pvec, cvecs = photo[0], vectors
            if trained.get("match_metric", "cosine") == "learned":  # ranks through the library's identity map
                ident = self._match_identity.model(task.library_dir, task.catalog.pca_version)
                assert ident is not None  # "learned" raises instead of returning None
                pvec, cvecs = pvec @ ident.weight.T, vectors @ ident.weight.T
            match = match_buckets(pvec, cvecs, edges)
        user = user_message(
            scenario, req.language, product, list(codes), None if photo is None else photo[1][:levels], match
        )
        prior = np.zeros(n)
        weight = self.identity_weight
        if weight is None:  # the model's own: what its card's held-out check was measured with
            weight = float((loaded.card.get("decoding") or {}).get("identity_weight", 0.0))
        if photo is not None and weight > 0 and task.n_select is not None:
            from autocut.planning.identity import zscore

            sims, how = self.identity.scores(task.library_dir, task.catalog.pca_version, photo[0], vectors)
            if how == "learned" or self.identity.mode == "cosine":
                prior = weight * zscore(sims)
                notes_prior = f"{how} identity x {weight:g}"
            else:  # the weight was chosen for the learned metric; the raw cosine only when asked for
                notes_prior = "none (the library has no learned identity model: `autocut train identity`)"
        else:
            notes_prior = "none"
        sample = variant > 0 or attempt > 0
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        np_rng = np.random.default_rng(int(rng.integers(2**31)))
        state: dict[str, Any] = {"past": None, "logits": None}

        @torch.no_grad()
        def feed(ids: list[int]) -> np.ndarray:
            out = model(input_ids=torch.tensor([ids]), cache=state["past"], use_cache=True)
            state["past"] = out.cache
            state["logits"] = out.logits[0, -1].float()
            return state["logits"]

        def pick(allowed: np.ndarray) -> tuple[int, torch.Tensor]:
            """Choose among token ids `allowed` (greedy, or sampled for variants); returns (id, log-probs)."""
            logits = state["logits"]
            sub = logits[torch.as_tensor(allowed)]
            logp = torch.log_softmax(sub, dim=-1)
            if sample:
                k = int(torch.multinomial(torch.softmax(sub / self.temperature, dim=-1), 1, generator=gen))
            else:
                k = int(torch.argmax(sub))
            return int(allowed[k]), logp

        from autocut.lm.compact_train import path_logprobs

        def paths() -> np.ndarray:
            """(n,) log-probability of each candidate's code path at the current position."""
            return path_logprobs(model, state["past"], state["logits"], codes, ix, match=match)

        def choose(scores: np.ndarray, allowed: list[int]) -> int:
            sub = torch.as_tensor(scores[allowed], dtype=torch.float32)
            if sample:
                return allowed[int(torch.multinomial(torch.softmax(sub / self.temperature, dim=-1), 1, generator=gen))]
            return allowed[int(torch.argmax(sub))]

        feed(prompt_ids(tok, user))
        notes: dict[str, str] = {
            "lm_model": str(loaded.model_dir),
            "lm_decoding": "sampled" if sample else "greedy",
            "lm_identity_prior": notes_prior,
        }
        durations = task.pool.durations_s
        seg_durations = None
        if scenario == "script":
            gumbel = (lambda shape: -np.log(-np.log(np_rng.uniform(1e-9, 1.0, size=shape)))) if sample else None
            order, sentences, scores = self._script(
                task, feed, paths, choose, ix, codes, match, durations, notes, gumbel, prior
            )
        else:
            # No prior footage-driven: the pool is one product's reel, and a prior added at every step would
            # reorder the ad by identity (val: pairwise order 0.60 -> 0.45 at weight 3).
            order, sentences, scores, seg_durations = self._footage(
                task, loaded, feed, paths, choose, pick, state, ix, codes, match, durations, notes
            )
        if match is not None:
            notes["lm_match_buckets"] = ", ".join(str(int(match[k])) for k in order)
        bgm_query = None
        if len(task.bgm_ids) and loaded.audio is not None:
            if scenario == "script":
                feed([ix.audio_start])
            acodes = []
            for lv in range(T.NUM_LEVELS):
                tid, _ = pick(np.asarray(ix.audio[lv]))
                acodes.append(ix.audio[lv].index(tid))
                feed([tid])
            notes["lm_bgm"] = T.audio_block(np.asarray(acodes))
            bgm_query = _l2(np.asarray(loaded.audio.decode(np.asarray([acodes])))[0])
        elif len(task.bgm_ids):
            notes["lm_bgm"] = "no audio RQ-VAE: no BGM"
        dec = np.asarray(loaded.video.decode(full_codes[list(order)]))
        q = np.stack([_l2(x) for x in dec])
        notes["lm_seconds"] = f"{time.perf_counter() - t0:.2f}"
        return Decision(
            tuple(sorted(order)),
            tuple(order),
            tuple(sentences),
            frame_queries=q,
            clip_queries=q,
            bgm_query=bgm_query,
            notes=notes,
            candidate_scores=scores,
            same_source=True,
            durations_s=seg_durations,
        )

    def _script(self, task, feed, paths, choose, ix, codes, match, durations, notes, gumbel=None, prior=None):
        from scipy.optimize import linear_sum_assignment

        lines = [s.strip() for s in task.request.script or []]
        n = len(codes)
        feasible = np.ones((len(lines), n), bool)
        if task.speech_rate is not None:
            for i, s in enumerate(lines):
                for k in range(n):
                    feasible[i, k] = task.speech_rate(s, float(durations[k])) is not None
        logp = np.zeros((len(lines), n))
        prior = np.zeros(n) if prior is None else prior
        used: set[int] = set()
        for i, line in enumerate(lines):
            feed(ix.text(line))
            sc = paths()
            logp[i] = sc - np.logaddexp.reduce(sc)
            ok = [k for k in range(n) if feasible[i, k] and k not in used] or [k for k in range(n) if k not in used]
            k = choose(logp[i] + prior, ok)
            used.add(k)
            feed([*ix.clip(codes[k], None if match is None else int(match[k])), *ix.row_end])
        # Variants sample the assignment too (perturb-and-MAP: Gumbel noise on the scores at `temperature`).
        fused = logp + prior[None, :]
        noisy = fused + self.temperature * gumbel(logp.shape) if gumbel is not None else fused
        cost = np.where(feasible, -noisy, 1e6)
        rows, cols = linear_sum_assignment(cost)
        assign = dict(zip(rows.tolist(), cols.tolist()))
        bad = [i for i in range(len(lines)) if not feasible[i, assign[i]]]
        if bad:
            i = bad[0]
            longest = float(durations.max()) if len(durations) else 0.0
            raise PlanError(
                f"script line {i + 1} ({lines[i][:60]!r}) gets no clip long enough for its voice: no assignment of "
                f"lines to distinct clips fits every line at up to the voice's fastest rate (longest clip "
                f"{longest:.1f} s)"
            )
        order = [assign[i] for i in range(len(lines))]
        notes["lm_rows"] = ", ".join(str(k + 1) for k in order)
        scores = np.exp(logp).max(axis=0).astype(np.float32)
        return order, lines, scores

    def _footage(self, task, loaded, feed, paths, choose, pick, state, ix, codes, match, durations, notes):

        n = len(codes)
        order: list[int] = []
        sentences: list[str] = []
        scores = np.zeros(n, np.float32)
        total = 0.0
        # A line holds the request language's text tokens (no line break inside) and at least one word.
        lang = "zh" if task.request.language == "zh" else "en"
        text_ids = np.where(loaded.lang_masks[lang])[0]
        line_ids = np.concatenate([text_ids, np.asarray(ix.row_end)])
        from autocut.lm.compact import DURATION_TOKENS

        trained = (loaded.card.get("train") or {}).get("config") or {}
        with_durations = bool(trained.get("duration_tokens", False))  # cards before duration tokens: none
        decide_durations = bool(trained.get("segment_durations", False))
        seg_durations: list[float] = []
        while True:
            ok = [k for k in range(n) if k not in order and total + float(durations[k]) <= task.budget_s]
            can_end = len(order) >= min(self.min_clips, n) or not ok
            if not ok:
                break
            if can_end:
                # End the ad or go on: the BGM start against the first tokens of the clips still allowed.
                first = sorted({ix.clip(codes[k], None if match is None else int(match[k]))[0] for k in ok})
                tid, _ = pick(np.asarray([ix.audio_start, *first]))
                if tid == ix.audio_start:
                    break
            sc = paths()
            probs = np.exp(sc - np.logaddexp.reduce(sc[ok]))
            for k in ok:
                scores[k] = max(scores[k], float(probs[k]))
            k = choose(sc, ok)
            order.append(k)
            total += float(durations[k])
            feed(ix.clip(codes[k], None if match is None else int(match[k])))
            if decide_durations:
                # How long the segment runs: 1 s up to the whole clip, in half seconds.
                top = max(2, min(int(2 * float(durations[k]) + 1e-6), len(DURATION_TOKENS) - 1))
                allowed = np.asarray([ix.duration(h / 2) for h in range(2, top + 1)])
                tid, _ = pick(allowed)
                half = 2 + int(np.where(allowed == tid)[0][0])
                seg_durations.append(min(float(durations[k]), half / 2))
                feed([tid])
            elif with_durations:
                feed([ix.duration(float(durations[k]))])
            toks: list[int] = []
            has_word = False
            for _ in range(self.max_line_tokens):
                t, _ = pick(line_ids if has_word else text_ids)
                if t == ix.row_end[0]:
                    break
                toks.append(t)
                has_word = has_word or bool(loaded.word_mask[t])
                feed([t])
            feed(list(ix.row_end))
            line = loaded.tok.decode(toks, skip_special_tokens=True).strip()
            sentences.append(line or "…")
        if not order:
            raise PlanError("the compact planner placed no clip (no candidate fits the duration budget)")
        feed([ix.audio_start])
        notes["lm_rows"] = ", ".join(str(k + 1) for k in order)
        notes["lm_script"] = " / ".join(sentences)
        if seg_durations:
            notes["lm_durations"] = ", ".join(f"{x:g}" for x in seg_durations)
        sentences = self._fit_voice(task, sentences, [float(durations[k]) for k in order], notes)
        return order, sentences, scores, (tuple(seg_durations) if seg_durations else None)

    @staticmethod
    def _fit_voice(task: PlanningTask, lines: list[str], durations: list[float], notes: dict[str, str]) -> list[str]:
        """Shorten a line the voice cannot say in its clip: drop trailing words, or characters when the
        line has no spaces (Chinese), keeping at least one."""
        if task.speech_rate is None:
            return lines
        out = list(lines)
        trimmed = []
        for k, (s, d) in enumerate(zip(out, durations)):
            if task.speech_rate(s, d) is not None:
                continue
            spaced = " " in s.strip()
            parts = s.split() if spaced else list(s)
            while len(parts) > 1 and task.speech_rate((" " if spaced else "").join(parts), d) is None:
                parts.pop()
            out[k] = (" " if spaced else "").join(parts)
            trimmed.append(k + 1)
        if trimmed:
            notes["lm_script_trimmed"] = f"lines {', '.join(map(str, trimmed))} shortened to fit their clips"
        return out


def _line_masks(tok, rows: int, n_base: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per language, the text tokens a script line may hold, and the tokens holding a word character.
    English lines take no CJK (nor partial UTF-8 pieces); Chinese lines take both (model codes like "X9" are
    Latin); neither takes a line break (the row's end is its own token)."""
    en, zh, word = np.zeros(rows, bool), np.zeros(rows, bool), np.zeros(rows, bool)
    for i in range(n_base):
        piece = tok.decode([i])
        if "\n" in piece or "\r" in piece:
            continue
        cjk = any(
            "\u3400" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" or "\u3000" <= ch <= "\u303f" for ch in piece
        )
        latin = any(ch.isascii() and ch.isalpha() for ch in piece)
        en[i] = not cjk and "\ufffd" not in piece
        zh[i] = True
        word[i] = latin or any("\u3400" <= ch <= "\u9fff" for ch in piece)
    return {"en": en, "zh": zh}, word
