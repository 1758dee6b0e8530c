"""Karaoke captions: the spoken word highlighted as the voice says it, as ASS ``\\k`` tags.

Where the times come from: both TTS engines return word timings (`autocut.speech.tts.WordTiming`):
espeak-ng reports a word event at the audio position where each word starts (Mandarin goes through pinyin,
one event per syllable, so per Chinese character); piper's phoneme alignments give word spans (when its
phonemizer splits words differently, tts spreads the voiced span over the written words by length). Units
the TTS gives no time for (punctuation, a word the engine merged away, or no voice at all: ``engine:
none``) are timed in proportion to their characters between their timed neighbours (or over the cue),
never invented otherwise.

Units: `word` highlights whitespace tokens (Chinese: jieba words, the same words the SSA rules keep on one
line, `autocut.render.subtitles.word_spans`); `character` highlights Chinese characters one by one (Latin
text still word by word). A Chinese word's time runs from its first character's start to its last's end.

The ASS text (`karaoke_event_text`): one ``{\\kN}`` per unit (N centiseconds, from its start to the next
unit's start), with the unit's fill colour set to the highlight colour and turned back to the base colour
(``\\t``) when the next unit starts, so exactly the word being spoken is highlighted; words not yet spoken
are drawn in the style's secondary colour, which the writer sets to the base colour
(`autocut.render.subtitles.write_ass`). Reference: the ASS karaoke tags in the Aegisub manual,
https://aegisub.org/docs/latest/ass_tags/#karaoke-effect-tags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from autocut.render import subtitles as subs
from autocut.speech.tts import WordTiming
from autocut.types import KaraokeMode, SubtitleStyle

__all__ = ["attach_karaoke", "karaoke_event_text", "karaoke_text_fn", "karaoke_units", "time_units"]


def _has_cjk(text: str) -> bool:
    return any(subs._is_cjk(c) for c in text)


def karaoke_units(text: str, mode: KaraokeMode) -> list[tuple[int, int]]:
    """The highlighted spans of a caption's `text`, in order; punctuation joins the unit before it."""
    spans: list[tuple[int, int]] = []
    for a, b in subs.word_spans(text):
        if mode == "character" and _has_cjk(text[a:b]):
            # Chinese characters one by one; a Latin or digit run inside ("30秒") stays one unit.
            k = a
            while k < b:
                j = k + 1
                if not subs._is_cjk(text[k]):
                    while j < b and not subs._is_cjk(text[j]):
                        j += 1
                spans.append((k, j))
                k = j
        else:
            spans.append((a, b))
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if all(subs._is_punct(c) or c.isspace() for c in text[a:b]) and out:
            out[-1] = (out[-1][0], b)
        elif out and all(subs._is_punct(c) or c.isspace() for c in text[out[-1][0] : out[-1][1]]):
            out[-1] = (out[-1][0], b)  # a leading punctuation unit joins the first word
        else:
            out.append((a, b))
    return out


def time_units(
    units: Sequence[tuple[int, int]],
    timed: Sequence[tuple[int, int, float, float]],
    *,
    start_s: float,
    end_s: float,
) -> list[tuple[float, float]]:
    """(start, end) of each unit from `timed` spans (char start, char end, start s, end s) in the same text.

    A timed span covering several units is split over them by characters; units no span covers share the
    time between their timed neighbours (or `start_s` / `end_s`) in proportion to their characters.
    """
    n = len(units)
    times: list[tuple[float, float] | None] = [None] * n
    for k, (a, b) in enumerate(units):
        lo = hi = None
        for wa, wb, t0, t1 in timed:
            oa, ob = max(a, wa), min(b, wb)
            if ob <= oa or wb <= wa:
                continue
            s0 = t0 + (t1 - t0) * (oa - wa) / (wb - wa)
            s1 = t0 + (t1 - t0) * (ob - wa) / (wb - wa)
            lo = s0 if lo is None else min(lo, s0)
            hi = s1 if hi is None else max(hi, s1)
        if lo is not None and hi is not None:
            times[k] = (lo, hi)
    k = 0
    while k < n:
        if times[k] is not None:
            k += 1
            continue
        j = k
        while j < n and times[j] is None:
            j += 1
        prev = times[k - 1]
        t0 = prev[1] if k > 0 and prev is not None else start_s
        nxt = times[j] if j < n else None
        t1 = nxt[0] if nxt is not None else end_s
        t1 = max(t1, t0)
        chars = [max(1, units[i][1] - units[i][0]) for i in range(k, j)]
        total = sum(chars)
        acc = 0
        for i in range(k, j):
            u0 = t0 + (t1 - t0) * acc / total
            acc += chars[i - k]
            times[i] = (u0, t0 + (t1 - t0) * acc / total)
        k = j
    out: list[tuple[float, float]] = []
    last = start_s
    for t in times:
        assert t is not None
        u0 = min(max(t[0], last), end_s)  # monotonic, inside the cue
        out.append((u0, min(max(t[1], u0), end_s)))
        last = u0
    return out


def attach_karaoke(
    cues: Sequence[subs.Cue],
    segments: Sequence[subs.SubtitleSegment],
    words: Sequence[WordTiming],
    *,
    speech_start_s: float,
    mode: KaraokeMode,
) -> list[subs.Cue]:
    """`cues` (one per subtitle segment, from `subtitles.time_cues`) with their karaoke units timed from the
    TTS `words` (times relative to `speech_start_s`, spans in the sentence)."""
    if mode == "off":
        return list(cues)
    assert len(cues) == len(segments)
    out: list[subs.Cue] = []
    for cue, seg in zip(cues, segments):
        # The cue's text is the segment's text from its start (trailing punctuation may be dropped), so a
        # sentence offset maps to a cue offset by subtracting the segment's start.
        n = len(cue.text)
        timed = []
        for w in words:
            a, b = max(w.char_start - seg.char_start, 0), min(w.char_end - seg.char_start, n)
            if b > a:
                timed.append((a, b, speech_start_s + w.start_s, speech_start_s + w.end_s))
        units = karaoke_units(cue.text, mode)
        spoken_end = max((t[3] for t in timed), default=cue.end_s)
        times = time_units(units, timed, start_s=cue.start_s, end_s=min(cue.end_s, max(spoken_end, cue.start_s)))
        cw = tuple(subs.CueWord(a, b, round(t0, 3), round(t1, 3)) for (a, b), (t0, t1) in zip(units, times))
        out.append(replace(cue, words=cw))
    return out


def _override_colour(ass_colour: str) -> str:
    """'&HAABBGGRR' -> '&HBBGGRR&' (the form of the \\1c override tag)."""
    return "&H" + ass_colour.strip().rstrip("&")[-6:] + "&"


def _piece(text: str) -> str:
    """A piece of cue text as ASS event text (`subtitles.cue_text`), keeping one space at its end."""
    esc = subs.cue_text(text)
    return esc + " " if esc and text[-1:].isspace() else esc


def karaoke_event_text(cue: subs.Cue, *, highlight_colour: str, base_colour: str) -> str:
    """The ASS event text of `cue` with one ``\\k`` per unit, the spoken unit in `highlight_colour`."""
    if not cue.words:
        return subs.cue_text(cue.text)
    hi, base = _override_colour(highlight_colour), _override_colour(base_colour)
    dur_cs = max(1, int(round((cue.end_s - cue.start_s) * 100)))
    # Unit starts in centiseconds from the event start, rounded once so the \k durations add up exactly.
    starts = [min(dur_cs, max(0, int(round((w.start_s - cue.start_s) * 100)))) for w in cue.words]
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1])
    parts = [f"{{\\k{starts[0]}}}"] if starts[0] > 0 else []
    n = len(cue.words)
    for i, w in enumerate(cue.words):
        a = 0 if i == 0 else w.char_start
        b = cue.words[i + 1].char_start if i + 1 < n else len(cue.text)
        nxt = starts[i + 1] if i + 1 < n else dur_cs
        tag = f"\\1c{hi}\\k{nxt - starts[i]}"
        if i + 1 < n:
            # Back to the base colour when the next unit starts (ms from the event start).
            tag += f"\\t({nxt * 10},{nxt * 10 + 1},\\1c{base})"
        parts.append(f"{{{tag}}}{_piece(cue.text[a:b])}")
    return "".join(parts)


def karaoke_text_fn(style: SubtitleStyle) -> Callable[[subs.Cue], str] | None:
    """The event-text function `subtitles.write_ass` takes for `style` (None: no karaoke)."""
    if style.karaoke == "off":
        return None

    def text(cue: subs.Cue) -> str:
        return karaoke_event_text(cue, highlight_colour=style.highlight_colour, base_colour=style.primary_colour)

    return text
