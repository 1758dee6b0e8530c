"""autocut.render.subtitles: SSA segmentation (VC-LLM 6.2), timing to words, ASS/SRT, font coverage."""

from __future__ import annotations

import math

import pysubs2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocut.errors import PlanError
from autocut.render import subtitles as S
from autocut.speech.tts import WordTiming
from autocut.types import SubtitleStyle

EN_WORDS = [
    "juice",
    "in",
    "thirty",
    "seconds",
    "the",
    "FreshCo",
    "cup",
    "blends",
    "smoothies",
    "anywhere",
    "washable",
    "blade",
    "no",
    "time",
    "for",
    "breakfast",
    "self-cleaning",
    "3.5",
    "minutes",
    "it's",
]
ZH_WORDS = [
    "没",
    "时间",
    "吃",
    "早餐",
    "鲜榨",
    "果汁",
    "一键",
    "清洗",
    "超级",
    "方便",
    "随时随地",
    "健康",
    "便携式",
    "榨汁杯",
    "食品级",
    "材料",
    "30秒",
    "就能",
    "喝到",
]
EN_PUNCT = [",", ".", "?", "!", ";"]
ZH_PUNCT = ["，", "。", "？", "！", "、"]


def test_units():
    assert S.text_units("果汁") == 2.0
    assert S.text_units("ab") == pytest.approx(0.8)
    assert S.text_units("a b") == pytest.approx(1.3)
    assert S.text_units("你好，") == 2.0  # punctuation separates, it does not count


def test_examples():
    segs = S.segment_sentence(
        "The FreshCo Juicer Cup blends a full glass of smoothie in thirty seconds flat, anywhere you go!"
    )
    assert all(s.units <= 13 for s in segs)
    assert S.ssa_ok([s.text for s in segs])
    assert " ".join(s.text for s in segs) == (
        "The FreshCo Juicer Cup blends a full glass of smoothie in thirty seconds flat, anywhere you go!"
    )
    zh = S.segment_sentence("这款便携式榨汁杯采用食品级材料制作而成安全又健康还能一键清洗超级方便")
    assert len(zh) == 3 and S.ssa_ok([s.text for s in zh])
    # Short phrases are kept together rather than flashing one by one.
    assert [s.text for s in S.segment_sentence("Fresh, fast, and clean.")] == ["Fresh, fast, and clean."]
    assert S.display_text(S.segment_sentence("没时间吃早餐，")[0]) == "没时间吃早餐"


def test_ssa_check_catches_each_rule():
    assert S.ssa_ok(["No time for breakfast?", "Juice in thirty seconds."])
    assert not S.ssa_ok(["No time for", "breakfast?"])  # a 8.7-unit phrase split in two (rule 2)
    assert not S.ssa_ok(["No time for break", "fast?"])  # word split (rule 3)
    assert not S.ssa_ok(["没时间吃早", "餐？"])  # jieba word 早餐 split (rule 3)
    assert not S.ssa_ok(["这款便携式榨汁杯采用食品级材料"])  # 15 units (rule 1)
    assert not S.ssa_ok([])


def _sentences(words, punct, sep):
    phrase = st.lists(st.sampled_from(words), min_size=1, max_size=14).map(sep.join)
    return st.lists(st.tuples(phrase, st.sampled_from(punct)), min_size=1, max_size=4).map(
        lambda parts: (" " if sep == " " else "").join(p + q for p, q in parts)
    )


@settings(max_examples=120, deadline=None)
@given(_sentences(EN_WORDS, EN_PUNCT, " "))
def test_english_segmentation_satisfies_ssa(sentence):
    segs = S.segment_sentence(sentence)
    assert all(s.units <= S.MAX_SEGMENT_UNITS for s in segs)
    assert S.ssa_ok([s.text for s in segs])
    # Nothing lost or reordered; spans index the sentence.
    assert " ".join(s.text for s in segs).split() == sentence.split()
    assert all(sentence[s.char_start : s.char_end] == s.text for s in segs)


@settings(max_examples=120, deadline=None)
@given(_sentences(ZH_WORDS, ZH_PUNCT, ""))
def test_chinese_segmentation_satisfies_ssa(sentence):
    segs = S.segment_sentence(sentence)
    assert all(s.units <= S.MAX_SEGMENT_UNITS for s in segs)
    assert S.ssa_ok([s.text for s in segs])
    assert "".join(s.text for s in segs) == sentence


def test_segments_use_few_pieces():
    sentence = "这款便携式榨汁杯采用食品级材料制作而成"
    units = S.text_units(sentence)
    assert len(S.segment_sentence(sentence)) <= math.ceil(units / 10)


def _words(sentence, times):
    out, pos = [], 0
    for tok, (a, b) in zip(sentence.split(), times):
        i = sentence.index(tok, pos)
        out.append(WordTiming(tok, i, i + len(tok), a, b))
        pos = i + len(tok)
    return out


def test_cues_follow_spoken_words():
    sentence = "No time for breakfast? Juice in thirty seconds."
    segs = S.segment_sentence(sentence)
    words = _words(
        sentence, [(0, 0.2), (0.2, 0.5), (0.5, 0.7), (0.7, 1.5), (1.6, 1.9), (1.9, 2.0), (2.0, 2.4), (2.4, 3.0)]
    )
    cues = S.time_cues(segs, words, speech_start_s=10.0, speech_duration_s=3.0, slot_end_s=14.0)
    assert [c.text for c in cues] == ["No time for breakfast?", "Juice in thirty seconds."]
    assert cues[0].start_s == pytest.approx(10.0)
    assert cues[1].start_s == pytest.approx(11.6)  # when "Juice" is spoken
    assert cues[0].end_s == cues[1].start_s
    assert cues[1].end_s == pytest.approx(13.0 + S.HOLD_AFTER_SPEECH_S)
    # Held no longer than the slot.
    late = S.time_cues(segs, words, speech_start_s=10.0, speech_duration_s=3.0, slot_end_s=13.1)
    assert late[-1].end_s == pytest.approx(13.1)
    # Without word timings cues share the speech time by width.
    even = S.time_cues(segs, [], speech_start_s=0.0, speech_duration_s=2.0, slot_end_s=3.0)
    assert even[0].start_s == 0.0 and 0.5 < even[1].start_s < 1.5


def test_ass_and_srt_round_trip(tmp_path):
    cues = [S.Cue(0.5, 1.5, "没时间吃早餐？"), S.Cue(1.5, 2.75, "Juice in thirty seconds.")]
    style = SubtitleStyle(primary_colour="&H0000FFFF", size_frac=0.05)
    ass = S.write_ass(cues, tmp_path / "a.ass", style=style, width=1080, height=1920)
    srt = S.write_srt(cues, tmp_path / "a.srt")
    back = pysubs2.load(str(ass))
    assert [(e.start, e.end, e.text) for e in back] == [
        (500, 1500, "没时间吃早餐？"),
        (1500, 2750, "Juice in thirty seconds."),
    ]
    st_ = back.styles["Default"]
    assert st_.fontname == "Noto Sans CJK SC"
    assert (st_.primarycolor.r, st_.primarycolor.g, st_.primarycolor.b) == (255, 255, 0)
    assert back.info["PlayResY"] == "1920"
    # 13 CJK characters fit the width of a portrait frame.
    assert st_.fontsize * 13 <= 1080
    assert [e.text for e in pysubs2.load(str(srt))] == ["没时间吃早餐？", "Juice in thirty seconds."]


def test_font_coverage():
    assert S.check_font_coverage("Noto Sans CJK SC", ["没时间吃早餐", "Juice 30"]).endswith((".ttc", ".otf", ".ttf"))
    with pytest.raises(PlanError, match="no glyphs for"):
        S.check_font_coverage("DejaVu Sans", ["没时间"])
    with pytest.raises(PlanError, match="not installed"):
        S.check_font_coverage("No Such Font Family 123", ["x"])


def test_user_text_cannot_inject_cues_lines_or_ass_commands(tmp_path) -> None:
    hostile = "Buy now\r\n\r\n2\r\n00:00:00,000 --> 00:00:09,000\r\nHACKED\x0b\x85\u2028{\\pos(0,0)}\\N\\Nend"
    cues = [S.Cue(0.0, 2.0, hostile), S.Cue(2.0, 4.0, "Second line")]
    srt = S.write_srt(cues, tmp_path / "a.srt")
    ass = S.write_ass(cues, tmp_path / "a.ass", style=SubtitleStyle(), width=1080, height=1920)
    parsed = pysubs2.load(str(srt))
    assert len(parsed) == 2 and parsed[0].end == 2000  # no injected cue, the first keeps its own timing
    text = srt.read_text(encoding="utf-8")
    assert "\r" not in text and "\n\n\n" not in text and text.count("-->") == 2
    events = [ln for ln in ass.read_text(encoding="utf-8").splitlines() if ln.startswith("Dialogue:")]
    assert len(events) == 2 and "{" not in events[0] and "\\pos" not in events[0]
    assert "\\N" not in events[0] and events[1].endswith(",Second line")  # one line per cue
    assert S.cue_text("a\u3000b\t c") == "a b c"
