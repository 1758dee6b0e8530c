"""The token-LM planner: constrained decoding, vLLM request bodies, and planning end to end.

Everything runs on a tiny *untrained* `Qwen3ForCausalLM` (hidden 16, 1 layer) with the real Qwen3
tokenizer extended by the AutoCut tokens: random weights must still give answers that parse, since
the constraints, not the model, guarantee the format. Planning runs on a small real library
(generated videos and tones, ingested with the real encoders) with tiny RQ-VAEs trained here.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from autocut.encoders.base import l2_normalize
from autocut.errors import ConfigError
from autocut.evaluation.variants import variant_distinctness
from autocut.library.catalog import Catalog
from autocut.library.ids import split_frame_id
from autocut.lm import decoding as D
from autocut.lm import tokens as T
from autocut.lm import vllm_backend as V
from autocut.lm.backbone import default_qwen3_tokenizer_dir, load_causal_lm, make_qwen3_backbone
from autocut.lm.chat import render_prompt
from autocut.lm.vocab import extend_vocabulary
from autocut.planning import PlanOptions, plan_edit
from autocut.planning.candidates import build_candidates
from autocut.planning.planners import get_planner
from autocut.planning.planners.token import FREE_LINE_MAX_WORDS, TokenPlanner
from autocut.planning.voice_fit import MAX_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S
from autocut.speech.tts import estimate_duration_s
from autocut.speech.words import count_words, target_words
from autocut.types import EditPlan, PlanRequest, PoolItem, ProductInfo
from media_factory import make_audio, make_shots, make_video

TOKENIZER_DIR = default_qwen3_tokenizer_dir()
pytestmark = pytest.mark.skipif(
    not (TOKENIZER_DIR / "tokenizer.json").exists(),
    reason="Qwen3 tokenizer not fetched (run scripts/fetch_qwen3_tokenizer.sh)",
)
TINY = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 32,
}
PRODUCT = ProductInfo(
    name="FreshCo Blender Bottle",
    brand="FreshCo",
    category="kitchen",
    selling_points=["thirty-second results", "a leak-proof lid"],
)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def _tiny_lm(tmp_path_factory: pytest.TempPathFactory):
    """A tiny untrained Qwen3 with the extended vocabulary, saved as a model directory."""
    base = tmp_path_factory.mktemp("lm")
    backbone = make_qwen3_backbone(base / "backbone", TOKENIZER_DIR, seed=0, **TINY)
    model, tok = load_causal_lm(backbone)
    extend_vocabulary(model, tok, seed=0)
    out = base / "sft-model"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out, model.eval(), tok


@pytest.fixture(scope="module")
def lm_dir(_tiny_lm) -> Path:
    return _tiny_lm[0]


@pytest.fixture(scope="module")
def lm(_tiny_lm):
    return _tiny_lm[1], _tiny_lm[2]


def _train_rqvae(
    x: np.ndarray,
    modality: str,
    out: Path,
    pca_version: str | None,
    *,
    hidden: int = 64,
    codebook_dim: int = 16,
    epochs: int = 3,
    seed: int = 0,
):
    from rqvae import ModelConfig, RQVAEConfig, TrainConfig, train

    # Few real vectors: repeat them with a little noise so every codebook has enough points to initialise.
    rng = np.random.default_rng(seed)
    rows = np.repeat(x, max(1, 2048 // len(x)), axis=0)
    rows = (rows + 0.01 * rng.normal(size=rows.shape)).astype(np.float32)
    cfg = RQVAEConfig(
        model=ModelConfig(
            modality=modality,
            input_dim=x.shape[1],
            encoder_hidden=(hidden,),
            decoder_hidden=(hidden,),
            codebook_dim=codebook_dim,
            kmeans_iters=4,
        ),
        train=TrainConfig(epochs=epochs, batch_size=1024, val_fraction=0.0, seed=seed),
    )
    tok = train(rows, np.arange(len(rows)) % 7, cfg).tokenizer
    tok.save(out, pca_version=pca_version)
    return tok


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, ingest_media) -> dict:
    """A real library: 3 pool videos, 1 other video, 3 BGM tones; tiny RQ-VAEs in models/."""
    base = tmp_path_factory.mktemp("tokenlib")
    media = base / "media"
    media.mkdir()
    size = "192x144"
    make_shots(media / "a.mp4", [("testsrc2", 3), ("red", 3), ("mandelbrot", 3)], size=size)
    make_shots(media / "b.mp4", [("smptebars", 4), ("blue", 3)], size=size)
    make_video(media / "c.mp4", duration_s=5, src="rgbtestsrc", size=size)
    make_shots(media / "d.mp4", [("green", 3), ("yuvtestsrc", 4)], size=size)
    for name, freq in (("low", 440), ("mid", 900), ("high", 1500)):
        make_audio(media / f"{name}.wav", duration_s=10.5, freq=freq)
    root = base / "library"
    footage = [media / f"{n}.mp4" for n in "abcd"]
    ids, tracks = ingest_media(root, footage, [media / f"{n}.wav" for n in ("low", "mid", "high")])
    with Catalog.open(root, create=False) as cat:
        _, frames = cat.frame_vectors()
        _, bgm = cat.bgm_vectors()
        pca = cat.pca_version or None
    # Wide enough that decoded codes find their own frame back among the test pattern's similar frames.
    video = _train_rqvae(frames, "video", root / "models" / "rqvae_video", pca, hidden=256, codebook_dim=64, epochs=10)
    audio = _train_rqvae(bgm, "audio", root / "models" / "rqvae_audio", None)
    return {
        "root": root,
        "ids": ids,
        "tracks": tracks,
        "video": video,
        "audio": audio,
        "pool": [PoolItem(photo_id=ids[k]) for k in "abc"],
    }


# ---------------------------------------------------------------------------------------------- decoding


def test_index_answer_rule() -> None:
    sel = {"n_options": 12, "count": 3, "ascending": True, "permutation": False}
    assert D.index_answer_valid("2,5,11", complete=True, **sel)
    for bad in ("5,2,11", "2,2,11", "2,5", "2,5,11,12", "0,5,11", "2,05,11", "2,5,13", "2,,5", ""):
        assert not D.index_answer_valid(bad, complete=True, **sel), bad
    assert D.index_answer_valid("2,1", complete=False, **sel)  # 2,1x -> 2,10 / 2,11 / 2,12 still possible
    assert D.index_answer_valid("2,5,11", complete=False, **sel)  # a full answer is its own prefix
    assert not D.index_answer_valid("11,12", complete=False, **sel)  # no third number above 12
    perm = {"n_options": 3, "count": None, "ascending": False, "permutation": True}
    assert D.index_answer_valid("3,1,2", complete=True, **perm)
    assert not D.index_answer_valid("3,1", complete=True, **perm)
    assert not D.index_answer_valid("3,3,1", complete=True, **perm)


@pytest.mark.parametrize(
    "n, count, permutation", [(1, 1, False), (9, 3, False), (15, None, False), (12, None, True), (24, 12, False)]
)
def test_constrained_indices_are_valid_from_random_weights(lm, n: int, count: int | None, permutation: bool) -> None:
    model, tok = lm
    prompt = render_prompt(
        tok, "Pick the clips.\n" + "\n".join(f"{k}){T.clip_block(np.zeros((1, 8), int))}" for k in range(1, n + 1))
    )
    for seed in range(4):
        got = D.choose_indices(
            model,
            tok,
            prompt,
            n_options=n,
            count=count,
            ascending=not permutation,
            permutation=permutation,
            sample=seed > 0,
            temperature=2.0,
            seed=seed,
        )
        # The answer text is the corpus format and parses with the corpus parser.
        parsed = T.parse_indices(T.format_indices(got), pool_size=n, expect_count=n if permutation else count)
        assert parsed == got
        if permutation:
            assert sorted(got) == list(range(1, n + 1))
        else:
            assert got == sorted(set(got)) and len(got) >= 1


def test_sampled_answers_differ_and_greedy_repeats(lm) -> None:
    model, tok = lm
    prompt = render_prompt(tok, "Order the clips.")
    orders = {
        tuple(
            D.choose_indices(
                model,
                tok,
                prompt,
                n_options=8,
                count=None,
                ascending=False,
                permutation=True,
                sample=True,
                temperature=1.5,
                seed=s,
            )
        )
        for s in range(6)
    }
    assert len(orders) >= 3
    greedy = [
        D.choose_indices(model, tok, prompt, n_options=8, count=None, ascending=False, permutation=True)
        for _ in range(2)
    ]
    assert greedy[0] == greedy[1]
    assert D.last_stats().prefill_cached  # the same prompt reuses its prefill


def test_audio_codes_are_eight_levels_in_order(lm) -> None:
    model, tok = lm
    prompt = render_prompt(tok, "Choose the music.")
    seen = set()
    for seed in range(3):
        codes = D.generate_audio_codes(model, tok, prompt, sample=seed > 0, temperature=2.0, seed=seed)
        assert codes.shape == (8,) and codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < 256
        assert np.array_equal(T.parse_audio(T.audio_block(codes)), codes)
        seen.add(tuple(codes))
    assert len(seen) >= 2


@pytest.mark.parametrize("language", ["en", "zh"])
def test_script_lines_meet_counts_and_character_caps(lm, language: str) -> None:
    model, tok = lm
    prompt = render_prompt(tok, "Write the voice-over.")
    lo, hi = [3, 5, 1], [6, 8, 3]
    caps = [40, 60, 20] if language == "en" else [12, 14, 6]
    if language == "zh":
        lo, hi = [6, 8, 2], [10, 12, 5]
    for seed in range(3):
        lines = D.generate_lines(
            model,
            tok,
            prompt,
            n_lines=3,
            max_words=hi,
            min_words=lo,
            max_chars=caps,
            language=language,
            sample=seed > 0,
            temperature=1.0,
            seed=seed,
        )
        assert len(lines) == 3
        for line, a, b, cap in zip(lines, lo, hi, caps):
            assert line and line == line.strip() and "\n" not in line
            assert a <= count_words(line) <= b, (line, a, b)
            assert len(line) <= cap, line
            assert not re.search(r"[<>|]", line)
            T.clip_block(np.zeros((1, 8), int), line)  # no reserved markup: a line goes into the BGM prompt
            if language == "en":
                assert not re.search(r"[\u3400-\u9fff]", line)


def test_script_lines_resist_digit_collapse(lm) -> None:
    """A model that prefers digits and commas (the undertrained LM's "1,2,3,..." collapse, forced here by a
    logit bias on the real model) still writes lines of word-shaped runs with letters in them."""
    model, tok = lm
    vocab = tok.get_vocab()
    bias = torch.zeros(model.config.vocab_size)
    for piece, i in vocab.items():
        text = tok.convert_tokens_to_string([piece])
        if text.strip() and not text.strip().strip("0123456789,") and i < bias.numel():
            bias[i] = 30.0
    hook = model.lm_head.register_forward_hook(lambda mod, inp, out: out + bias.to(out.dtype))
    try:
        prompt = render_prompt(tok, "Write the voice-over (digits biased).")
        lines = D.generate_lines(model, tok, prompt, n_lines=2, max_words=[10, 10], min_words=[6, 6], language="en")
    finally:
        hook.remove()
    for line in lines:
        runs = re.split(r"\s+", line)
        assert all(len(r) <= D.MAX_RUN_CHARS and sum(c.isdigit() for c in r) <= D.MAX_RUN_DIGITS for r in runs), line
        numeric = [r for r in runs if re.search(r"\d", r) and not re.search(r"[^\W\d_]", r)]
        assert 1 <= len(numeric) <= D.MAX_NUMERIC_RUNS, line  # the bias shows, within the limit
        assert count_words(line) >= 6 and sum(bool(re.search(r"[^\W\d_]", r)) for r in runs) >= 4, line


# ---------------------------------------------------------------------------------------------- vLLM bodies


def _expand_grammar(text: str) -> set[str]:
    """Every string of an acyclic EBNF grammar of the form `name ::= "lit" name | name | "lit"`."""
    rules: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        name, rhs = line.split(" ::= ")
        rules[name] = [alt.split() for alt in rhs.split(" | ")]

    def strings(sym: str) -> set[str]:
        if sym.startswith('"'):
            return {sym.strip('"')}
        out: set[str] = set()
        for alt in rules[sym]:
            out |= {"".join(p) for p in itertools.product(*(strings(s) for s in alt))}
        return out

    return strings("root")


def test_vllm_constraints_accept_valid_answers_and_reject_invalid() -> None:
    n, k = 6, 3
    every = {T.format_indices(c) for c in itertools.combinations(range(1, n + 1), k)}
    assert _expand_grammar(V.selection_grammar(n, k)) == every  # exactly the ascending 3-of-6 answers
    sel = V.selection_regex(12)
    for ok in ("1", "2,5,11", "10,11,12", "12"):
        assert re.fullmatch(sel, ok), ok
    for bad in ("5,2", "2,2", "0", "2,", "13", "02", "2,5,11,11", ""):
        assert not re.fullmatch(sel, bad), bad
    assert sorted(V.permutation_choices(3)) == ["1,2,3", "1,3,2", "2,1,3", "2,3,1", "3,1,2", "3,2,1"]
    assert V.permutation_choices(9, [4, 1]) == ["2,", "3,", "5,", "6,", "7,", "8,", "9,"]
    assert V.permutation_choices(9, [1, 2, 3, 4, 5, 6, 7, 9]) == ["8"]
    audio = V.audio_regex()
    codes = np.array([0, 9, 10, 99, 100, 199, 250, 255])
    assert re.fullmatch(audio, T.audio_block(codes))
    for bad in (
        T.audio_block(codes).replace("<a_7_255>", "<a_7_256>"),
        T.audio_block(codes).replace("<a_1_9>", "<a_2_9>"),
        T.audio_block(codes).replace("<a_0_0>", "<a_0_00>"),
        T.audio_block(codes).replace(T.AUDIO_END, ""),
        T.audio_block(codes[:7].tolist() + [1])[:-1],
    ):
        assert not re.fullmatch(audio, bad), bad
    en = V.lines_regex([2, 1], [4, 2], "en")
    assert re.fullmatch(en, "Fresh juice fast.\nBuy now!")
    for bad in (
        "Juice.\nBuy now!",
        "Fresh juice in thirty seconds.\nBuy",
        "Fresh juice.",
        "Fresh juice.\n\nBuy",
        "Fresh <v_0_1> juice.\nBuy",
        "Fresh juice.\nBuy now!\nToday",
    ):
        assert not re.fullmatch(en, bad), bad
    zh = V.lines_regex([3, 1], [6, 2], "zh")
    assert re.fullmatch(zh, "三十秒出汁。\n买！")
    for bad in ("出汁\n买", "三十秒就能出汁了。\n买", "三十秒出汁。\n买吧！", "三十秒出汁。"):
        assert not re.fullmatch(zh, bad), bad


def test_vllm_request_bodies_carry_the_constraint() -> None:
    c = V.Constraint("regex", V.audio_regex())
    body = V.completion_body(model="autocut-lm", prompt="p", constraint=c, max_tokens=20)
    assert body["structured_outputs"] == {"regex": V.audio_regex()} and body["temperature"] == 0.0
    assert body["model"] == "autocut-lm" and body["max_tokens"] == 20 and body["skip_special_tokens"] is False
    old = V.completion_body(
        model="m",
        prompt="p",
        constraint=V.Constraint("grammar", 'root ::= "1"'),
        max_tokens=4,
        sample=True,
        temperature=0.7,
        seed=3,
        api="guided",
    )
    assert old["guided_grammar"] == 'root ::= "1"' and "structured_outputs" not in old
    assert old["temperature"] == 0.7 and old["seed"] == 3
    with pytest.raises(ConfigError, match="api"):
        V.completion_body(model="m", prompt="p", constraint=c, max_tokens=1, api="nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot choose"):
        V.selection_grammar(3, 4)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or not os.environ.get("AUTOCUT_TEST_VLLM_URL"),
    reason="needs a CUDA GPU and a vLLM server serving the fine-tuned LM (AUTOCUT_TEST_VLLM_URL, AUTOCUT_TEST_LM_DIR)",
)
def test_vllm_server_answers_within_constraints() -> None:  # pragma: no cover - GPU-only
    from autocut.lm.backbone import load_tokenizer

    tok = load_tokenizer(os.environ["AUTOCUT_TEST_LM_DIR"])
    client = V.VllmClient(os.environ["AUTOCUT_TEST_VLLM_URL"], os.environ.get("AUTOCUT_TEST_VLLM_MODEL", "autocut-lm"))
    prompt = render_prompt(
        tok, "Pick the clips.\n" + "\n".join(f"{k}){T.clip_block(np.zeros((1, 8), int))}" for k in range(1, 10))
    )
    sel = client.choose_indices(prompt, n_options=9, count=3, ascending=True, permutation=False)
    assert sel == sorted(set(sel)) and len(sel) == 3 and all(1 <= i <= 9 for i in sel)
    perm = client.choose_indices(prompt, n_options=8, count=None, ascending=False, permutation=True)
    assert sorted(perm) == list(range(1, 9))
    assert client.generate_audio_codes(prompt).shape == (8,)
    lines = client.generate_lines(prompt, n_lines=2, max_words=[6, 4], min_words=[2, 1], language="en")
    assert len(lines) == 2 and all(2 <= count_words(lines[0]) <= 6 for _ in lines)


# ---------------------------------------------------------------------------------------------- planning


def _check_plan(plan: EditPlan, lib: dict, request: PlanRequest, pool_ids: set[int]) -> None:
    """Grounded ids are real, segments lie inside their sources and apart, sentences fit their segments."""
    with Catalog.open(lib["root"], create=False) as cat:
        frames = set(cat.frame_vectors()[0].tolist())
        spans: dict[int, list[tuple[float, float]]] = {}
        for seg in plan.segments:
            src = cat.source(seg.photo_id)
            assert seg.photo_id in pool_ids and seg.source_path == src.path
            assert seg.start_s >= 0 and seg.start_s + seg.duration_s <= src.duration_s + 1e-9
            assert seg.frame_id in frames and split_frame_id(seg.frame_id) == (
                seg.photo_id,
                math.ceil(seg.start_s - 1e-6),
            )
            for a, b in spans.get(seg.photo_id, []):
                assert min(b, seg.start_s + seg.duration_s) - max(a, seg.start_s) <= 1e-6
            spans.setdefault(seg.photo_id, []).append((seg.start_s, seg.start_s + seg.duration_s))
            assert 1.0 <= seg.speech_rate <= MAX_SPEECH_RATE
            speech = estimate_duration_s(seg.sentence, plan.voice, seg.speech_rate)
            assert speech + VOICE_LEAD_S + VOICE_TAIL_S <= seg.duration_s + 1e-6
        if plan.bgm is not None:
            assert plan.bgm.audio_id in set(lib["tracks"].values())
            assert plan.bgm.audio_id not in request.exclude_audio_ids
    assert plan.planner == "token" and plan.duration_s <= request.max_duration_s + 1e-6


def _nearest_bgm(lib: dict, codes: np.ndarray, exclude: list[int]) -> int:
    with Catalog.open(lib["root"], create=False) as cat:
        ids, vecs = cat.bgm_vectors()
    q = l2_normalize(lib["audio"].decode(codes[None, :])[0])
    scores = l2_normalize(vecs) @ q
    scores[np.isin(ids, exclude)] = -np.inf
    return int(ids[int(np.argmax(scores))])


def test_footage_driven_token_plans_end_to_end(lib: dict, lm_dir: Path) -> None:
    excluded = [lib["tracks"]["mid"]]
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], n_variants=2, exclude_audio_ids=excluded, seed=2)
    planner = get_planner("token", model_dir=lm_dir)
    plans = plan_edit(lib["root"], req, planner)
    assert len(plans) == 2 and variant_distinctness(plans).all_distinct
    with Catalog.open(lib["root"], create=False) as cat:
        pool = build_candidates(cat, req.pool)
    for plan in plans:
        _check_plan(plan, lib, req, {lib["ids"][k] for k in "abc"})
        # The model answered each step; its answers are recorded.
        order = [int(i) - 1 for i in plan.notes["order"].split(",")]
        assert sorted(order) == list(range(len(pool)))  # footage-driven: every clip (they fit the budget)
        # The model's lines (clips in pool order) meet the clips' word targets within the planner's tolerance
        # (25 %, at least 1 word). A line the voice cannot say in its clip loses trailing words, and says so.
        answer = plan.notes["lm_script"].split(" / ")
        assert len(answer) == len(pool)
        for line, cand in zip(answer, pool.candidates):
            target = target_words(cand.duration_s, "en")
            assert abs(count_words(line) - target) <= max(1, math.ceil(0.25 * target)), line
        trimmed = {int(k) - 1 for k in re.findall(r"\d+", plan.notes.get("lm_script_trimmed", "").split(" lost")[0])}
        # Grounding may also drop trailing words where the footage it found is a little short (plan notes).
        cut = {int(k) - 1 for k in re.findall(r"\d+", plan.notes.get("grounding_trimmed", "").split(" lost")[0])}
        for pos, (seg, ci) in enumerate(zip(plan.segments, order)):
            if ci in trimmed or pos in cut:
                assert answer[ci].startswith(seg.sentence) and count_words(seg.sentence) >= 1
            else:
                assert seg.sentence == answer[ci]
        # BGM: the generated codes, decoded and searched over the library minus the excluded track.
        codes = T.parse_audio(plan.notes["lm_bgm"])
        assert plan.bgm is not None and plan.bgm.audio_id == _nearest_bgm(lib, codes, excluded)
    assert plans[0].notes["lm_decoding"] == "greedy" and plans[1].notes["lm_decoding"].startswith("sampled")


class _Redirect:
    """The library's real video RQ-VAE, except that decoding always yields the decoding of one target
    frame's codes: the planner's queries then point at that frame whatever clip the LM picked."""

    def __init__(self, tok, target: np.ndarray) -> None:
        self.tok = tok
        self.target = tok.encode(target[None, :])

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self.tok.encode(x)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.tok.decode(np.repeat(self.target, len(codes), axis=0))


def test_segments_follow_the_decoded_embeddings_not_the_pool_index(lib: dict, lm_dir: Path) -> None:
    a = lib["ids"]["a"]
    with Catalog.open(lib["root"], create=False) as cat:
        fids, fvecs = cat.frame_vectors([lib["ids"][k] for k in "abc"])
        pool = build_candidates(cat, lib["pool"])
    target = int(np.flatnonzero(fids == a * 10**4 + 1)[0])  # 1 s into a's moving test pattern
    decoded = lib["video"].decode(lib["video"].encode(fvecs[target][None, :]))[0]
    assert (
        int(fids[int(np.argmax(l2_normalize(fvecs) @ l2_normalize(decoded)))]) == a * 10**4 + 1
    )  # the codes find it back
    planner = TokenPlanner(model_dir=lm_dir, video_tokenizer=_Redirect(lib["video"], fvecs[target]))
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], script=["Look at this."])
    (plan,) = plan_edit(lib["root"], req, planner)
    (seg,) = plan.segments
    chosen = pool.candidates[int(plan.notes["lm_select"]) - 1]
    assert (seg.photo_id, seg.start_s, seg.frame_id) == (a, 1.0, a * 10**4 + 1)
    assert (chosen.photo_id, chosen.start_s) != (seg.photo_id, seg.start_s)  # not where the picked clip starts
    assert seg.duration_s >= min(chosen.duration_s, 8.0) - 1e-6  # by frame: the picked clip's stored length
    _check_plan(plan, lib, req, {lib["ids"][k] for k in "abc"})


def test_by_clip_grounding_uses_the_mean_of_decoded_frames(lib: dict, lm_dir: Path) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], script=["Look at this.", "Get yours today!"], seed=1)
    (plan,) = plan_edit(lib["root"], req, TokenPlanner(model_dir=lm_dir), options=PlanOptions(segment_mode="by_clip"))
    _check_plan(plan, lib, req, {lib["ids"][k] for k in "abc"})
    with Catalog.open(lib["root"], create=False) as cat:
        pool = build_candidates(cat, req.pool)
    # The first clip: nothing is used yet, so it is the pool clip nearest the decoded query (later ones
    # skip footage already used or kept for the clips after them).
    first = pool.candidates[int(plan.notes["order"].split(",")[0]) - 1]
    query = l2_normalize(lib["video"].decode(lib["video"].encode(first.frame_vectors)).mean(axis=0))
    later = {
        c.clip_id
        for i, c in enumerate(pool.candidates)
        if i in {int(k) - 1 for k in plan.notes["order"].split(",")[1:]}
    }
    allowed = [k for k, cid in enumerate(pool.clip_ids) if int(cid) not in later]
    best = allowed[int(np.argmax(l2_normalize(pool.clip_vectors[allowed]) @ query))]
    assert plan.segments[0].clip_id == int(pool.clip_ids[best])
    assert [s.sentence for s in plan.segments] == req.script


def test_outside_pool_grounding_searches_the_library(lib: dict, lm_dir: Path) -> None:
    from autocut.library.indexing import rebuild_indexes

    a, c = lib["ids"]["a"], lib["ids"]["c"]
    rebuild_indexes(lib["root"], ["frames"])
    with Catalog.open(lib["root"], create=False) as cat:
        _fids, fvecs = cat.frame_vectors([a])
    planner = TokenPlanner(model_dir=lm_dir, video_tokenizer=_Redirect(lib["video"], fvecs[1]))
    req = PlanRequest(product=PRODUCT, pool=[PoolItem(photo_id=c)], script=["Look at this."])
    (inside,) = plan_edit(lib["root"], req, planner)
    assert inside.segments[0].photo_id == c and "outside_pool" not in inside.notes
    wide = req.model_copy(update={"allow_outside_pool": True})
    (outside,) = plan_edit(lib["root"], wide, planner)
    assert (outside.segments[0].photo_id, outside.segments[0].start_s) == (a, 1.0)
    assert str(a) in outside.notes["outside_pool"]
    _check_plan(outside, lib, wide, {a, c})


def test_missing_model_is_a_clear_error(lib: dict, tmp_path: Path) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], script=["Look."])
    with pytest.raises(ConfigError, match=r"no trained token LM at .*models/lm/sft/model.*autocut train align"):
        plan_edit(lib["root"], req, "token")
    with pytest.raises(ConfigError, match="bad options for the heuristic planner"):
        get_planner("heuristic", model_dir=tmp_path)
    assert isinstance(get_planner("token", model_dir=tmp_path, temperature=0.5), TokenPlanner)


def test_plan_cli_takes_a_model_dir(
    lib: dict, lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from autocut.cli import main

    req = PlanRequest(product=PRODUCT, pool=lib["pool"], script=["Look at it.", "Buy it today."])
    path = tmp_path / "req.json"
    path.write_text(req.model_dump_json(), encoding="utf-8")
    out = tmp_path / "plan.json"
    assert (
        main(
            [
                "--library",
                str(lib["root"]),
                "plan",
                str(path),
                "-o",
                str(out),
                "--planner",
                "token",
                "--model-dir",
                str(lm_dir),
            ]
        )
        == 0
    )
    plan = EditPlan.model_validate_json(out.read_text(encoding="utf-8"))
    assert [s.sentence for s in plan.segments] == req.script and plan.notes["order"]  # the LM's answers
    _check_plan(plan, lib, req, {lib["ids"][k] for k in "abc"})
    # No --planner: the library has no models/lm/sft/model, so the heuristic plans; LM flags need an LM planner.
    assert main(["--library", str(lib["root"]), "plan", str(path), "-o", str(out)]) == 0
    assert EditPlan.model_validate_json(out.read_text(encoding="utf-8")).planner == "heuristic"
    assert (
        main(
            [
                "--library",
                str(lib["root"]),
                "plan",
                str(path),
                "-o",
                str(out),
                "--planner",
                "random",
                "--model-dir",
                str(lm_dir),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "--library",
                str(lib["root"]),
                "plan",
                str(path),
                "-o",
                str(out),
                "--planner",
                "token",
                "--model-dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "apply to the LM planners" in err and "holds no model (no config.json)" in err


def test_length_free_scripts_drop_the_word_targets(lib: dict, lm_dir: Path) -> None:
    """`length_targets=False`: lines are whatever the LM writes up to the safety cap; the untrained model
    overshoots the clips' targets, which the bounded planner never does."""
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], seed=3)
    bounded, free = (
        plan_edit(lib["root"], req, get_planner("token", model_dir=lm_dir, length_targets=flag))[0]
        for flag in (True, False)
    )
    with Catalog.open(lib["root"], create=False) as cat:
        pool = build_candidates(cat, req.pool)
    over = 0
    for plan in (bounded, free):
        lines = plan.notes["lm_script"].split(" / ")
        clips = [int(i) - 1 for i in plan.notes["lm_script_clips"].split(",")]
        assert len(lines) == len(clips)
        for line, ci in zip(lines, clips):
            target = target_words(pool.candidates[ci].duration_s, "en")
            words = count_words(line)
            assert 1 <= words <= FREE_LINE_MAX_WORDS[0]
            if plan is bounded:
                assert abs(words - target) <= max(1, math.ceil(0.25 * target)), line
            else:
                over += words > target + max(1, math.ceil(0.25 * target))
        _check_plan(plan, lib, req, {lib["ids"][k] for k in "abc"})  # still a renderable plan
    assert free.notes["lm_length_targets"] == "no" and bounded.notes["lm_length_targets"] == "yes"
    assert over >= 1
