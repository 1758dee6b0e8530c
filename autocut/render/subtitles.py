"""Subtitle segmentation (VC-LLM SSA rules), timing to spoken words, ASS/SRT writing, font checks.

SSA (VC-LLM 6.2; docs/method.md, "Metrics"): a segment holds at most 13 units (CJK character 1, Latin letter or
digit 0.4, space 0.5; punctuation marks are separators and count 0); the text between two punctuation
marks spans at most ceil(units / 10) segments; no word is split across segments (Latin words are
whitespace tokens, Chinese words come from jieba, as in the paper's checker).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import subprocess
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from autocut.errors import PlanError
from autocut.files import atomic_path
from autocut.speech.tts import WordTiming
from autocut.types import SafeArea, SubtitleStyle

if TYPE_CHECKING:
    import pysubs2

__all__ = [
    "MAX_SEGMENT_UNITS",
    "CaptionBox",
    "Cue",
    "CueWord",
    "SubtitleSegment",
    "caption_box",
    "check_font_coverage",
    "display_text",
    "font_file",
    "segment_sentence",
    "ssa_ok",
    "text_units",
    "time_cues",
    "word_spans",
    "write_ass",
    "write_srt",
]

log = logging.getLogger(__name__)

MAX_SEGMENT_UNITS = 13.0
# Rule 2 divisor: a punctuation-delimited phrase of U units may span ceil(U / 10) segments.
PHRASE_UNITS_PER_SEGMENT = 10.0
# How long the last subtitle of a sentence stays after its last word ends (clamped to the voice slot).
HOLD_AFTER_SPEECH_S = 0.35

_CJK_RE = re.compile(
    r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    r"\uf900-\ufaff\uff01-\uff60]"
)
# Characters that end a phrase (rule 2).
_PUNCT_CHARS = set(",.;:!?，。；：！？、…—()（）\"“”'‘’《》「」")


@dataclass(frozen=True)
class SubtitleSegment:
    """A span of the sentence shown as one subtitle."""

    text: str
    char_start: int  # [char_start, char_end) in the sentence
    char_end: int
    units: float


@dataclass(frozen=True)
class CueWord:
    """One highlighted unit of a karaoke cue (`autocut.render.captions`): a span of the cue's text and when it
    is spoken, in output time."""

    char_start: int  # [char_start, char_end) in Cue.text
    char_end: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Cue:
    """A timed subtitle in output time."""

    start_s: float
    end_s: float
    text: str
    # Karaoke units, in order (empty: no karaoke highlight).
    words: tuple[CueWord, ...] = ()


def _is_cjk(ch: str) -> bool:
    return bool(_CJK_RE.match(ch))


def _is_punct(ch: str) -> bool:
    return ch in _PUNCT_CHARS or unicodedata.category(ch).startswith("P")


def char_units(ch: str) -> float:
    """SSA width of one character."""
    if ch.isspace():
        return 0.5
    if _is_punct(ch):
        return 0.0
    if _is_cjk(ch):
        return 1.0
    return 0.4


def text_units(text: str) -> float:
    """SSA width of a string (leading/trailing whitespace ignored)."""
    return round(sum(char_units(c) for c in text.strip()), 3)


# --------------------------------------------------------------------------- words and phrases


@functools.lru_cache(maxsize=1)
def _jieba() -> ModuleType:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Unbreakable word spans inside text[start:end]: whitespace tokens, CJK runs cut by jieba."""
    out: list[tuple[int, int]] = []
    for m in re.finditer(r"\S+", text[start:end]):
        a, b = start + m.start(), start + m.end()
        tok = text[a:b]
        if not any(_is_cjk(c) for c in tok):
            out.append((a, b))
            continue
        pos = a
        for w in _jieba().cut(tok, HMM=False):
            out.append((pos, pos + len(w)))
            pos += len(w)
    return out


def word_spans(text: str) -> list[tuple[int, int]]:
    """Unbreakable word spans of `text` (the units no subtitle line splits): whitespace tokens, with runs of
    Chinese cut into jieba words."""
    return _words(text, 0, len(text))


def _phrases(text: str) -> list[tuple[int, int]]:
    """Spans between punctuation marks (each span includes the marks that close it)."""
    spans: list[tuple[int, int]] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        if _is_punct(text[i]) and not _inside_number(text, i) and not _inside_word(text, i):
            j = i
            while j < n and (_is_punct(text[j]) or text[j].isspace()):
                j += 1
            if text[start:j].strip():
                spans.append((start, j))
            start = i = j
            continue
        i += 1
    if text[start:].strip():
        spans.append((start, n))
    return spans


def _inside_number(text: str, i: int) -> bool:
    # "3.5" and "1,000" are one token, not a phrase break.
    return text[i] in ".," and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()


def _inside_word(text: str, i: int) -> bool:
    # Apostrophes and hyphens inside Latin words ("don't", "self-cleaning") do not break phrases.
    return text[i] in "'-’" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _split_phrase(text: str, a: int, b: int, max_units: float) -> list[tuple[int, int]]:
    """Split text[a:b] at word boundaries into the fewest segments <= max_units, balancing their widths."""
    words = _words(text, a, b)
    if not words:
        return [(a, b)]
    n = len(words)

    # A piece runs from word i's start to word j-1's end (+ the trailing punctuation for the last piece).
    def piece(i: int, j: int) -> tuple[int, int]:
        return words[i][0], (b if j == n else words[j - 1][1])

    def width(i: int, j: int) -> float:
        s, e = piece(i, j)
        return text_units(text[s:e])

    # DP over word boundaries: fewest pieces, then smallest widest piece.
    inf = (math.inf, math.inf)
    best: list[tuple[float, float]] = [inf] * (n + 1)
    prev = [-1] * (n + 1)
    best[0] = (0, 0.0)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            w = width(i, j)
            if w > max_units and j - i > 1:
                break  # wider pieces only get wider as i decreases
            if best[i][0] == math.inf:
                continue
            cand = (best[i][0] + 1, max(best[i][1], w))
            if cand < best[j]:
                best[j] = cand
                prev[j] = i
    cuts: list[int] = []
    j = n
    while j > 0:
        cuts.append(j)
        j = prev[j]
    cuts.reverse()
    out: list[tuple[int, int]] = []
    i = 0
    for j in cuts:
        out.append(piece(i, j))
        i = j
    return out


def segment_sentence(sentence: str, *, max_units: float = MAX_SEGMENT_UNITS) -> list[SubtitleSegment]:
    """Cut a sentence into subtitle segments that satisfy the SSA rules (when its words allow it)."""
    text = sentence
    spans: list[tuple[int, int]] = []
    for a, b in _phrases(text):
        # Leading spaces belong to no segment.
        while a < b and text[a].isspace():
            a += 1
        spans.append((a, b))
    # Split long phrases; mark which pieces are whole phrases (only those may be merged).
    pieces: list[tuple[int, int, bool]] = []
    for a, b in spans:
        if text_units(text[a:b]) <= max_units:
            pieces.append((a, b, True))
        else:
            pieces.extend((s, e, False) for s, e in _split_phrase(text, a, b, max_units))
    # Merge consecutive whole short phrases ("Fresh, fast, clean.") so subtitles do not flicker.
    merged: list[tuple[int, int, bool]] = []
    for a, b, whole in pieces:
        if merged and whole and merged[-1][2] and text_units(text[merged[-1][0] : b]) <= max_units:
            merged[-1] = (merged[-1][0], b, True)
        else:
            merged.append((a, b, whole))
    out: list[SubtitleSegment] = []
    for a, b, _ in merged:
        seg = text[a:b].rstrip()
        b = a + len(seg)
        units = text_units(seg)
        if units > max_units:
            log.warning(
                "subtitle segment %r is %.1f units (> %.0f): a single word too long to split", seg, units, max_units
            )
        out.append(SubtitleSegment(seg, a, b, units))
    return out


def display_text(seg: SubtitleSegment) -> str:
    """What is drawn: Chinese subtitles drop the soft punctuation that closes a segment."""
    t = seg.text.strip()
    if any(_is_cjk(c) for c in t):
        t = t.rstrip("，。、；：,.;:")
    return t


def ssa_ok(segments: Sequence[str], *, max_units: float = MAX_SEGMENT_UNITS) -> bool:
    """The SSA check of VC-LLM 6.2 for one sentence given as its subtitle segments, in order."""
    if not segments:
        return False
    # Rebuild the sentence, remembering boundaries; Latin segments are rejoined with a space.
    text = ""
    bounds: list[int] = []
    for seg in segments:
        seg = seg.strip()
        if text_units(seg) > max_units:
            return False
        if text and seg and not (_is_cjk(text[-1]) or _is_cjk(seg[0])):
            text += " "
        text += seg
        bounds.append(len(text))

    def seg_of(pos: int) -> int:
        return next(k for k, e in enumerate(bounds) if pos < e)

    # Rule 3: no word crosses a boundary.
    if any(seg_of(a) != seg_of(b - 1) for a, b in _words(text, 0, len(text))):
        return False
    # Rule 2: a phrase of U units spans at most ceil(U / 10) segments.
    for a, b in _phrases(text):
        body = [i for i in range(a, b) if not (text[i].isspace() or _is_punct(text[i]))]
        if not body:
            continue
        spanned = seg_of(body[-1]) - seg_of(body[0]) + 1
        if spanned > max(1, math.ceil(text_units(text[a:b]) / PHRASE_UNITS_PER_SEGMENT)):
            return False
    return True


# --------------------------------------------------------------------------- timing


def time_cues(
    segments: Sequence[SubtitleSegment],
    words: Sequence[WordTiming],
    *,
    speech_start_s: float,
    speech_duration_s: float,
    slot_end_s: float,
) -> list[Cue]:
    """Time each segment to the words spoken in it (output seconds); cues run back to back."""
    if not segments:
        return []
    starts: list[float] = []
    ends: list[float] = []
    total_units = sum(max(s.units, 0.1) for s in segments)
    acc = 0.0
    for seg in segments:
        inside = [w for w in words if w.char_start < seg.char_end and w.char_end > seg.char_start]
        if inside:
            starts.append(min(w.start_s for w in inside))
            ends.append(max(w.end_s for w in inside))
        else:
            # No word timing (voice off, or the engine dropped it): spread by width.
            starts.append(speech_duration_s * acc / total_units)
            acc += max(seg.units, 0.1)
            ends.append(speech_duration_s * acc / total_units)
            continue
        acc += max(seg.units, 0.1)
    cues: list[Cue] = []
    for k, seg in enumerate(segments):
        t0 = speech_start_s + starts[k]
        if k + 1 < len(segments):
            # Back to back: a cue stays up through a pause until the next one replaces it.
            t1 = speech_start_s + starts[k + 1]
        else:
            t1 = min(slot_end_s, speech_start_s + ends[k] + HOLD_AFTER_SPEECH_S)
        t1 = max(t1, t0 + 0.05)
        cues.append(Cue(round(t0, 3), round(t1, 3), display_text(seg)))
    return cues


# --------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=16)
def font_file(family: str) -> tuple[str, int]:
    """(file, face index) fontconfig resolves `family` to; PlanError if it is not installed."""
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{family}\n%{file}\n%{index}", family],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise PlanError(f"cannot look up subtitle font {family!r} (fontconfig's fc-match failed: {exc})") from exc
    fams, path, index = (out.split("\n") + ["", "", ""])[:3]
    names = {f.strip().lower() for f in fams.split(",")}
    if family.strip().lower() not in names or not path:
        raise PlanError(
            f"subtitle font {family!r} is not installed (fontconfig falls back to {fams.split(',')[0]!r}); "
            "install it (e.g. fonts-noto-cjk) or choose an installed font"
        )
    return path, int(index or 0)


@functools.lru_cache(maxsize=16)
def _font_codepoints(path: str, index: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    font = TTFont(path, fontNumber=index, lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


def check_font_coverage(family: str, texts: Sequence[str]) -> str:
    """Raise PlanError listing characters `family` cannot draw; return the font file path."""
    path, index = font_file(family)
    cmap = _font_codepoints(path, index)
    missing = sorted({c for t in texts for c in t if not c.isspace() and ord(c) not in cmap})
    if missing:
        shown = "".join(missing[:20])
        raise PlanError(
            f"subtitle font {family!r} ({os.path.basename(path)}) has no glyphs for {shown!r}"
            f"{' and more' if len(missing) > 20 else ''}; choose a font that covers the script"
        )
    return path


# --------------------------------------------------------------------------- writers


def _ass_colour(s: str) -> pysubs2.Color:
    """'&HAABBGGRR' (ASS) -> pysubs2.Color."""
    import pysubs2

    m = re.fullmatch(r"&H([0-9A-Fa-f]{2})?([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})&?", s.strip())
    if not m:
        raise PlanError(f"subtitle colour {s!r} is not an ASS colour like &H00FFFFFF")
    a, bb, gg, rr = (int(x, 16) if x else 0 for x in m.groups())
    return pysubs2.Color(rr, gg, bb, a)


# Side margin of a caption line, as a fraction of the width, when no safe area asks for more.
_SIDE_MARGIN_FRAC = 0.04


@dataclass(frozen=True)
class CaptionBox:
    """Where captions may go, in output pixels: centred between the side margins; at the bottom, their
    baseline `margin_bottom_px` above the bottom edge; at the top, their top `margin_top_px` below the top
    edge (`SubtitleStyle.position`)."""

    margin_left_px: int
    margin_right_px: int
    margin_bottom_px: int
    margin_top_px: int = 0


def caption_box(style: SubtitleStyle, width: int, height: int, safe: SafeArea | None = None) -> CaptionBox:
    """The caption placement: the style's margins, pushed inside the output's safe area (platform UI zones,
    `autocut.render.presets`) where that is larger."""
    safe = safe or SafeArea()
    return CaptionBox(
        margin_left_px=int(max(_SIDE_MARGIN_FRAC, safe.left_frac) * width),
        margin_right_px=int(max(_SIDE_MARGIN_FRAC, safe.right_frac) * width),
        margin_bottom_px=int(round(max(style.margin_v_frac, safe.bottom_frac) * height)),
        margin_top_px=int(round(max(style.margin_v_frac, safe.top_frac) * height)),
    )


def font_size_px(style: SubtitleStyle, width: int, height: int, safe: SafeArea | None = None) -> int:
    """Font size: `size_frac` of the height, but small enough that 13 CJK characters fit between the side
    margins (0.9 of the width with the default 4 % margins)."""
    box = caption_box(style, width, height, safe)
    usable_frac = (width - box.margin_left_px - box.margin_right_px) / width
    fit_px = 0.9 * width / MAX_SEGMENT_UNITS
    if usable_frac < 1 - 2 * _SIDE_MARGIN_FRAC - 1e-9:
        fit_px *= usable_frac / (1 - 2 * _SIDE_MARGIN_FRAC)
    return int(max(8, min(style.size_frac * height, fit_px)))


_TIMESTAMP_RE = re.compile(r"\d+:\d{2}:\d{2}[,.]\d+")


def cue_text(text: str) -> str:
    r"""A cue's text as the subtitle files hold it: one line that user text cannot split into cues, lines
    or ASS commands.

    A cue is one subtitle segment, sized to fit one line (`segment_sentence`), so every line break,
    control character (``\r``, tabs, form feeds, NEL, ...) and Unicode line/paragraph separator becomes a
    space and runs of spaces collapse; ``-->`` (the SRT timing arrow) becomes an arrow character and a
    timestamp's colons ratio signs;
    backslashes (ASS ``\N`` / ``\h`` escapes) become a fullwidth reverse solidus; braces (ASS override
    blocks) become parentheses."""
    flat = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    flat = " ".join(flat.split()).replace("-->", "\u2192")
    # A subtitle timestamp inside the text (lenient SRT readers take one anywhere) loses its colons.
    flat = _TIMESTAMP_RE.sub(lambda m: m.group(0).replace(":", "\u2236"), flat)
    return flat.replace("\\", "\uff3c").replace("{", "(").replace("}", ")")


# ASS alignment and vertical margin of each caption position.
_POSITION_ALIGNMENT = {"bottom": 2, "middle": 5, "top": 8}  # numpad layout: bottom/middle/top centre


def _ssafile(
    cues: Sequence[Cue],
    style: SubtitleStyle,
    width: int,
    height: int,
    safe: SafeArea | None = None,
    event_text: Callable[[Cue], str] | None = None,
) -> pysubs2.SSAFile:
    import pysubs2

    box = caption_box(style, width, height, safe)
    subs = pysubs2.SSAFile()
    subs.info["PlayResX"] = str(width)
    subs.info["PlayResY"] = str(height)
    # Smart wrapping only as a fallback: segments are sized to fit one line.
    subs.info["WrapStyle"] = "0"
    subs.info["ScaledBorderAndShadow"] = "yes"
    marginv = {"bottom": box.margin_bottom_px, "middle": 0, "top": box.margin_top_px}[style.position]
    st = pysubs2.SSAStyle(
        fontname=style.font,
        fontsize=font_size_px(style, width, height, safe),
        primarycolor=_ass_colour(style.primary_colour),
        outlinecolor=_ass_colour(style.outline_colour),
        backcolor=pysubs2.Color(0, 0, 0, 128),
        bold=style.bold,
        outline=style.outline_px,
        shadow=0.0,
        alignment=pysubs2.Alignment(_POSITION_ALIGNMENT[style.position]),
        marginv=marginv,
        marginl=box.margin_left_px,
        marginr=box.margin_right_px,
    )
    if style.box:
        # Opaque box (BorderStyle 3): libass fills it with the outline colour, padded by the outline width.
        st.borderstyle = 3
        st.outlinecolor = st.backcolor = _ass_colour(style.box_colour)
    if style.karaoke != "off":
        # Karaoke: text not yet spoken is drawn in the secondary colour (`autocut.render.captions`).
        st.secondarycolor = st.primarycolor
    subs.styles["Default"] = st
    for c in cues:
        subs.append(
            pysubs2.SSAEvent(
                start=int(round(c.start_s * 1000)),
                end=int(round(c.end_s * 1000)),
                text=event_text(c) if event_text is not None else cue_text(c.text),
                style="Default",
            )
        )
    return subs


def write_ass(
    cues: Sequence[Cue],
    path: Path,
    *,
    style: SubtitleStyle,
    width: int,
    height: int,
    safe: SafeArea | None = None,
    event_text: Callable[[Cue], str] | None = None,
) -> Path:
    """Write an ASS file (atomically) for libass to burn in; captions stay inside `safe` (`caption_box`).
    `event_text` makes each event's text (with override tags, e.g. karaoke); default: `cue_text`."""
    subs = _ssafile(cues, style, width, height, safe, event_text)
    with atomic_path(path) as tmp:
        subs.save(str(tmp), format_="ass", encoding="utf-8")
    return path


def write_srt(cues: Sequence[Cue], path: Path) -> Path:
    """Write an SRT sidecar (atomically)."""
    subs = _ssafile(cues, SubtitleStyle(), 1920, 1080)
    with atomic_path(path) as tmp:
        subs.save(str(tmp), format_="srt", encoding="utf-8")
    return path
