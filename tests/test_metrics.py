"""Metrics against hand-computed values (docs/method.md, "Metrics")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autocut.errors import ConfigError
from autocut.evaluation import metrics as m

# --------------------------------------------------------------------------- words and WCD


@pytest.mark.parametrize(
    "text, words",
    [
        ("Meet the FreshCo Bottle.", 4),
        ("  Hello,   world!  ", 2),
        ("It's self-cleaning — really.", 3),  # the dash alone is punctuation, not a word
        ("三十秒快速完成。", 7),  # one word per CJK character, punctuation not counted
        ("USB充电，超快", 5),  # "USB" + 充 电 超 快
        ("iPhone 15 全新上市", 6),  # iPhone, 15, 全 新 上 市
        ("", 0),
        ("!!! …", 0),
    ],
)
def test_count_words(text: str, words: int) -> None:
    assert m.count_words(text) == words


def test_target_words_rounds_half_up_with_language_rates() -> None:
    assert m.target_words(4.0, "en") == 10  # 2.5 words/s
    assert m.target_words(3.0, "en") == 8  # 7.5 -> 8
    assert m.target_words(1.0, "en") == 3  # 2.5 -> 3 (half up; Python's round() would give 2)
    assert m.target_words(3.0, "zh") == 15  # 5 characters/s
    assert m.target_words(3.0, "en", words_per_s=2.0) == 6
    assert m.target_words(3.0, "zh", words_per_s={"zh": 4.0}) == 12
    with pytest.raises(ConfigError):
        m.target_words(3.0, "fr")
    with pytest.raises(ConfigError):
        m.target_words(-1.0, "en")


def test_wcd_hand_computed() -> None:
    lines = [
        "Meet the FreshCo Bottle.",  # 4 words, 2 s -> target 5, |4-5| = 1
        "Enjoy thirty-second results every single day.",  # 6 words, 4 s -> 10, 4
        "三十秒快速完成。",
    ]  # 7 chars, 1 s -> 5, 2
    assert m.wcd_per_clip(lines, [2.0, 4.0, 1.0]) == [1, 4, 2]  # "auto" picks the rate per line
    assert m.wcd(lines, [2.0, 4.0, 1.0]) == pytest.approx(7 / 3)
    # Forced English rate for every line: the Chinese line's target becomes round(2.5) = 3 -> |7-3| = 4.
    assert m.wcd_per_clip(lines, [2.0, 4.0, 1.0], "en") == [1, 4, 4]
    with pytest.raises(ConfigError, match="one line per clip"):
        m.wcd(lines, [2.0, 4.0])


# --------------------------------------------------------------------------- selection and order


def test_csa_counts_only_all_positive_selections() -> None:
    sels = [[1, 2], [1, 9], [], [3]]
    pos = [{1, 2, 3}, {1, 2}, {1}, [3, 4]]
    # sample 1 ok, sample 2 has a negative, sample 3 selected nothing (wrong), sample 4 ok.
    assert m.csa(sels, pos) == pytest.approx(0.5)
    assert math.isnan(m.csa([], []))
    with pytest.raises(ConfigError):
        m.csa([[1]], [])


def test_cra_and_sra_exact_match() -> None:
    pred = [[1, 2, 3], [3, 1, 2], [5]]
    ref = [[1, 2, 3], [1, 2, 3], [5]]
    assert m.cra(pred, ref) == pytest.approx(2 / 3)
    # SRA also needs the same clips: a different selection in the right order is wrong.
    assert m.sra([[1, 2], [1, 4], [2, 1]], [[1, 2], [1, 2], [1, 2]]) == pytest.approx(1 / 3)


def test_pairwise_order_accuracy_and_kendall_tau_hand_computed() -> None:
    ref = ["a", "b", "c", "d"]
    # pred b a c d: of the 6 pairs only (a, b) is discordant.
    assert m.pairwise_order_accuracy(["b", "a", "c", "d"], ref) == pytest.approx(5 / 6)
    assert m.kendall_tau(["b", "a", "c", "d"], ref) == pytest.approx((5 - 1) / 6)
    # Reversed: every pair discordant.
    assert m.pairwise_order_accuracy(ref[::-1], ref) == 0.0
    assert m.kendall_tau(ref[::-1], ref) == -1.0
    # Only shared items count: pred lacks "d" and adds "x"; pairs over a, b, c: (c, a), (c, b) discordant.
    assert m.pairwise_order_accuracy(["c", "x", "a", "b"], ref) == pytest.approx(1 / 3)
    # One item: no pair to judge.
    assert math.isnan(m.kendall_tau(["a"], ["a"]))
    assert m.mean_kendall_tau([["a"], ["b", "a"], ["a", "b"]], [["a"], ["a", "b"], ["a", "b"]]) == 0.0
    assert m.mean_pairwise_order_accuracy([["b", "a"], ["a", "b"]], [["a", "b"], ["a", "b"]]) == 0.5
    with pytest.raises(ConfigError, match="twice"):
        m.kendall_tau(["a", "a"], ["a", "b"])


def test_kendall_tau_matches_scipy() -> None:
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    for n in (2, 5, 9):
        ref = list(range(n))
        pred = [int(i) for i in rng.permutation(n)]
        rank = [pred.index(x) for x in ref]
        assert m.kendall_tau(pred, ref) == pytest.approx(kendalltau(range(n), rank).statistic)


# --------------------------------------------------------------------------- SSA


def test_ssa_rules_hand_checked() -> None:
    sentence = "Meet the FreshCo Bottle, fresh juice in thirty seconds."
    ok = ["Meet the FreshCo Bottle,", "fresh juice in thirty seconds."]
    # "Meet the FreshCo Bottle," = 20 letters * 0.4 + 3 spaces * 0.5 = 9.5 units (<= 13), one phrase.
    # "fresh juice in thirty seconds." = 25 * 0.4 + 4 * 0.5 = 12.0 units (<= 13), one phrase.
    assert m.ssa_sentence(ok, sentence)
    # A Latin word cut in two breaks rule 3; only the source sentence shows it.
    split = ["Meet the Fresh", "Co Bottle,", "fresh juice in thirty seconds."]
    assert not m.ssa_sentence(split, sentence)
    # Segments that are not the sentence fail.
    assert not m.ssa_sentence(["Meet the FreshCo Bottle,"], sentence)
    # Rule 1: 41 letters * 0.4 + 5 spaces * 0.5 = 18.9 units > 13 in one segment.
    assert not m.ssa_sentence(["Enjoy wonderful refreshing fruit juice anytime."])
    # Rule 2: "Fresh and fast." = 12 * 0.4 + 2 * 0.5 = 5.8 units may span ceil(0.58) = 1 segment, not 2.
    assert not m.ssa_sentence(["Fresh and", "fast."])
    # Chinese: 11 characters fit one segment; cutting the word 新鲜 (jieba) breaks rule 3.
    assert m.ssa_sentence(["三十秒就能喝上新鲜果汁，"], "三十秒就能喝上新鲜果汁，")
    assert not m.ssa_sentence(["三十秒就能喝上新", "鲜果汁，"])
    assert m.ssa(
        [ok, split, ["三十秒就能喝上新鲜果汁，"]], [sentence, sentence, "三十秒就能喝上新鲜果汁，"]
    ) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- BGM


def test_bgm_hit_at_k_mrr_and_cosine() -> None:
    ranked = [[4, 2, 7], [1, 3, 5], [9, 8, 6]]
    refs = [2, 1, 5]
    assert m.bgm_rank(ranked[0], 2) == 2
    assert m.bgm_rank(ranked[2], 5) is None
    assert m.bgm_hit_at_k(ranked, refs, 1) == pytest.approx(1 / 3)
    assert m.bgm_hit_at_k(ranked, refs, 2) == pytest.approx(2 / 3)
    assert m.bgm_mrr(ranked, refs) == pytest.approx((1 / 2 + 1 + 0) / 3)
    pred = np.array([[1.0, 0.0], [1.0, 1.0]])
    ref = np.array([[2.0, 0.0], [-1.0, 1.0]])
    assert m.bgm_cosine(pred, ref) == pytest.approx((1.0 + 0.0) / 2)
    with pytest.raises(ConfigError):
        m.bgm_cosine(pred, ref[:1])
    with pytest.raises(ConfigError):
        m.bgm_hit_at_k(ranked, refs, 0)


def test_summarize_leaves_out_undefined_samples() -> None:
    s = m.summarize("tau", [1.0, float("nan"), 0.0])
    assert (s.mean, s.std, s.n, s.n_undefined) == (0.5, 0.5, 2, 1)
