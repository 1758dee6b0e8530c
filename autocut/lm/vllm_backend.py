"""The token LM behind an OpenAI-compatible server (vLLM), with the answer constraints as structured outputs.

The in-process decoder (`autocut.lm.decoding`) masks logits itself; a server cannot be handed a
Python function, so the same constraints are written in what vLLM's structured outputs accept
(docs: "Structured Outputs"; since v0.12 the request field ``structured_outputs`` with ``choice`` /
``regex`` / ``grammar``, before that the ``guided_choice`` / ``guided_regex`` / ``guided_grammar``
extra parameters — `api` picks the spelling):

- selection, exactly `count` ascending distinct numbers: a grammar with O(n x count) rules
  (``G(v, r) ::= "v" "," G(v+1, r-1) | G(v+1, r)``); a regex for the same language would spell out
  every path (C(n, count) of them), so regex is used only when any count is allowed (`selection_regex`,
  O(n^2));
- sorting, a permutation: a choice list of all n! orders when that is small, else one request per
  position whose choices are the numbers not used yet (the prompt carries the answer so far; the
  server's prefix cache makes the repeats cheap) — distinctness is not a regular language;
- BGM: a regex for ``<|audio_start|>`` + ``<a_0_c>``..``<a_7_c>`` + ``<|audio_end|>``;
- script: a regex of exactly n lines, each of a bounded number of words (Latin: space-separated
  chunks; CJK: characters), no markup characters.

Request bodies are plain dicts built by pure functions (unit-tested); `VllmClient` sends them with
httpx. Its live call needs a GPU server and is exercised only by a test marked ``gpu``. Answers are
parsed and checked again on return: a server that ignored the constraints is an error, never a
silently wrong plan.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autocut.errors import ConfigError, PlanError, TransientError
from autocut.lm import tokens as T
from autocut.lm.decoding import index_answer_valid

__all__ = [
    "Constraint",
    "VllmClient",
    "audio_regex",
    "completion_body",
    "lines_regex",
    "permutation_choices",
    "selection_grammar",
    "selection_regex",
]

log = logging.getLogger(__name__)

ApiStyle = Literal["structured_outputs", "guided"]
# A permutation is sent as one choice list up to this many orders (6! = 720), else position by position.
MAX_CHOICES = 720
_CODE = r"(?:[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])"  # 0..255 without leading zeros


@dataclass(frozen=True)
class Constraint:
    """One structured-output constraint: kind in choice / regex / grammar."""

    kind: Literal["choice", "regex", "grammar"]
    value: str | list[str]


# ---------------------------------------------------------------------------------------------- constraints


def selection_regex(n_options: int) -> str:
    """Regex of every non-empty ascending list of distinct numbers in 1..n_options ("2,5,7")."""
    if n_options < 1:
        raise ConfigError(f"n_options must be >= 1, got {n_options}")
    firsts = []
    for f in range(1, n_options + 1):
        firsts.append(str(f) + "".join(f"(?:,{g})?" for g in range(f + 1, n_options + 1)))
    return "(?:" + "|".join(firsts) + ")"


def selection_grammar(n_options: int, count: int) -> str:
    """EBNF grammar (xgrammar / GBNF syntax) of exactly `count` ascending distinct numbers in 1..n_options.

    ``g_v_r`` derives r numbers, all >= v: take v then "," and r-1 numbers > v, or skip v.
    """
    if not 1 <= count <= n_options:
        raise ConfigError(f"cannot choose {count} distinct clips of {n_options}")
    rules = [f"root ::= g_1_{count}"]
    for r in range(1, count + 1):
        for v in range(1, n_options - r + 2):  # v..n must still hold r numbers
            take = f'"{v}"' if r == 1 else f'"{v}," g_{v + 1}_{r - 1}'
            skip = f" | g_{v + 1}_{r}" if n_options - v >= r else ""
            rules.append(f"g_{v}_{r} ::= {take}{skip}")
    return "\n".join(rules)


def permutation_choices(n_options: int, prefix: Sequence[int] = ()) -> list[str]:
    """Choices for a sorting answer: every full order when n! <= MAX_CHOICES (and no `prefix`), else the
    next number after `prefix` (with its comma unless it is the last)."""
    if n_options < 1:
        raise ConfigError(f"n_options must be >= 1, got {n_options}")
    if not prefix and math.factorial(n_options) <= MAX_CHOICES:
        return [T.format_indices(p) for p in itertools.permutations(range(1, n_options + 1))]
    left = [v for v in range(1, n_options + 1) if v not in set(prefix)]
    if not left:
        raise ConfigError(f"the order {list(prefix)} is already complete")
    tail = "" if len(left) == 1 else ","
    return [f"{v}{tail}" for v in left]


def audio_regex() -> str:
    """Regex of one BGM answer: ``<|audio_start|>`` + 8 a-tokens with levels 0..7 in order + ``<|audio_end|>``."""
    body = "".join(f"<a_{lv}_{_CODE}>" for lv in range(T.NUM_LEVELS))
    return re.escape(T.AUDIO_START) + body + re.escape(T.AUDIO_END)


def lines_regex(min_words: Sequence[int], max_words: Sequence[int], language: str) -> str:
    """Regex of a script answer: one line per entry, line i with min_words[i]..max_words[i] words.

    English: words are space-separated chunks (`count_words` may count fewer when a chunk holds no
    letter, never more); Chinese: characters (punctuation included, so at most max_words words).
    No line holds ``< > |`` (no code or structural markup) or starts/ends with a space.
    """
    if len(min_words) != len(max_words) or not max_words:
        raise ConfigError("need one (min, max) word count per line")
    lines = []
    for lo, hi in zip(min_words, max_words):
        lo, hi = max(1, int(lo)), int(hi)
        if hi < lo:
            raise ConfigError(f"a line's minimum words {lo} exceed its maximum {hi}")
        if language == "zh":  # first and last character not a space, lo..hi characters in all
            edge, mid = r"[^\s<>|]", r"[^\n<>|]"
            if hi == 1:
                lines.append(edge)
            elif lo <= 1:
                lines.append(rf"{edge}(?:{mid}{{0,{hi - 2}}}{edge})?")
            else:
                lines.append(rf"{edge}{mid}{{{lo - 2},{hi - 2}}}{edge}")
        else:
            lines.append(rf"[^\s<>|]+(?: [^\s<>|]+){{{lo - 1},{hi - 1}}}")
    return r"\n".join(lines)


def completion_body(
    *,
    model: str,
    prompt: str,
    constraint: Constraint,
    max_tokens: int,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    api: ApiStyle = "structured_outputs",
) -> dict[str, Any]:
    """The JSON body of one /v1/completions request carrying `constraint`."""
    if api not in ("structured_outputs", "guided"):
        raise ConfigError(f"api must be 'structured_outputs' or 'guided', got {api!r}")
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": int(max_tokens),
        "n": 1,
        "temperature": float(temperature) if sample else 0.0,
        "seed": int(seed),
        # Code tokens are ordinary added tokens, but a server whose tokenizer marks them special would
        # otherwise strip the answer.
        "skip_special_tokens": False,
    }
    if api == "structured_outputs":
        body["structured_outputs"] = {constraint.kind: constraint.value}
    else:
        body[f"guided_{constraint.kind}"] = constraint.value
    return body


# ---------------------------------------------------------------------------------------------- client


class VllmClient:
    """The token LM's three answer kinds over an OpenAI-compatible /v1/completions endpoint.

    `tok` renders prompts (`autocut.lm.chat.render_prompt` needs the model's chat template) and must
    be the served model's tokenizer.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        api: ApiStyle = "structured_outputs",
    ) -> None:
        import httpx

        self.model = model
        self.api = api
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def complete(self, body: dict[str, Any]) -> str:
        """POST one completion; its text (end-of-turn markers removed)."""
        import httpx

        try:
            r = self._http.post("/completions", json=body)
        except httpx.HTTPError as exc:
            raise TransientError(f"LM server {self._http.base_url} unreachable: {exc}") from None
        if r.status_code >= 500:
            raise TransientError(f"LM server error {r.status_code}: {r.text[:300]}")
        if r.status_code >= 400:
            raise ConfigError(f"LM server refused the request ({r.status_code}): {r.text[:300]}")
        try:
            text = r.json()["choices"][0]["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TransientError(f"LM server answered without a completion: {r.text[:300]}") from None
        for end in ("<|im_end|>", "<|endoftext|>"):
            text = text.split(end)[0]
        return text

    def _body(
        self, prompt: str, constraint: Constraint, max_tokens: int, sample: bool, temperature: float, seed: int
    ) -> dict[str, Any]:
        return completion_body(
            model=self.model,
            prompt=prompt,
            constraint=constraint,
            max_tokens=max_tokens,
            sample=sample,
            temperature=temperature,
            seed=seed,
            api=self.api,
        )

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
    ) -> list[int]:
        """`autocut.lm.decoding.choose_indices` on the server."""
        if permutation:
            answer = ""
            chosen: list[int] = []
            while len(chosen) < n_options:
                choices = permutation_choices(n_options, chosen)
                part = self.complete(
                    self._body(
                        prompt + answer,
                        Constraint("choice", choices),
                        4 * n_options + 4,
                        sample,
                        temperature,
                        seed + len(chosen),
                    )
                )
                if part not in choices:
                    raise PlanError(f"the LM server ignored the choice constraint: {part!r}")
                answer += part
                chosen = [int(x) for x in answer.rstrip(",").split(",")]
        else:
            if not ascending:
                raise ConfigError("the server backend selects in ascending order (the selection answer format)")
            c = (
                Constraint("grammar", selection_grammar(n_options, count))
                if count is not None
                else Constraint("regex", selection_regex(n_options))
            )
            answer = self.complete(self._body(prompt, c, 4 * n_options + 4, sample, temperature, seed)).strip()
        valid = index_answer_valid(
            answer,
            n_options=n_options,
            count=n_options if permutation else count,
            ascending=ascending,
            permutation=permutation,
            complete=True,
        )
        if not valid:
            raise PlanError(f"the LM server's answer {answer!r} breaks the constraint it was sent")
        return [int(x) for x in answer.split(",")]

    def generate_lines(
        self,
        prompt: str,
        *,
        n_lines: int,
        max_words: Sequence[int],
        language: str,
        sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
        min_words: Sequence[int] | None = None,
        max_chars: Sequence[int] | None = None,
    ) -> list[str]:
        """`autocut.lm.decoding.generate_lines` on the server (`max_chars` is checked by the caller's voice fit)."""
        lo = [1] * n_lines if min_words is None else list(min_words)
        if len(max_words) != n_lines or len(lo) != n_lines:
            raise ConfigError(f"need {n_lines} word limits")
        budget = sum(4 * int(h) + 8 for h in max_words)
        text = self.complete(
            self._body(
                prompt, Constraint("regex", lines_regex(lo, max_words, language)), budget, sample, temperature, seed
            )
        )
        lines = text.split("\n")
        if len(lines) != n_lines or any(not ln.strip() for ln in lines):
            raise PlanError(f"the LM server returned {len(lines)} script lines for {n_lines} clips: {text[:200]!r}")
        return [ln.strip() for ln in lines]

    def generate_audio_codes(
        self, prompt: str, *, sample: bool = False, temperature: float = 1.0, seed: int = 0
    ) -> np.ndarray:
        """`autocut.lm.decoding.generate_audio_codes` on the server."""
        text = self.complete(
            self._body(prompt, Constraint("regex", audio_regex()), 2 * T.NUM_LEVELS + 4, sample, temperature, seed)
        )
        if not re.fullmatch(audio_regex(), text.strip()):
            raise PlanError(f"the LM server's BGM answer {text[:200]!r} is not one audio block")
        return T.parse_audio(text)
