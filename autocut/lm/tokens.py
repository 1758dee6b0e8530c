"""The AutoCut token vocabulary and its text format (AutoCut 3.3-3.5; docs/method.md, "Token vocabulary").

Compatible with the public AutoCut checkpoint/data format:

- code tokens ``<v_{level}_{code}>`` (video) and ``<a_{level}_{code}>`` (audio), 8 levels x 256 codes each
  (the RQ-VAE quantizer shape of AutoCut Table 3);
- structural tokens ``<|ad_start|> <|ad_end|> <|clip_start|> <|clip_end|> <|video_start|> <|video_end|>
  <|frame_start|> <|frame_end|> <|audio_start|> <|audio_end|>``;
- clip text is wrapped in ``<|text_start|>...<|text_end|>``, which the public code leaves as plain text
  (the tokenizer splits it into ordinary sub-words), so they are *not* added tokens here either.

One frame = ``<|frame_start|>`` + 8 v-tokens + ``<|frame_end|>``; one BGM track = ``<|audio_start|>`` +
8 a-tokens + ``<|audio_end|>``. This module only formats and parses strings; it knows nothing about
models, so the corpus builder, the trainer and the planner share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from autocut.errors import AutoCutError

__all__ = [
    "AD_END",
    "AD_START",
    "AUDIO_END",
    "AUDIO_START",
    "CLIP_END",
    "CLIP_START",
    "CODEBOOK_SIZE",
    "FRAME_END",
    "FRAME_START",
    "NUM_LEVELS",
    "STRUCTURAL_TOKENS",
    "TEXT_END",
    "TEXT_START",
    "TOKENS_PER_FRAME",
    "VIDEO_END",
    "VIDEO_START",
    "ParsedAd",
    "ParsedClip",
    "TokenFormatError",
    "ad_sequence",
    "added_tokens",
    "audio_block",
    "clip_block",
    "code_token",
    "code_tokens",
    "format_indices",
    "frame_block",
    "parse_ad",
    "parse_audio",
    "parse_code_tokens",
    "parse_frames",
    "parse_indices",
    "video_block",
]

NUM_LEVELS = 8  # residual quantizer levels = tokens per frame / per BGM track
CODEBOOK_SIZE = 256  # codes per level
TOKENS_PER_FRAME = NUM_LEVELS + 2  # frame_start + 8 codes + frame_end: 10 prompt tokens a frame

AD_START, AD_END = "<|ad_start|>", "<|ad_end|>"
CLIP_START, CLIP_END = "<|clip_start|>", "<|clip_end|>"
VIDEO_START, VIDEO_END = "<|video_start|>", "<|video_end|>"
FRAME_START, FRAME_END = "<|frame_start|>", "<|frame_end|>"
AUDIO_START, AUDIO_END = "<|audio_start|>", "<|audio_end|>"
# Plain text in the public format (not added to the vocabulary).
TEXT_START, TEXT_END = "<|text_start|>", "<|text_end|>"

STRUCTURAL_TOKENS: tuple[str, ...] = (
    AD_START,
    AD_END,
    CLIP_START,
    CLIP_END,
    VIDEO_START,
    VIDEO_END,
    FRAME_START,
    FRAME_END,
    AUDIO_START,
    AUDIO_END,
)
_MODALITY_PREFIX = {"video": "v", "audio": "a"}


class TokenFormatError(AutoCutError):
    """Text that should hold AutoCut tokens is malformed (wrong structure, out-of-range codes)."""


def code_token(modality: str, level: int, code: int) -> str:
    """``<v_{level}_{code}>`` / ``<a_{level}_{code}>``, range-checked."""
    prefix = _prefix(modality)
    if not 0 <= level < NUM_LEVELS:
        raise TokenFormatError(f"level {level} outside 0..{NUM_LEVELS - 1}")
    if not 0 <= code < CODEBOOK_SIZE:
        raise TokenFormatError(f"code {code} outside 0..{CODEBOOK_SIZE - 1}")
    return f"<{prefix}_{level}_{code}>"


def _prefix(modality: str) -> str:
    try:
        return _MODALITY_PREFIX[modality]
    except KeyError:
        raise TokenFormatError(f"modality must be 'video' or 'audio', got {modality!r}") from None


def code_tokens(modality: str) -> list[str]:
    """All 8 x 256 code tokens of one modality, level-major (the order they are added to a vocabulary)."""
    p = _prefix(modality)
    return [f"<{p}_{level}_{code}>" for level in range(NUM_LEVELS) for code in range(CODEBOOK_SIZE)]


def added_tokens() -> list[str]:
    """Every token the LM vocabulary gains, in a fixed order: structural, then video codes, then audio codes."""
    return [*STRUCTURAL_TOKENS, *code_tokens("video"), *code_tokens("audio")]


# ---------------------------------------------------------------------------------------------- formatting


def _codes_2d(codes: np.ndarray | Sequence[Sequence[int]] | Sequence[int], what: str) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != NUM_LEVELS:
        raise TokenFormatError(f"{what}: expected codes of shape (N, {NUM_LEVELS}), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TokenFormatError(f"{what}: codes must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= CODEBOOK_SIZE):
        raise TokenFormatError(f"{what}: codes must lie in 0..{CODEBOOK_SIZE - 1}, got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64, copy=False)


def frame_block(codes: np.ndarray | Sequence[int]) -> str:
    """One frame: ``<|frame_start|><v_0_c0>...<v_7_c7><|frame_end|>``."""
    row = _codes_2d(codes, "frame")
    if row.shape[0] != 1:
        raise TokenFormatError(f"frame_block takes one frame, got {row.shape[0]}")
    return FRAME_START + "".join(f"<v_{lv}_{int(c)}>" for lv, c in enumerate(row[0])) + FRAME_END


def video_block(frame_codes: np.ndarray | Sequence[Sequence[int]]) -> str:
    """``<|video_start|>`` + one frame block per row of (F, 8) codes + ``<|video_end|>``."""
    arr = _codes_2d(frame_codes, "video")
    if arr.shape[0] == 0:
        raise TokenFormatError("a video block needs at least one frame")
    return VIDEO_START + "".join(frame_block(r) for r in arr) + VIDEO_END


def audio_block(codes: np.ndarray | Sequence[int]) -> str:
    """One BGM track: ``<|audio_start|><a_0_c0>...<a_7_c7><|audio_end|>``."""
    row = _codes_2d(codes, "audio")
    if row.shape[0] != 1:
        raise TokenFormatError(f"audio_block takes one track (8 codes), got {row.shape[0]} rows")
    return AUDIO_START + "".join(f"<a_{lv}_{int(c)}>" for lv, c in enumerate(row[0])) + AUDIO_END


def clip_block(frame_codes: np.ndarray | Sequence[Sequence[int]], text: str | None = None) -> str:
    """``<|clip_start|>[<|text_start|>text<|text_end|>]<|video_start|>...<|video_end|><|clip_end|>``."""
    inner = "" if text is None else f"{TEXT_START}{_clean_text(text)}{TEXT_END}"
    return CLIP_START + inner + video_block(frame_codes) + CLIP_END


def _clean_text(text: str) -> str:
    # A sentence must not smuggle in markup that would break parsing of the sequence around it.
    for marker in (*STRUCTURAL_TOKENS, TEXT_START, TEXT_END):
        if marker in text:
            raise TokenFormatError(f"clip text contains the reserved marker {marker}: {text[:80]!r}")
    if _CODE_RE.search(text):
        raise TokenFormatError(f"clip text contains a code token: {text[:80]!r}")
    return " ".join(text.split())


def ad_sequence(clips: Sequence[tuple[str, np.ndarray]], audio_codes: np.ndarray | Sequence[int] | None) -> str:
    """One alignment-corpus ad: clips of (sentence, (F, 8) codes), then the BGM tokens
    (docs/method.md, "Corpus format")."""
    if not clips:
        raise TokenFormatError("an ad needs at least one clip")
    body = "".join(clip_block(codes, text) for text, codes in clips)
    tail = audio_block(audio_codes) if audio_codes is not None else ""
    return AD_START + body + tail + AD_END


def format_indices(indices: Sequence[int]) -> str:
    """Answer format of the selection/sorting tasks: 1-based indices joined by commas ("2,1")."""
    return ",".join(str(int(i)) for i in indices)


# ---------------------------------------------------------------------------------------------- parsing

# Whitespace is tolerated around and inside tokens ("< v_0_17 >", "<v_0_17> <v_1_3>"): generated text
# from a small model and hand-edited files both produce it.
_CODE_RE = re.compile(r"<\s*([va])\s*_\s*(\d+)\s*_\s*(\d+)\s*>")
_STRUCT_RE = re.compile(r"<\s*\|\s*(ad|clip|video|frame|audio|text)_(start|end)\s*\|\s*>")


@dataclass(frozen=True)
class ParsedClip:
    text: str | None  # sentence inside <|text_start|>..<|text_end|>, None when the clip has none
    frames: np.ndarray  # (F, 8) int64 video codes


@dataclass(frozen=True)
class ParsedAd:
    clips: list[ParsedClip] = field(default_factory=list)
    audio: np.ndarray | None = None  # (8,) int64 audio codes of the BGM track, if present


def parse_code_tokens(text: str, modality: str | None = None) -> list[tuple[str, int, int]]:
    """Every code token in `text` as (modality, level, code), in order; out-of-range values raise."""
    out = []
    want = _prefix(modality) if modality is not None else None
    for m in _CODE_RE.finditer(text):
        p, level, code = m.group(1), int(m.group(2)), int(m.group(3))
        if want is not None and p != want:
            continue
        _check_code(p, level, code, m.start())
        out.append(("video" if p == "v" else "audio", level, code))
    return out


def _check_code(prefix: str, level: int, code: int, pos: int) -> None:
    if level >= NUM_LEVELS:
        raise TokenFormatError(f"<{prefix}_{level}_{code}> at char {pos}: level {level} is outside 0..{NUM_LEVELS - 1}")
    if code >= CODEBOOK_SIZE:
        raise TokenFormatError(
            f"<{prefix}_{level}_{code}> at char {pos}: code {code} is outside 0..{CODEBOOK_SIZE - 1}"
        )


def _levels_to_row(prefix: str, items: list[tuple[int, int, int]], where: str) -> np.ndarray:
    """(level, code, pos) tokens of one frame/track -> (8,) codes; levels must be 0..7 in order."""
    levels = [lv for lv, _, _ in items]
    if levels != list(range(NUM_LEVELS)):
        raise TokenFormatError(
            f"{where}: expected {NUM_LEVELS} {prefix}-tokens with levels 0..{NUM_LEVELS - 1} in order, "
            f"got levels {levels}"
        )
    return np.array([c for _, c, _ in items], dtype=np.int64)


def _tokens_between(text: str, start_kind: str) -> list[tuple[int, int]]:
    """(content_start, content_end) spans of every <|kind_start|> ... <|kind_end|> pair in `text`."""
    spans = []
    open_at: int | None = None
    for m in _STRUCT_RE.finditer(text):
        kind, edge = m.group(1), m.group(2)
        if kind != start_kind:
            continue
        if edge == "start":
            if open_at is not None:
                raise TokenFormatError(f"<|{kind}_start|> at char {m.start()} before the previous one was closed")
            open_at = m.end()
        else:
            if open_at is None:
                raise TokenFormatError(f"<|{kind}_end|> at char {m.start()} without a matching <|{kind}_start|>")
            spans.append((open_at, m.start()))
            open_at = None
    if open_at is not None:
        raise TokenFormatError(f"<|{start_kind}_start|> at char {open_at} is never closed")
    return spans


def parse_frames(text: str) -> np.ndarray:
    """All ``<|frame_start|>`` blocks in `text` -> (F, 8) int64 video codes.

    Each frame must hold exactly the 8 levels in order; codes outside 0..255 or levels outside 0..7
    raise `TokenFormatError` naming the offending token.
    """
    rows = []
    for a, b in _tokens_between(text, "frame"):
        items = []
        for m in _CODE_RE.finditer(text, a, b):
            p, lv, c = m.group(1), int(m.group(2)), int(m.group(3))
            if p != "v":
                raise TokenFormatError(f"audio token {m.group(0)} at char {m.start()} inside a frame")
            _check_code(p, lv, c, m.start())
            items.append((lv, c, m.start()))
        rows.append(_levels_to_row("v", items, f"frame at char {a}"))
    return np.stack(rows) if rows else np.zeros((0, NUM_LEVELS), np.int64)


def parse_audio(text: str) -> np.ndarray:
    """The first non-empty ``<|audio_start|>`` block in `text` -> (8,) int64 audio codes.

    Empty blocks are skipped (prompts may mention the wrapper, as the public ones do). Without any
    wrapper, exactly 8 bare a-tokens (levels 0..7) are accepted too (the public model's outputs
    sometimes omit it).
    """
    spans = _tokens_between(text, "audio") or [(0, len(text))]
    wrapped = bool(_tokens_between(text, "audio"))
    for a, b in spans:
        items = []
        for m in _CODE_RE.finditer(text, a, b):
            p, lv, c = m.group(1), int(m.group(2)), int(m.group(3))
            if p != "a":
                if wrapped:
                    raise TokenFormatError(f"video token {m.group(0)} at char {m.start()} inside an audio block")
                continue
            _check_code(p, lv, c, m.start())
            items.append((lv, c, m.start()))
        if items:
            return _levels_to_row("a", items, "audio block")
    raise TokenFormatError("no audio tokens (<a_l_c>) found")


def parse_ad(text: str) -> ParsedAd:
    """Parse a serialized ad or clip list: every clip's text and frames, and the BGM codes if present."""
    clips = []
    for a, b in _tokens_between(text, "clip"):
        body = text[a:b]
        tspans = _tokens_between(body, "text")
        sentence = " ".join(body[tspans[0][0] : tspans[0][1]].split()) if tspans else None
        clips.append(ParsedClip(sentence, parse_frames(body)))
    audio = parse_audio(text) if any(_CODE_RE.search(text, a, b) for a, b in _tokens_between(text, "audio")) else None
    return ParsedAd(clips, audio)


_INDEX_SPLIT_RE = re.compile(r"[\s,，、;；]+")


def parse_indices(
    text: str, *, pool_size: int, expect_count: int | None = None, allow_duplicates: bool = False
) -> list[int]:
    """Parse a selection/sorting answer ("2,1", "2， 1", "2 1") into 1-based indices.

    Raises `TokenFormatError` for anything that is not an index in 1..pool_size, for duplicates
    (unless allowed) and, when `expect_count` is given, for a wrong number of indices.
    """
    body = text.strip().strip("[](){}。.")
    if not body:
        raise TokenFormatError("empty answer: expected comma-separated clip indices")
    out = []
    for part in _INDEX_SPLIT_RE.split(body):
        if not part:
            continue
        part = part.rstrip(")）")
        if not part.isdigit():
            raise TokenFormatError(f"answer item {part!r} is not a clip index (answer: {text[:80]!r})")
        k = int(part)
        if not 1 <= k <= pool_size:
            raise TokenFormatError(f"clip index {k} outside 1..{pool_size}")
        out.append(k)
    if not allow_duplicates and len(set(out)) != len(out):
        raise TokenFormatError(f"duplicate clip indices in answer {text[:80]!r}")
    if expect_count is not None and len(out) != expect_count:
        raise TokenFormatError(f"expected {expect_count} clip indices, got {len(out)} in {text[:80]!r}")
    return out
