"""The AutoCut token format: formatting, parsing, robustness to whitespace, range checks."""

from __future__ import annotations

import numpy as np
import pytest

from autocut.errors import AutoCutError
from autocut.lm import tokens as T


def _codes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, T.CODEBOOK_SIZE, size=(n, T.NUM_LEVELS))


def test_vocabulary_is_the_public_format() -> None:
    toks = T.added_tokens()
    assert len(toks) == 10 + 2 * 8 * 256
    assert len(set(toks)) == len(toks)
    assert toks[:10] == list(T.STRUCTURAL_TOKENS)
    assert toks[10] == "<v_0_0>" and toks[10 + 2047] == "<v_7_255>"
    assert toks[10 + 2048] == "<a_0_0>" and toks[-1] == "<a_7_255>"
    # text markers stay plain text, as in the public AutoCut code
    assert T.TEXT_START not in toks and T.TEXT_END not in toks


def test_frame_and_audio_blocks() -> None:
    assert T.frame_block([17, 155, 232, 197, 197, 84, 207, 46]) == (
        "<|frame_start|><v_0_17><v_1_155><v_2_232><v_3_197><v_4_197><v_5_84><v_6_207><v_7_46><|frame_end|>"
    )
    assert T.audio_block(np.arange(8)) == (
        "<|audio_start|><a_0_0><a_1_1><a_2_2><a_3_3><a_4_4><a_5_5><a_6_6><a_7_7><|audio_end|>"
    )
    # 10 tokens per frame (docs/method.md, "Candidates and prompt budget")
    assert len(T.parse_code_tokens(T.frame_block(np.zeros(8, int)))) + 2 == T.TOKENS_PER_FRAME


def test_ad_roundtrip_property() -> None:
    rng = np.random.default_rng(1)
    for trial in range(20):
        clips = [
            (f"sentence {trial}-{k}.", _codes(int(rng.integers(1, 6)), seed=trial * 10 + k))
            for k in range(int(rng.integers(1, 5)))
        ]
        audio = rng.integers(0, 256, 8)
        text = T.ad_sequence(clips, audio)
        assert text.startswith(T.AD_START) and text.endswith(T.AD_END)
        parsed = T.parse_ad(text)
        assert [c.text for c in parsed.clips] == [s for s, _ in clips]
        for pc, (_, codes) in zip(parsed.clips, clips):
            np.testing.assert_array_equal(pc.frames, codes)
        np.testing.assert_array_equal(parsed.audio, audio)


def test_ad_without_audio_and_clip_without_text() -> None:
    text = T.ad_sequence([("hi", _codes(2))], None)
    assert T.parse_ad(text).audio is None
    block = T.clip_block(_codes(3))
    assert T.TEXT_START not in block
    parsed = T.parse_ad(block)
    assert parsed.clips[0].text is None and parsed.clips[0].frames.shape == (3, 8)


def test_parser_tolerates_whitespace() -> None:
    codes = _codes(2, seed=5)
    messy = T.video_block(codes).replace("><", "> \n <").replace("<v_", "< v_").replace("|>", " |>")
    np.testing.assert_array_equal(T.parse_frames(messy), codes)
    a = T.audio_block(np.arange(8)).replace("><", ">  <")
    np.testing.assert_array_equal(T.parse_audio(a), np.arange(8))
    # bare a-tokens without the wrapper (as the public model sometimes emits)
    np.testing.assert_array_equal(T.parse_audio(" ".join(f"<a_{i}_{i + 1}>" for i in range(8))), np.arange(1, 9))


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("<|frame_start|><v_0_1><v_1_2><v_2_3><v_3_4><v_4_5><v_5_6><v_6_7><v_7_256><|frame_end|>", "code 256"),
        ("<|frame_start|><v_0_1><v_1_2><v_2_3><v_3_4><v_4_5><v_5_6><v_6_7><v_8_1><|frame_end|>", "level 8"),
        ("<|frame_start|><v_0_1><v_1_2><v_2_3><|frame_end|>", "levels 0..7"),
        ("<|frame_start|><v_1_1><v_0_2><v_2_3><v_3_4><v_4_5><v_5_6><v_6_7><v_7_1><|frame_end|>", "in order"),
        ("<|frame_start|><v_0_1>", "never closed"),
        ("<v_0_1><|frame_end|>", "without a matching"),
    ],
)
def test_parser_rejects_malformed(bad: str, fragment: str) -> None:
    with pytest.raises(T.TokenFormatError, match=fragment):
        T.parse_frames(bad)
    assert issubclass(T.TokenFormatError, AutoCutError)


def test_formatting_rejects_bad_codes_and_markup_in_text() -> None:
    with pytest.raises(T.TokenFormatError, match=r"0\.\.255"):
        T.frame_block([0, 0, 0, 0, 0, 0, 0, 300])
    with pytest.raises(T.TokenFormatError, match="shape"):
        T.video_block(np.zeros((2, 7), int))
    with pytest.raises(T.TokenFormatError, match="reserved marker"):
        T.clip_block(_codes(1), "say <|clip_end|> now")
    with pytest.raises(T.TokenFormatError):
        T.code_token("video", 8, 0)
    assert T.code_token("audio", 7, 255) == "<a_7_255>"


def test_parse_indices() -> None:
    assert T.parse_indices("2,1", pool_size=2) == [2, 1]
    assert T.parse_indices(" 3， 1 、2 ", pool_size=3, expect_count=3) == [3, 1, 2]
    assert T.format_indices([4, 1, 2]) == "4,1,2"
    for bad, frag in [("", "empty"), ("1,x", "not a clip index"), ("1,5", "outside"), ("1,1", "duplicate")]:
        with pytest.raises(T.TokenFormatError, match=frag):
            T.parse_indices(bad, pool_size=4)
    with pytest.raises(T.TokenFormatError, match="expected 3"):
        T.parse_indices("1,2", pool_size=4, expect_count=3)
