"""The compact planner: its answer format, the pruned vocabulary, the codebook-initialised code rows, the
trainer, constrained decoding from random weights on a real library, and the server's `auto` gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autocut.errors import PlanError
from autocut.library.catalog import Catalog
from autocut.lm import tokens as T
from autocut.lm.backbone import default_qwen3_tokenizer_dir
from autocut.lm.compact import (
    DURATION_TOKENS,
    MATCH_TOKENS,
    Row,
    format_answer,
    match_buckets,
    parse_answer,
    user_message,
)
from autocut.lm.compact_data import AdRec, ExampleSampler, ReelClip, WorldData
from autocut.lm.compact_train import CARD_NAME, CompactTrainConfig, encode_example, read_card, train_compact
from autocut.lm.prompts import ProductView
from autocut.lm.small import (
    SmallConfig,
    build_small_lm,
    check_pruned,
    extend_for_compact,
    init_code_rows,
    prune_tokenizer,
)
from autocut.planning import plan_edit
from autocut.planning.candidates import build_candidates
from autocut.planning.planners import get_planner
from autocut.planning.planners.base import auto_planner
from autocut.types import PlanRequest, ProductInfo
from test_planner_token import _train_rqvae, lib  # noqa: F401  (module fixture reused)

TOKENIZER_DIR = default_qwen3_tokenizer_dir()
pytestmark = pytest.mark.skipif(
    not (TOKENIZER_DIR / "tokenizer.json").exists(),
    reason="Qwen3 tokenizer not fetched (run scripts/fetch_qwen3_tokenizer.sh)",
)
PRODUCT = ProductInfo(
    name="FreshCo Blender Bottle",
    brand="FreshCo",
    category="kitchen",
    selling_points=["thirty-second results", "a leak-proof lid"],
)
TEXTS = [
    "FreshCo Blender Bottle",
    "FreshCo",
    "thirty-second results",
    "a leak-proof lid",
    "Tired of lumpy shakes?",
    "Grab yours today.",
    "这就是布噜奶瓶。",
    "现在下单只要¥89！",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _codes(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.integers(0, 256, size=8) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize("scenario", ["script", "footage"])
def test_answer_format_round_trips(scenario: str) -> None:
    clips = _codes(np.random.default_rng(0), 6)
    rows = [Row(4, "Tired of lumpy shakes?"), Row(0, "这就是布噜奶瓶。"), Row(5, "Grab yours today.")]
    audio = np.arange(8) * 3
    text = format_answer(scenario, rows, clips, audio)
    got, got_audio = parse_answer(scenario, text, clips)
    assert got == rows and np.array_equal(got_audio, audio)
    # One row per line break; the clip is named by its 8 codes, before (footage) or after (script) the line.
    first = text.split("\n")[0]
    codes = "".join(T.code_token("video", lv, int(c)) for lv, c in enumerate(clips[4]))
    assert first == ("Tired of lumpy shakes?" + codes if scenario == "script" else codes + "Tired of lumpy shakes?")


def test_answer_format_rejects_what_it_cannot_ground() -> None:
    clips = _codes(np.random.default_rng(1), 3)
    good = format_answer("script", [Row(1, "Hello.")], clips, None)
    other = _codes(np.random.default_rng(2), 1)[0]
    with pytest.raises(T.TokenFormatError, match="no candidate"):
        parse_answer("script", good, [clips[0], other, clips[2]])
    with pytest.raises(T.TokenFormatError, match="8 codes"):
        parse_answer("script", "Hello.<v_0_1><v_1_2>\n", clips)
    with pytest.raises(T.TokenFormatError, match="line breaks"):
        format_answer("script", [Row(0, "two\nlines")], clips, None)
    with pytest.raises(T.TokenFormatError, match="end with"):
        parse_answer("script", good.replace("\n", "tail\n"), clips)


def test_prompt_lists_each_candidate_as_eight_codes() -> None:
    clips = _codes(np.random.default_rng(3), 27)
    view = ProductView("FreshCo Blender Bottle", "FreshCo", ["a leak-proof lid"])
    text = user_message("script", "en", view, clips, photo_codes=clips[0])
    assert text.count("<v_0_") == 28 and text.count(T.FRAME_START) == 1


def test_match_buckets_rank_candidates_by_photo_similarity() -> None:
    photo = np.array([1.0, 0.0, 0.0])
    # cosines to the photo: 0.0, 1.0, 0.6, -1.0, 0.8 -> ranks 3, 0, 2, 4, 1
    clips = np.array([[0, 1, 0], [2, 0, 0], [0.6, 0.8, 0], [-1, 0, 0], [0.8, 0.6, 0]], np.float32)
    assert match_buckets(photo, clips, (1, 2, 4)).tolist() == [2, 0, 2, 3, 1]
    assert match_buckets(photo, clips, (2,)).tolist() == [1, 0, 1, 1, 0]
    for bad in ((0, 2), (4, 2), (1, 2, 3, 4, 5, 6, 7, 8)):
        with pytest.raises(T.TokenFormatError, match="match edges"):
            match_buckets(photo, clips, bad)


@pytest.mark.parametrize("scenario", ["script", "footage"])
def test_answer_with_match_tokens_round_trips_and_grounds_by_bucket(scenario: str) -> None:
    clips = _codes(np.random.default_rng(4), 5)
    clips[3] = clips[1].copy()  # same codes, told apart only by their match bucket
    match = [0, 1, 2, 3, 4]
    rows = [Row(3, "Tired of lumpy shakes?"), Row(0, "Grab yours today.")]
    text = format_answer(scenario, rows, clips, None, match)
    assert text.count("<m_") == 2 and "<m_3>" in text
    assert parse_answer(scenario, text, clips, match)[0] == rows
    view = ProductView("FreshCo Blender Bottle", "FreshCo", ["a leak-proof lid"])
    prompt = user_message(scenario, "en", view, clips, photo_codes=clips[0], match=match)
    assert prompt.count("<m_") == 5 and "<m_4><v_0_" in prompt
    with pytest.raises(T.TokenFormatError, match="match token"):
        parse_answer(scenario, text, clips)  # an answer with match tokens needs the buckets to ground
    with pytest.raises(T.TokenFormatError, match="no candidate"):
        parse_answer(scenario, text, clips, [4, 3, 2, 1, 0])
    with pytest.raises(T.TokenFormatError, match="photo"):
        user_message(scenario, "en", view, clips, match=match)


def test_footage_rows_carry_their_clip_duration_as_a_given_token() -> None:
    clips = _codes(np.random.default_rng(5), 3)
    rows = [Row(2, "Pour, shake, done."), Row(0, "Grab yours today.")]
    text = format_answer("footage", rows, clips, None, durations=[0.2, 9.0, 3.26])
    assert "<d_7>Pour, shake, done." in text and "<d_1>Grab yours today." in text  # half seconds, >= 1
    assert parse_answer("footage", text, clips)[0] == rows
    with pytest.raises(T.TokenFormatError, match="duration token"):
        parse_answer("footage", text.replace("Pour,", "Pour<d_3>,"), clips)
    with pytest.raises(T.TokenFormatError, match="line breaks or AutoCut tokens"):
        format_answer("footage", [Row(0, "a <d_3> line")], clips, None)


# ---------------------------------------------------------------------------------------------- backbone


def test_pruned_tokenizer_keeps_corpus_splits_and_encodes_any_text(tmp_path: Path) -> None:
    tok = prune_tokenizer(TOKENIZER_DIR, TEXTS, tmp_path / "tok")
    check_pruned(TOKENIZER_DIR, tok, TEXTS)  # same pieces as the full Qwen3 tokenizer on the corpus
    assert len(tok) < 1000
    unseen = "Zebra-striped kettle, 42 °C! 完全没见过的句子"
    assert tok.decode(tok.encode(unseen, add_special_tokens=False)) == unseen  # byte fallback, lossless
    n = extend_for_compact(tok)
    assert n == len(T.added_tokens()) + len(MATCH_TOKENS) + len(DURATION_TOKENS) and extend_for_compact(tok) == 0
    assert tok.convert_tokens_to_ids("<v_7_255>") != tok.unk_token_id


def test_code_rows_keep_the_codebook_geometry() -> None:
    tok = prune_tokenizer(TOKENIZER_DIR, TEXTS)
    extend_for_compact(tok)
    model = build_small_lm(
        tok,
        SmallConfig(
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            intermediate_size=64,
        ),
    )
    rng = np.random.default_rng(0)
    cb = rng.normal(size=(8, 256, 16)).astype(np.float32)
    cb /= np.linalg.norm(cb, axis=-1, keepdims=True)
    init_code_rows(model, tok, {"video": cb, "audio": cb[:, :, :8]})
    emb = model.get_input_embeddings().weight.detach().numpy()
    ids = tok.convert_tokens_to_ids([f"<v_3_{c}>" for c in range(256)])
    rows = emb[ids] / np.linalg.norm(emb[ids], axis=1, keepdims=True)
    # Cosines between code rows equal cosines between their codebook vectors (an orthonormal projection).
    assert np.allclose(rows @ rows.T, cb[3] @ cb[3].T, atol=1e-4)


def _world(rng: np.random.Generator) -> WorldData:
    roles = ["hook", "showcase", "feature", "usage", "cta"]
    reels, views, photos, cats, ads = {}, {}, {}, {}, []
    for p in range(4):
        pid = f"p{p}"
        reels[pid] = [ReelClip(rng.integers(0, 256, 8), f"{pid}-{r}", r, "ad", None, 5.0) for r in roles] + [
            ReelClip(rng.integers(0, 256, 8), f"{pid}-rival", "cta", "distractor", None, 5.0)
        ]
        for lang in ("en", "zh"):
            views[(pid, lang)] = ProductView(f"Product {p}", "FreshCo", ["a leak-proof lid"])
        photos[pid] = rng.integers(0, 256, 8)
        cats[pid] = "kitchen"
        ads.append(
            AdRec(
                f"ad{p}",
                pid,
                "en",
                tuple(f"{pid}-{r}" for r in roles),
                tuple(roles),
                (None,) * 5,
                tuple(f"Line about {r}." for r in roles),
                rng.integers(0, 256, 8),
            )
        )
    return WorldData("train", reels, views, photos, cats, ads)


def test_examples_mark_role_equivalent_targets_and_only_decisions_count() -> None:
    data = _world(np.random.default_rng(0))
    tok = prune_tokenizer(TOKENIZER_DIR, ExampleSampler(data).corpus_texts() + TEXTS)
    extend_for_compact(tok)
    sampler = ExampleSampler(data, seed=1)
    ex = sampler.draw("script")
    assert len(ex.clip_codes) in (12, 18) and len(ex.rows) == 5
    enc = encode_example(tok, ex)
    # Script-driven: 8 code decisions per row + the BGM start and 8 audio codes; the user's lines are no target.
    assert len(enc.pos) == 5 * 8 + 9
    line_ids = set(tok.encode("Line about hook.", add_special_tokens=False))
    assert not any(set(t) & line_ids for t in enc.targets)
    foot_ex = sampler.draw("footage")
    foot = encode_example(tok, foot_ex)
    assert len(foot.pos) > 5 * 8 + 9  # the footage-driven lines are the model's own: targets
    # With duration tokens, each footage row feeds its clip's duration after the codes, as a given.
    timed = encode_example(tok, foot_ex, durations=True)
    d5 = tok.convert_tokens_to_ids("<d_10>")  # every clip of the toy world lasts 5 s
    assert timed.ids.count(d5) == 5 and len(timed.pos) == len(foot.pos)
    assert not any(d5 in t for t in timed.targets)
    # With segment durations, the duration after each footage row's codes is a decision: the reference
    # segment's length (at most the clip's).
    from dataclasses import replace as dc_replace

    data.ads = [dc_replace(a, seg_durations=(2.0, 3.0, 9.0, 2.5, 1.0)) for a in data.ads]
    cut = ExampleSampler(data, seed=1).draw("footage")
    decided = encode_example(tok, cut, segment_durations=True)
    want = [tok.convert_tokens_to_ids(f"<d_{k}>") for k in (4, 6, 10, 5, 2)]  # 9 s capped at the 5 s clip
    assert [t[0] for t in decided.targets if len(t) == 1 and t[0] in set(want)] == want
    assert len(decided.pos) == len(encode_example(tok, cut).pos) + 5


def test_match_tokens_are_decisions_and_narrow_the_code_targets() -> None:
    rng = np.random.default_rng(0)
    data = _world(rng)
    dim = 16
    photo_vecs = {}
    for pid, reel in data.reels.items():
        base = rng.normal(size=dim).astype(np.float32)
        photo_vecs[pid] = base[None]
        # own clips point near the photo, the rival's far from it
        data.reels[pid] = [
            ReelClip(
                c.codes,
                c.shot_id,
                c.role,
                c.kind,
                None,
                5.0,
                vectors=(base if c.kind == "ad" else -base)[None] + 0.1 * rng.normal(size=(1, dim)).astype(np.float32),
            )
            for c in reel
        ]
    data.photo_vectors = photo_vecs
    tok = prune_tokenizer(TOKENIZER_DIR, ExampleSampler(data).corpus_texts() + TEXTS)
    extend_for_compact(tok)
    sampler = ExampleSampler(data, seed=1, photo_dropout=0.0, match_edges=(2, 4, 8))
    ex = sampler.draw("script")
    assert ex.match is not None and ex.photo_codes is not None
    enc = encode_example(tok, ex)
    assert len(enc.pos) == 5 * 9 + 9  # a match token then 8 codes per row, then the BGM
    match_ids = tok.convert_tokens_to_ids(list(MATCH_TOKENS))
    first_targets = [t for t in enc.targets if set(t) <= set(match_ids)]
    # The product's five ad clips lie nearest its photo (ranks 0-4: buckets 0-2), and each row's target is
    # the bucket of its right clip.
    assert len(first_targets) == 5 and all(set(t) <= set(match_ids[:3]) for t in first_targets)
    assert sorted(int(b) for b in ex.match)[:5] == [0, 0, 1, 1, 2]
    # Without a photo there are no match tokens anywhere.
    off = ExampleSampler(data, seed=1, photo_dropout=1.0, match_edges=(2, 4, 8)).draw("script")
    assert off.match is None and "<m_" not in tok.decode(encode_example(tok, off).ids)
    # With a learned identity map for a product (`match_metric` "learned"), its buckets rank through the map
    # (footage-driven: the pool is the product's reel in reel order).
    w = rng.normal(size=(dim, dim)).astype(np.float32)
    data.identity_maps = dict.fromkeys(data.reels, w)
    ad = data.ads[0]
    reel = np.stack([c.vectors[0] for c in data.reels[ad.product_id]])
    photo = photo_vecs[ad.product_id][0]
    mapped = ExampleSampler(data, seed=1, photo_dropout=0.0, match_edges=(2, 4, 8)).example(ad, "footage")
    assert mapped.match is not None
    np.testing.assert_array_equal(mapped.match, match_buckets(photo @ w.T, reel @ w.T, (2, 4, 8)))
    assert not np.array_equal(mapped.match, match_buckets(photo, reel, (2, 4, 8)))


def test_train_compact_writes_a_loadable_model_with_its_card(tmp_path: Path) -> None:
    data = _world(np.random.default_rng(0))
    rng = np.random.default_rng(0)
    cb = rng.normal(size=(8, 256, 16)).astype(np.float32)
    out = tmp_path / "model"
    cfg = CompactTrainConfig(backbone="qwen3-tiny", budget_s=60, max_steps=3, batch_size=2, log_every=1)
    card = train_compact(
        data, out, codebooks={"video": cb, "audio": cb}, tokenizer_src=TOKENIZER_DIR, config=cfg, val_data=data
    )
    assert card["train"]["steps"] == 3 and card["train"]["examples"] == 6
    assert read_card(out)["backbone"] == "qwen3-tiny" and (out / "config.json").exists()
    from autocut.lm.backbone import load_causal_lm

    model, tok = load_causal_lm(out)
    assert model.config.tie_word_embeddings and tok.convert_tokens_to_ids("<a_7_255>") < model.config.vocab_size


# ---------------------------------------------------------------------------------------------- planning


@pytest.fixture(scope="module")
def compact_dir(lib, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """An untrained (random-weight) compact planner over the test library's RQ-VAEs."""
    out = tmp_path_factory.mktemp("compact") / "model"
    tok = prune_tokenizer(TOKENIZER_DIR, TEXTS)
    extend_for_compact(tok)
    model = build_small_lm(
        tok,
        SmallConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            intermediate_size=64,
        ),
    )
    init_code_rows(model, tok, {"video": lib["video"].codebooks(), "audio": lib["audio"].codebooks()})
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / CARD_NAME).write_text(json.dumps({"format": "autocut-compact-planner", "version": 1, "heldout": None}))
    return out


def test_random_weights_still_give_valid_script_driven_plans(lib, compact_dir: Path) -> None:  # noqa: F811
    script = ["Meet the FreshCo bottle.", "It blends in seconds.", "Grab yours today."]
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], script=script, n_variants=2, seed=1)
    plans = plan_edit(lib["root"], req, get_planner("compact", model_dir=compact_dir))
    assert len(plans) == 2
    with Catalog.open(lib["root"], create=False) as cat:
        pool = build_candidates(cat, req.pool)
    for plan in plans:
        assert plan.planner == "compact" and [s.sentence for s in plan.segments] == script
        rows = [int(k) for k in plan.notes["lm_rows"].split(", ")]
        assert len(set(rows)) == 3  # one distinct clip per line
        assert plan.bgm is not None
        # Each segment stays in its chosen clip's source, or the notes say which moved.
        moved = plan.notes.get("grounding_moved", "")
        for k, (seg, row) in enumerate(zip(plan.segments, rows), start=1):
            assert seg.photo_id == pool.candidates[row - 1].photo_id or str(k) in moved
    assert plans[0].notes["lm_decoding"] == "greedy" and plans[1].notes["lm_decoding"] == "sampled"


def test_random_weights_still_give_valid_footage_driven_plans(lib, compact_dir: Path) -> None:  # noqa: F811
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], n_variants=1, seed=0, max_duration_s=30)
    plan = plan_edit(lib["root"], req, get_planner("compact", model_dir=compact_dir, min_clips=2))[0]
    rows = [int(k) for k in plan.notes["lm_rows"].split(", ")]
    assert len(rows) == len(set(rows)) >= 2 and len(plan.segments) == len(rows)
    assert all(s.sentence.strip() for s in plan.segments) and plan.duration_s <= 30 + 1e-6
    # An English request gets English lines (the vocabulary also holds Chinese pieces).
    for line in plan.notes["lm_script"].split(" / "):
        assert not any("\u3400" <= ch <= "\u9fff" or ch == "\ufffd" for ch in line), line


def test_a_card_with_match_buckets_plans_with_the_product_photo(
    lib,  # noqa: F811
    compact_dir: Path,
    tmp_path: Path,
) -> None:
    import shutil

    from PIL import Image

    model = tmp_path / "model"
    shutil.copytree(compact_dir, model)
    card = json.loads((model / CARD_NAME).read_text())
    card["train"] = {"config": {"levels": 4, "match_edges": [1, 2, 4], "segment_durations": True}}
    (model / CARD_NAME).write_text(json.dumps(card))
    photo = lib["root"] / "product-red.png"
    Image.new("RGB", (192, 144), (255, 0, 0)).save(photo)
    script = ["Meet the FreshCo bottle.", "It blends in seconds."]
    product = PRODUCT.model_copy(update={"image_path": str(photo)})
    req = PlanRequest(product=product, pool=lib["pool"], script=script, seed=0)
    plan = plan_edit(lib["root"], req, get_planner("compact", model_dir=model))[0]
    buckets = [int(b) for b in plan.notes["lm_match_buckets"].split(", ")]
    assert len(buckets) == 2 and all(0 <= b <= 3 for b in buckets)
    # Footage-driven too; without a photo the same model plans with no match tokens at all.
    foot = PlanRequest(product=product, pool=lib["pool"], seed=0, max_duration_s=20)
    fplan = plan_edit(lib["root"], foot, get_planner("compact", model_dir=model, min_clips=2))[0]
    assert "lm_match_buckets" in fplan.notes
    # The model decided each segment's length (1 s .. its clip, in half seconds); a segment runs that long
    # unless its line needs more.
    chosen = [float(x) for x in fplan.notes["lm_durations"].split(", ")]
    assert len(chosen) == len(fplan.segments) and all(c >= 1.0 and (2 * c).is_integer() for c in chosen)
    bare = PlanRequest(product=PRODUCT, pool=lib["pool"], script=script, seed=0)
    assert "lm_match_buckets" not in plan_edit(lib["root"], bare, get_planner("compact", model_dir=model))[0].notes
    # A model whose match buckets rank through the learned identity map needs the library's map, and plans
    # with it (here a map that keeps only the first dimension: the buckets change, the plan stays valid).
    from autocut.planning.identity import IdentityModel, identity_path

    card["train"]["config"]["match_metric"] = "learned"
    (model / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(Exception, match="autocut train identity"):
        plan_edit(lib["root"], req, get_planner("compact", model_dir=model))
    with Catalog.open(lib["root"], create=False) as cat:
        dim, pca_version = len(build_candidates(cat, req.pool).candidates[0].vector), cat.pca_version
    w = np.zeros((dim, dim), np.float32)
    w[0, 0] = 1.0
    path = IdentityModel(w, pca_version).save(identity_path(lib["root"]))
    try:
        learned = plan_edit(lib["root"], req, get_planner("compact", model_dir=model))[0]
    finally:
        path.unlink()
    assert len([int(b) for b in learned.notes["lm_match_buckets"].split(", ")]) == 2


def test_identity_prior_steers_the_lm_towards_the_photo(lib, compact_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """A strong identity prior (raw cosine) over random LM weights picks the clips most like the photo; the
    notes say which prior ran. Weight 0 is the pure LM (no prior in the notes)."""
    from PIL import Image

    from autocut.planning.planners.heuristic import embed_product_image

    photo = tmp_path / "product-blue.png"
    Image.new("RGB", (192, 144), (20, 40, 220)).save(photo)
    product = PRODUCT.model_copy(update={"image_path": str(photo)})
    script = ["Meet it.", "Love it."]
    req = PlanRequest(product=product, pool=lib["pool"], script=script, seed=0)
    planner = get_planner("compact", model_dir=compact_dir, identity_weight=100.0, identity="cosine")
    plan = plan_edit(lib["root"], req, planner)[0]
    assert plan.notes["lm_identity_prior"] == "cosine identity x 100"
    with Catalog.open(lib["root"], create=False) as cat:
        pool = build_candidates(cat, req.pool)
        vec = embed_product_image(str(photo), cat)
    sims = np.stack([c.vector for c in pool.candidates]) @ vec
    rows = {int(k) - 1 for k in plan.notes["lm_rows"].split(", ")}
    assert rows == set(np.argsort(-sims)[:2].tolist())
    pure = plan_edit(lib["root"], req, get_planner("compact", model_dir=compact_dir))[0]
    assert pure.notes["lm_identity_prior"] == "none"
    with pytest.raises(Exception, match="identity_weight"):
        get_planner("compact", model_dir=compact_dir, identity_weight=-1)


def test_a_line_no_clip_can_voice_is_named(lib, compact_dir: Path) -> None:  # noqa: F811
    long_line = " ".join(["unbelievably"] * 40)
    req = PlanRequest(product=PRODUCT, pool=lib["pool"], script=["Short.", long_line], seed=0)
    with pytest.raises(PlanError, match="script line 2"):
        plan_edit(lib["root"], req, get_planner("compact", model_dir=compact_dir))


def _card(tmp_path: Path, heldout: dict | None) -> Path:
    root = tmp_path / "lib"
    model = root / "models" / "lm" / "compact" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / CARD_NAME).write_text(json.dumps({"format": "autocut-compact-planner", "heldout": heldout}))
    return root


def _check(lo: float, hi: float, worse_other: bool = False) -> dict:
    d = {
        "diff": (lo + hi) / 2,
        "lo": lo,
        "hi": hi,
        "verdict": "better" if lo > 0 else ("worse" if hi < 0 else "unresolved"),
    }
    other = {"diff": -0.2, "lo": -0.3, "hi": -0.1, "verdict": "worse"} if worse_other else None
    return {"metrics": {"precision_role": {"diff": d}, "bgm_mood": {"diff": other}}, "reading": "r"}


def test_auto_gate_follows_the_model_card(tmp_path: Path) -> None:
    assert auto_planner(tmp_path / "empty")[0] == "heuristic"
    assert auto_planner(_card(tmp_path / "a", None))[0] == "heuristic"
    assert auto_planner(_card(tmp_path / "b", _check(-0.1, 0.05)))[0] == "heuristic"
    won = auto_planner(_card(tmp_path / "c", _check(0.1, 0.3)))
    assert won[0] == "compact" and "beat the heuristic" in won[1]
    assert auto_planner(_card(tmp_path / "d", _check(0.1, 0.3, worse_other=True)))[0] == "heuristic"
