"""The compact planning format (docs/method.md, "The compact planner"): one exchange plans a whole ad, one
decision per token.

Human turn: the instruction, the product header (`autocut.lm.prompts.product_header`), the product photo as
one frame block when the request has one, and the candidate clips, each as the first L video RQ-VAE codes of
its clip-mean embedding (``<v_0_c>`` .. ``<v_{L-1}_c>``; L = 8 is the paper's frame, the CPU default is 4:
`autocut eval probe` finds brand as readable from 4 levels as from 8), in pool order.

Answer, one row per clip of the ad in playback order, then the BGM:

- script-driven (the user's script): ``{line}{L codes}\n`` per script line, in script order: the line is the
  user's (given), the clip's codes are the model's answer. Selection and order are one pass (VC-LLM's
  compound task): the k-th row's codes name the clip under the k-th line;
- footage-driven: ``{L codes}{line}\n`` per clip the model puts in the ad: it names the next clip, then
  writes its line; it ends the ad by starting the BGM block instead of another clip;
- both end with ``<|audio_start|>`` + 8 audio codes + ``<|audio_end|>`` (the paper's BGM answer).

The answer names a clip by its content, as the paper's generated frame codes do, so the model answers in the
codebook geometry its code rows start from (`autocut.lm.small.init_code_rows`) instead of learning to point
at an arbitrary label. Decoding (`autocut.planning.planners.compact`) is constrained to the code paths of the
request's candidates (each level one decision) and ranks the candidates by the probability of their whole
path; `format_answer` / `parse_answer` round-trip, and a parsed row is grounded back to the candidate whose
codes it names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autocut.lm import tokens as T
from autocut.lm.prompts import ProductView, product_header

__all__ = [
    "DURATION_TOKENS",
    "MATCH_EDGES",
    "MATCH_TOKENS",
    "MAX_CANDIDATES",
    "ROW_END",
    "Row",
    "clip_codes_text",
    "clips_block",
    "duration_token",
    "format_answer",
    "match_buckets",
    "match_token",
    "parse_answer",
    "user_message",
]

MAX_CANDIDATES = 64  # = CandidateConfig.max_candidates
ROW_END = "\n"

INSTRUCTION = {
    "script": "Edit the ad: after each script line, answer the clip that shows it.",
    "footage": "Edit the ad: pick clips in playback order and write one voice-over line for each.",
}
PHOTO_KEY = "Photo:"
CLIPS_KEY = "Clips:"
LANGUAGE_KEY = "Language:"

_CODE_RE = re.compile(r"<v_(\d+)_(\d+)>")
_MATCH_RE = re.compile(r"<m_(\d+)>")

# Product-match tokens: a candidate's rank among the pool by cosine similarity to the product photo, in
# buckets (rank < 2, < 4, < 8, < 16, the rest by default). The RQ-VAE codes of a clip keep its role but
# lose most of what tells one product from its look-alike (`autocut eval probe`: brand 0.55 from vectors,
# 0.16-0.35 from codes), so the photo's similarity enters as a token of its own, computed where the
# vectors still are; the model learns how much to trust it.
MATCH_TOKENS = tuple(f"<m_{k}>" for k in range(8))
MATCH_EDGES = (2, 4, 8, 16)


# Duration tokens (footage-driven rows): the chosen clip's length in half seconds (<d_1> = 0.5 s .. <d_31>
# = 15.5 s or more), fed after its codes so the line the model then writes can fit the clip; the candidates'
# codes do not say how long a clip is.
DURATION_TOKENS = tuple(f"<d_{k}>" for k in range(32))
_DURATION_RE = re.compile(r"<d_(\d+)>")


def duration_token(seconds: float) -> str:
    return DURATION_TOKENS[int(min(max(round(2 * float(seconds)), 1), len(DURATION_TOKENS) - 1))]


def match_token(bucket: int) -> str:
    if not 0 <= bucket < len(MATCH_TOKENS):
        raise T.TokenFormatError(f"match bucket {bucket} outside 0..{len(MATCH_TOKENS) - 1}")
    return MATCH_TOKENS[bucket]


def match_buckets(photo: np.ndarray, clips: np.ndarray, edges: Sequence[int] = MATCH_EDGES) -> np.ndarray:
    """(n,) bucket of each clip's rank by cosine similarity to the photo (0 = most similar; ties by order)."""
    if len(edges) + 1 > len(MATCH_TOKENS) or list(edges) != sorted(set(edges)) or (edges and edges[0] < 1):
        raise T.TokenFormatError(f"match edges must rise from >= 1, at most {len(MATCH_TOKENS) - 1}: {edges}")
    c = np.asarray(clips, np.float32)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    p = np.asarray(photo, np.float32).reshape(-1)
    p = p / max(float(np.linalg.norm(p)), 1e-12)
    order = np.argsort(-(c @ p), kind="stable")
    rank = np.empty(len(c), np.int64)
    rank[order] = np.arange(len(c))
    return np.searchsorted(np.asarray(edges, np.int64), rank, side="right").astype(np.int64)


@dataclass(frozen=True)
class Row:
    """One clip of the ad: its candidate (0-based) and the line said over it."""

    candidate: int
    line: str


def clip_codes_text(codes: np.ndarray | Sequence[int]) -> str:
    """The video code tokens naming one clip (its first L levels, L = len(codes))."""
    return _codes(codes)


def _codes(codes: np.ndarray | Sequence[int]) -> str:
    row = np.asarray(codes).reshape(-1)
    if not 1 <= row.shape[0] <= T.NUM_LEVELS:
        raise T.TokenFormatError(f"expected 1..{T.NUM_LEVELS} codes, got {row.shape[0]}")
    return "".join(T.code_token("video", level, int(c)) for level, c in enumerate(row))


def clips_block(clip_codes: Sequence[np.ndarray], match: Sequence[int] | np.ndarray | None = None) -> str:
    """The candidates: per clip its codes (after its match token when `match` is given), in pool order."""
    if len(clip_codes) > MAX_CANDIDATES:
        raise T.TokenFormatError(f"{len(clip_codes)} candidates; the compact format holds {MAX_CANDIDATES}")
    if match is not None and len(match) != len(clip_codes):
        raise T.TokenFormatError(f"{len(match)} match buckets for {len(clip_codes)} candidates")
    return "".join(
        (match_token(int(match[k])) if match is not None else "") + _codes(c) for k, c in enumerate(clip_codes)
    )


def user_message(
    scenario: str,
    language: str,
    product: ProductView,
    clip_codes: Sequence[np.ndarray],
    photo_codes: np.ndarray | None = None,
    match: Sequence[int] | np.ndarray | None = None,
) -> str:
    """The human turn (see the module docstring); `match`: each candidate's product-match bucket (only with a
    photo)."""
    if scenario not in INSTRUCTION:
        raise ValueError(f"scenario must be 'script' or 'footage', got {scenario!r}")
    lang = "zh" if language == "zh" else "en"
    parts = [INSTRUCTION[scenario], f"{LANGUAGE_KEY} {lang}", product_header(product, lang)]
    if photo_codes is not None:
        parts.append(PHOTO_KEY + T.FRAME_START + _codes(photo_codes) + T.FRAME_END)
    if match is not None and photo_codes is None:
        raise T.TokenFormatError("match buckets come from the product photo: none was given")
    parts.append(CLIPS_KEY + clips_block(clip_codes, match))
    return "\n".join(parts)


def _check_line(line: str) -> str:
    if "\n" in line or "\r" in line or "<|" in line or re.search(r"<[va]_\d+_\d+>|<[md]_\d+>", line):
        raise T.TokenFormatError(f"a script line cannot hold line breaks or AutoCut tokens: {line[:60]!r}")
    return line


def format_answer(
    scenario: str,
    rows: Sequence[Row],
    clip_codes: Sequence[np.ndarray],
    audio_codes: np.ndarray | None,
    match: Sequence[int] | np.ndarray | None = None,
    durations: Sequence[float] | None = None,
) -> str:
    """The answer text of `rows` over candidates with `clip_codes` (+ the BGM block when `audio_codes` is given);
    with `match`, each row names its clip by match token + codes, as the prompt shows it; with `durations`
    (footage-driven), the clip's duration token follows its codes."""
    out = []
    for r in rows:
        if not 0 <= r.candidate < len(clip_codes):
            raise T.TokenFormatError(f"row names candidate {r.candidate}; the pool has {len(clip_codes)}")
        line = _check_line(r.line)
        codes = (match_token(int(match[r.candidate])) if match is not None else "") + _codes(clip_codes[r.candidate])
        if scenario == "footage" and durations is not None:
            codes += duration_token(durations[r.candidate])
        out.append((line + codes if scenario == "script" else codes + line) + ROW_END)
    if audio_codes is not None:
        out.append(T.audio_block(np.asarray(audio_codes)))
    return "".join(out)


def parse_answer(
    scenario: str, text: str, clip_codes: Sequence[np.ndarray], match: Sequence[int] | np.ndarray | None = None
) -> tuple[list[Row], np.ndarray | None]:
    """Rows and BGM codes of an answer (inverse of `format_answer`): each row's codes (after its match token
    when `match` is given) are grounded to the first candidate with exactly those codes and that match bucket
    (as many levels as `clip_codes` hold); raises `TokenFormatError` when a row names none."""
    body, audio = text, None
    i = text.find(T.AUDIO_START)
    if i >= 0:
        body = text[:i]
        audio = T.parse_audio(text[i:].strip())
    levels = len(np.asarray(clip_codes[0]).reshape(-1)) if len(clip_codes) else T.NUM_LEVELS
    by_codes: dict[tuple[int, ...], int] = {}
    for k, c in enumerate(clip_codes):
        key0 = (int(match[k]),) if match is not None else ()
        by_codes.setdefault(key0 + tuple(int(x) for x in np.asarray(c).reshape(-1)), k)
    rows: list[Row] = []
    for raw in body.split(ROW_END):
        if not raw:
            continue
        ms = list(_CODE_RE.finditer(raw))
        if len(ms) != levels or [int(m.group(1)) for m in ms] != list(range(levels)):
            raise T.TokenFormatError(
                f"a row must name its clip with {levels} codes, levels 0..{levels - 1}: {raw[:80]!r}"
            )
        a, b = ms[0].start(), ms[-1].end()
        if raw[a:b] != "".join(m.group(0) for m in ms):
            raise T.TokenFormatError(f"a row's clip codes must be contiguous: {raw[:80]!r}")
        head: tuple[int, ...] = ()
        mm = list(_MATCH_RE.finditer(raw))
        if match is not None:
            if len(mm) != 1 or mm[0].end() != a:
                raise T.TokenFormatError(f"a row must name its clip by one match token then codes: {raw[:80]!r}")
            head, a = (int(mm[0].group(1)),), mm[0].start()
        elif mm:
            raise T.TokenFormatError(f"a match token in an answer without product-match buckets: {raw[:80]!r}")
        if scenario == "script" and b != len(raw):
            raise T.TokenFormatError(f"a script row must end with its clip's codes: {raw[:80]!r}")
        if scenario == "footage" and a != 0:
            raise T.TokenFormatError(f"a footage row must start with its clip's codes: {raw[:80]!r}")
        dm = _DURATION_RE.match(raw, b)
        if dm is not None and scenario == "footage":
            b = dm.end()  # the clip's duration token: given, not part of the line
        if _DURATION_RE.search(raw, b):
            raise T.TokenFormatError(f"a duration token belongs right after a footage row's codes: {raw[:80]!r}")
        key = head + tuple(int(m.group(2)) for m in ms)
        if key not in by_codes:
            raise T.TokenFormatError(f"row {len(rows) + 1} names codes of no candidate in the pool: {raw[a:b][:60]}")
        rows.append(Row(by_codes[key], raw[:a] + raw[b:]))
    return rows, audio
