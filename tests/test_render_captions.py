"""Caption styles and karaoke captions: the ASS `\\k` tags from the TTS word timings, and real renders whose
frames show the highlighted word moving (English word by word, Chinese character by character)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydantic
import pytest

import autocut.render as R
from autocut.render import captions, subtitles
from autocut.render.caption_styles import CAPTION_STYLES
from autocut.speech.tts import WordTiming
from autocut.types import EditPlan, OutputSpec, PlanSegment, ProductInfo, SubtitleStyle, VoiceSpec
from tests.media_factory import ffmpeg
from tests.test_render_branding import _frame

W, H = 360, 640
EN = "Fresh juice in thirty seconds, anywhere you go."
ZH = "三十秒鲜榨果汁，随时随地。"
_K_RE = re.compile(r"\\k(\d+)")


@pytest.fixture(scope="module")
def blue_source(tmp_path_factory) -> Path:
    """A plain blue clip: any yellow pixel in a frame is the karaoke highlight."""
    path = tmp_path_factory.mktemp("captions") / "blue.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=0x2040C0:s=320x240:r=25:d=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)
    )
    return path


def _plan(source: Path, lang: str, sentence: str, **subtitle_fields: object) -> EditPlan:
    return EditPlan(
        product=ProductInfo(name="Juicer Cup"),
        language=lang,  # type: ignore[arg-type]
        segments=[PlanSegment(source_path=str(source), start_s=0.0, duration_s=3.5, sentence=sentence)],
        voice=VoiceSpec(language=lang),  # type: ignore[arg-type]
        output=OutputSpec(width=W, height=H),
        subtitles=SubtitleStyle.model_validate(subtitle_fields),
    )


def _events(ass_path: Path) -> list[str]:
    return [
        ln.split(",", 9)[9] for ln in ass_path.read_text(encoding="utf-8").splitlines() if ln.startswith("Dialogue:")
    ]


def _yellow_x(img: np.ndarray) -> float | None:
    """Mean column of the yellow (highlight) pixels, or None when there are none."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    _, xs = np.nonzero((r > 180) & (g > 180) & (b < 90))
    return float(xs.mean()) if len(xs) > 20 else None


# --------------------------------------------------------------------------- styles


def test_caption_presets_validate_and_explicit_fields_win():
    for name in CAPTION_STYLES:
        st = SubtitleStyle(preset=name)
        assert st.preset == name
    st = SubtitleStyle(preset="karaoke", highlight_colour="&H0000FF00")
    assert st.karaoke == "word" and st.highlight_colour == "&H0000FF00"
    # The default style is today's: no karaoke, no box, at the bottom.
    d = SubtitleStyle()
    assert (d.karaoke, d.box, d.position) == ("off", False, "bottom")


def test_unknown_caption_style_names_the_field():
    with pytest.raises(pydantic.ValidationError, match=r"subtitles\.preset: unknown caption style 'neon'"):
        SubtitleStyle(preset="neon")
    with pytest.raises(pydantic.ValidationError, match="highlight_colour"):
        SubtitleStyle(highlight_colour="yellow")


@pytest.mark.parametrize("preset", ["tiktok", "reels", "youtube"])
def test_top_and_bottom_positions_respect_the_safe_area(preset, tmp_path):
    o = OutputSpec(preset=preset)
    for position, align in (("top", 8), ("bottom", 2), ("middle", 5)):
        style = SubtitleStyle(position=position, margin_v_frac=0.0)  # type: ignore[arg-type]
        ass = subtitles.write_ass(
            [subtitles.Cue(0.0, 1.0, "Fresh juice")],
            tmp_path / "a.ass",
            style=style,
            width=o.width,
            height=o.height,
            safe=o.safe_area,
        )
        import pysubs2

        st = pysubs2.load(str(ass)).styles["Default"]
        assert int(st.alignment) == align
        if position == "top":
            assert st.marginv >= o.safe_area.top_frac * o.height - 1
        elif position == "bottom":
            assert st.marginv >= o.safe_area.bottom_frac * o.height - 1
        assert st.marginl >= o.safe_area.left_frac * o.width - 1


# --------------------------------------------------------------------------- karaoke timing


def test_karaoke_units_english_words_and_chinese_words_or_characters():
    assert [EN[a:b] for a, b in captions.karaoke_units(EN, "word")][:3] == ["Fresh", "juice", "in"]
    # Punctuation joins the word before it.
    assert "seconds," in [EN[a:b] for a, b in captions.karaoke_units(EN, "word")]
    zh_words = [ZH[a:b] for a, b in captions.karaoke_units(ZH, "word")]
    assert "".join(zh_words) == ZH and len(zh_words) < len(ZH) - 2  # jieba words, several characters each
    zh_chars = [ZH[a:b] for a, b in captions.karaoke_units(ZH, "character")]
    assert zh_chars[:4] == ["三", "十", "秒", "鲜"] and "汁，" in zh_chars


def test_time_units_splits_shared_spans_and_interpolates_untimed_units():
    units = [(0, 1), (1, 2), (2, 4), (4, 6)]
    timed = [(0, 2, 1.0, 2.0), (4, 6, 3.0, 4.0)]  # one span over two units; unit 3 untimed
    t = captions.time_units(units, timed, start_s=0.5, end_s=4.5)
    assert t[0] == pytest.approx((1.0, 1.5)) and t[1] == pytest.approx((1.5, 2.0))
    assert t[2] == pytest.approx((2.0, 3.0)) and t[3] == pytest.approx((3.0, 4.0))
    # No timings at all (no voice): proportional to characters over the cue.
    t = captions.time_units([(0, 1), (1, 4)], [], start_s=0.0, end_s=4.0)
    assert [x for pair in t for x in pair] == pytest.approx([0.0, 1.0, 1.0, 4.0])


def test_k_tags_follow_word_timings_and_add_up_to_the_cue():
    words = [WordTiming("Fresh", 0, 5, 0.0, 0.3), WordTiming("juice", 6, 11, 0.3, 0.8)]
    seg = subtitles.segment_sentence("Fresh juice")
    cues = subtitles.time_cues(seg, words, speech_start_s=1.0, speech_duration_s=0.8, slot_end_s=3.0)
    (cue,) = captions.attach_karaoke(cues, seg, words, speech_start_s=1.0, mode="word")
    text = captions.karaoke_event_text(cue, highlight_colour="&H0000FFFF", base_colour="&H00FFFFFF")
    assert [int(x) for x in _K_RE.findall(text)] == [30, round((cue.end_s - 1.3) * 100)]
    assert "\\1c&H00FFFF&" in text and "\\t(300,301,\\1c&HFFFFFF&)" in text
    assert text.endswith("juice") and "Fresh " in text


@pytest.mark.parametrize(
    ("lang", "sentence", "mode"), [("en", EN, "word"), ("zh", ZH, "character"), ("zh", ZH, "word")]
)
def test_prepared_ass_has_k_tags_from_the_tts(blue_source, tmp_path, lang, sentence, mode):
    p = R.prepare(_plan(blue_source, lang, sentence, preset="karaoke", karaoke=mode), work_dir=tmp_path)
    assert p.ass_path is not None
    events = _events(p.ass_path)
    units = sum(len(c.words) for c in p.cues)
    assert sum(len(_K_RE.findall(e)) for e in events) >= units > 2
    for cue, ev in zip(p.cues, events, strict=True):
        ks = [int(x) for x in _K_RE.findall(ev)]
        assert sum(ks) == pytest.approx((cue.end_s - cue.start_s) * 100, abs=2)
        starts = [w.start_s for w in cue.words]
        assert starts == sorted(starts)
    # Without karaoke the ASS has no \k tag (today's output).
    (tmp_path / "plain").mkdir()
    p0 = R.prepare(_plan(blue_source, lang, sentence), work_dir=tmp_path / "plain")
    assert p0.ass_path is not None and not any("\\k" in e for e in _events(p0.ass_path))


# --------------------------------------------------------------------------- renders


@pytest.mark.parametrize(("lang", "sentence", "mode"), [("en", EN, "word"), ("zh", ZH, "character")])
def test_rendered_highlight_moves_along_the_line(blue_source, tmp_path, lang, sentence, mode):
    plan = _plan(blue_source, lang, sentence, preset="karaoke", karaoke=mode)
    (tmp_path / "prep").mkdir()
    prepared = R.prepare(plan, work_dir=tmp_path / "prep")
    cue = prepared.cues[0]
    assert len(cue.words) >= 3
    res = R.render(plan, tmp_path / "k.mp4", threads=2, sidecars=False)
    assert res.selfcheck is not None  # a failed self-check raises
    xs = []
    # The middle of the first, a middle and the last-but-one unit of the first cue.
    for k in (0, len(cue.words) // 2, len(cue.words) - 2):
        w = cue.words[k]
        img = _frame(res.output_path, (w.start_s + w.end_s) / 2, tmp_path / f"f{k}.png")
        x = _yellow_x(img[int(H * 0.6) :])  # the caption band (bottom of the frame)
        assert x is not None, f"no highlight at unit {k} ({cue.text[w.char_start : w.char_end]!r})"
        xs.append(x)
    assert xs[0] < xs[1] < xs[2], xs
