"""Planning on a tiny real library: generated videos and tones ingested with the real encoders.

Checks the constraints every plan must meet (distinct clips, exact counts, permutations), that
grounded ids are real and segments lie inside their sources, that sentences fit their segments
the way the renderer checks it, and the baselines' documented behaviour.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from autocut.errors import PlanError
from autocut.evaluation.metrics import wcd_per_clip
from autocut.evaluation.variants import variant_distinctness
from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord, RefSegment
from autocut.library.ids import split_frame_id
from autocut.planning import PlanOptions, plan_edit
from autocut.planning.candidates import CandidateConfig, build_candidates
from autocut.planning.grounding import BgmGrounder, LibraryVideoGrounder, PoolGrounder
from autocut.planning.planners import Decision, HeuristicPlanner, PlanningTask, check_decision
from autocut.planning.voice_fit import MAX_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S
from autocut.speech.tts import estimate_duration_s
from autocut.types import EditPlan, PlanRequest, PoolItem, ProductInfo
from media_factory import ffmpeg, make_audio, make_shots, make_video


@dataclass
class Lib:
    root: Path
    media: Path
    a: int  # testsrc2 3 s | red 3 s | mandelbrot 3 s
    b: int  # smptebars 4 s | blue 3 s
    c: int  # rgbtestsrc 5 s (one clip)
    d: int  # smptebars | green | yuvtestsrc, 3 s each: only used by reference edits
    track_low: int  # 440 Hz tone
    track_high: int  # 1500 Hz tone

    @property
    def pool(self) -> list[PoolItem]:
        return [PoolItem(photo_id=self.a), PoolItem(photo_id=self.b), PoolItem(photo_id=self.c)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, ingest_media) -> Lib:
    base = tmp_path_factory.mktemp("planlib")
    media = base / "media"
    media.mkdir()
    size = "192x144"
    make_shots(media / "a.mp4", [("testsrc2", 3), ("red", 3), ("mandelbrot", 3)], size=size)
    make_shots(media / "b.mp4", [("smptebars", 4), ("blue", 3)], size=size)
    make_video(media / "c.mp4", duration_s=5, src="rgbtestsrc", size=size)
    make_shots(media / "d.mp4", [("smptebars", 3), ("green", 3), ("yuvtestsrc", 3)], size=size)
    make_audio(media / "low.wav", duration_s=10.5, freq=440)
    make_audio(media / "high.wav", duration_s=10.5, freq=1500)
    ffmpeg("-ss", "7.5", "-i", str(media / "a.mp4"), "-frames:v", "1", str(media / "product.png"))
    root = base / "library"
    ids, tracks = ingest_media(root, [media / f"{n}.mp4" for n in "abcd"], [media / "low.wav", media / "high.wav"])
    with Catalog.open(root, writable=True) as cat:
        # Training-split reference edits: ads open on the colour bars; kitchen ads use the high tone,
        # beauty ads the low one (what the heuristic may learn from).
        cat.upsert_product(ProductRecord("k1", "Kettle", category="kitchen", split="train"))
        cat.upsert_product(ProductRecord("b1", "Serum", category="beauty", split="train"))
        d = ids["d"]
        segs = [RefSegment(d, 0.0, 3.0, "Hook."), RefSegment(d, 3.0, 3.0, "Middle."), RefSegment(d, 6.0, 3.0, "End!")]
        for k, (pid, track) in enumerate([("k1", "high"), ("k1", "high"), ("b1", "low")]):
            cat.add_reference_edit(RefEditRecord(f"e{k}", pid, "en", segs, audio_id=tracks[track], split="train"))
    return Lib(root, media, ids["a"], ids["b"], ids["c"], ids["d"], tracks["low"], tracks["high"])


PRODUCT = ProductInfo(
    name="FreshCo Blender Bottle",
    brand="FreshCo",
    category="kitchen",
    selling_points=["thirty-second results", "a leak-proof lid"],
)
SCRIPT = ["Tired of slow mornings?", "Meet the FreshCo Blender Bottle.", "Get yours today!"]


def assert_valid(plan: EditPlan, lib: Lib, request: PlanRequest) -> None:
    """Every constraint a plan must meet, checked against the catalog."""
    pool_ids = {lib.a, lib.b, lib.c}
    extra = VOICE_LEAD_S + VOICE_TAIL_S
    with Catalog.open(lib.root, create=False) as cat:
        all_frames = set(cat.frame_vectors()[0].tolist())
        tracks = {t.audio_id for t in cat.bgm_tracks()}
        spans: dict[int, list[tuple[float, float]]] = {}
        for k, seg in enumerate(plan.segments):
            src = cat.source(seg.photo_id)
            assert seg.photo_id in pool_ids
            assert seg.source_path == src.path and Path(seg.source_path).is_absolute()
            assert seg.start_s >= 0 and seg.duration_s > 0
            assert seg.start_s + seg.duration_s <= src.duration_s + 1e-9, (seg, src.duration_s)
            # Grounded ids are real rows and agree with the cut.
            assert seg.frame_id in all_frames
            assert split_frame_id(seg.frame_id) == (seg.photo_id, math.ceil(seg.start_s - 1e-6))
            if seg.clip_id is not None:
                clip = next(c for c in cat.clips(seg.photo_id) if c.clip_id == seg.clip_id)
                assert clip.start_s - 1e-6 <= seg.start_s < clip.end_s
                if seg.mode == "by_clip":
                    assert seg.start_s + seg.duration_s >= clip.end_s - 1e-3  # the whole clip, maybe more
            # No footage used twice.
            for a, b in spans.get(seg.photo_id, []):
                assert min(b, seg.start_s + seg.duration_s) - max(a, seg.start_s) <= 1e-6, f"segment {k} overlaps"
            spans.setdefault(seg.photo_id, []).append((seg.start_s, seg.start_s + seg.duration_s))
            # The sentence fits its segment at the planned rate, within the renderer's +-15 %.
            assert 1.0 <= seg.speech_rate <= MAX_SPEECH_RATE
            speech = estimate_duration_s(seg.sentence, plan.voice, seg.speech_rate)
            assert speech + extra <= seg.duration_s + 1e-6, (seg.sentence, speech, seg.duration_s)
        if plan.bgm is not None:
            assert plan.bgm.audio_id in tracks and plan.bgm.audio_id not in request.exclude_audio_ids
    assert plan.duration_s <= request.max_duration_s + 1e-6
    assert plan.language == request.language and plan.voice.language == request.language
    if request.script:
        assert [s.sentence for s in plan.segments] == [s.strip() for s in request.script]
    assert len({s.photo_id * 10**4 + s.start_s for s in plan.segments}) == len(plan.segments)
    # The plan survives its own JSON round trip (what the API returns and the renderer reads).
    assert EditPlan.model_validate_json(plan.model_dump_json()) == plan


# --------------------------------------------------------------------------- scenarios


def test_footage_driven_uses_every_clip_with_fitted_script(lib: Lib) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib.pool, n_variants=2)
    plans = plan_edit(lib.root, req, "heuristic")
    assert len(plans) == 2
    with Catalog.open(lib.root, create=False) as cat:
        n_clips = sum(len(cat.clips(p)) for p in (lib.a, lib.b, lib.c))
    for plan in plans:
        assert_valid(plan, lib, req)
        assert plan.scenario == "footage" and plan.planner == "heuristic"
        assert len(plan.segments) == n_clips  # the user curated the pool: every clip is used
        assert plan.notes["selection"] == ",".join(str(i + 1) for i in range(n_clips))
        assert sorted(int(i) for i in plan.notes["order"].split(",")) == list(range(1, n_clips + 1))
        # Lines follow the 2.5 words/s target closely (the voice fit may cost a word or two).
        gaps = wcd_per_clip([s.sentence for s in plan.segments], [s.duration_s for s in plan.segments], "en")
        assert max(gaps) <= 3 and float(np.mean(gaps)) <= 1.5, gaps


@pytest.mark.parametrize(
    "planner, mode",
    [("heuristic", "by_frame"), ("heuristic", "by_clip"), ("random", "by_frame"), ("random", "by_clip")],
)
def test_script_driven_selects_one_distinct_clip_per_sentence(lib: Lib, planner: str, mode: str) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib.pool, script=SCRIPT, seed=3)
    (plan,) = plan_edit(lib.root, req, planner, options=PlanOptions(segment_mode=mode))
    assert_valid(plan, lib, req)
    assert plan.scenario == "script" and len(plan.segments) == len(SCRIPT)
    assert all(s.mode == mode for s in plan.segments)
    selection = [int(i) for i in plan.notes["selection"].split(",")]
    assert selection == sorted(set(selection)) and len(selection) == len(SCRIPT)
    assert sorted(int(i) for i in plan.notes["order"].split(",")) == selection


def test_chinese_footage_plan_and_renderer_accepts_it(lib: Lib, tmp_path: Path) -> None:
    from autocut.render import prepare

    product = ProductInfo(
        name="鲜享榨汁杯", brand="鲜享", category="kitchen", selling_points=["三十秒出汁", "防漏密封盖"]
    )
    req = PlanRequest(product=product, pool=lib.pool[:2], language="zh")
    (plan,) = plan_edit(lib.root, req, "random", options=PlanOptions(segment_mode="by_clip"))
    assert_valid(plan, lib, req)
    assert plan.voice.language == "zh"  # the default voice follows the request's language
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in s.sentence) for s in plan.segments)
    # The renderer's own pre-flight check (sources, reuse, voice fit within +-15 %) passes.
    prepared = prepare(plan, work_dir=tmp_path)
    assert len(prepared.segments) == len(plan.segments)


def test_variants_are_distinct_and_reported(lib: Lib) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib.pool, script=SCRIPT, n_variants=4, seed=1)
    plans = plan_edit(lib.root, req, "heuristic")
    assert len(plans) == 4
    for p in plans:
        assert_valid(p, lib, req)
    report = variant_distinctness(plans)
    assert report.all_distinct and report.n_plans == 4
    # A fixed script: variants differ in clips or order, never in text.
    assert report.script_distance == 0.0
    assert report.selection_distance > 0 or report.order_distance > 0
    assert variant_distinctness(plans[:1]).all_distinct


# --------------------------------------------------------------------------- heuristic baseline


def test_heuristic_selects_the_clip_nearest_the_product_image(lib: Lib) -> None:
    product = PRODUCT.model_copy(update={"image_path": str(lib.media / "product.png")})  # a mandelbrot frame
    req = PlanRequest(product=product, pool=lib.pool, script=["Look at this."])
    (plan,) = plan_edit(lib.root, req, "heuristic")
    assert plan.notes["selection_anchor"] == "product image"
    (seg,) = plan.segments
    assert (seg.photo_id, seg.start_s) == (lib.a, 6.0)  # the mandelbrot shot
    missing = product.model_copy(update={"image_path": str(lib.media / "nope.png")})
    with pytest.raises(PlanError, match=r"nope\.png"):
        plan_edit(lib.root, req.model_copy(update={"product": missing}), "heuristic")


def test_heuristic_opens_like_reference_edits_and_picks_category_music(lib: Lib) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib.pool)
    (plan,) = plan_edit(lib.root, req, "heuristic")
    assert plan.notes["opening"].startswith("reference edits (3")
    # Training ads open on colour bars: the pool's colour-bars shot (b @ 0 s) opens.
    assert (plan.segments[0].photo_id, plan.segments[0].start_s) == (lib.b, 0.0)
    assert plan.bgm is not None and plan.bgm.audio_id == lib.track_high  # kitchen ads' music
    beauty = PRODUCT.model_copy(update={"category": "Beauty"})
    (plan,) = plan_edit(lib.root, req.model_copy(update={"product": beauty}), "heuristic")
    assert plan.bgm is not None and plan.bgm.audio_id == lib.track_low
    excluded = req.model_copy(update={"exclude_audio_ids": [lib.track_high]})
    (plan,) = plan_edit(lib.root, excluded, "heuristic")
    assert plan.bgm is not None and plan.bgm.audio_id == lib.track_low


# --------------------------------------------------------------------------- grounding


class _QueryPlanner(HeuristicPlanner):
    """Selects candidate 0 but asks grounding for another frame's embedding (like decoded LM tokens)."""

    def __init__(self, query: np.ndarray) -> None:
        super().__init__()
        self.query = query

    def plan(self, task: PlanningTask, n_variants: int) -> list[Decision]:
        return [
            Decision(
                (0,),
                (0,),
                ("Look at this.",),
                frame_queries=self.query[None, :],
                clip_queries=self.query[None, :],
                bgm_query=task.bgm_vectors[0],
            )
        ]


@pytest.mark.parametrize("mode", ["by_frame", "by_clip"])
def test_grounding_follows_the_decoded_embedding_not_the_index(lib: Lib, mode: str) -> None:
    with Catalog.open(lib.root, create=False) as cat:
        fids, vecs = cat.frame_vectors([lib.b])
    target = int(np.flatnonzero(fids == lib.b * 10**4 + 5)[0])  # b's blue shot, 5 s in
    req = PlanRequest(product=PRODUCT, pool=lib.pool, script=["Look at this."])
    (plan,) = plan_edit(lib.root, req, _QueryPlanner(vecs[target]), options=PlanOptions(segment_mode=mode))
    seg = plan.segments[0]
    assert seg.photo_id == lib.b  # candidate 0 is in a; the embedding decides
    assert 4.0 <= seg.start_s <= 5.0  # blue shot: by frame starts on (or before, to fit) frame 5
    assert_valid(plan, lib, req)


def test_pool_search_matches_brute_force_and_bgm_index_matches_exact(lib: Lib) -> None:
    from autocut.library.indexing import rebuild_indexes

    with Catalog.open(lib.root, create=False) as cat:
        pool = build_candidates(cat, lib.pool)
        g = PoolGrounder(pool)
        rng = np.random.default_rng(0)
        q = rng.normal(size=(5, pool.frame_vectors.shape[1])).astype(np.float32)
        hits = g.frames(q, 3)
        fv = pool.frame_vectors / np.linalg.norm(pool.frame_vectors, axis=1, keepdims=True)
        cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ fv.T  # (5, F)
        row_of = {int(f): i for i, f in enumerate(pool.frame_ids)}
        for r, row in enumerate(hits):
            # Same top-3 similarities as brute force (ids may differ only among identical frames).
            assert [h.score for h in row] == pytest.approx(np.sort(cos[r])[::-1][:3].tolist(), abs=1e-5)
            assert [cos[r, row_of[h.frame_id]] for h in row] == pytest.approx([h.score for h in row], abs=1e-5)
        skip = {h.frame_id for h in hits[0]}
        assert not skip & {h.frame_id for h in g.frames(q[:1], 3, exclude_ids=skip)[0]}
        exact = BgmGrounder(lib.root, cat)
        assert exact.source == "exact"
    rebuild_indexes(lib.root, ["bgm", "frames"])
    with Catalog.open(lib.root, create=False) as cat:
        # Library-wide frames (clips from outside the pool): a moving test pattern finds itself.
        fids, fvecs = cat.frame_vectors([lib.a])
        ((top, *_),) = LibraryVideoGrounder(lib.root, cat, "frames").search(fvecs[1], 3)
        assert top[:2] == (int(fids[1]), lib.a) and top[2] == pytest.approx(1.0, abs=1e-4)
        indexed = BgmGrounder(lib.root, cat)
        assert indexed.source == "bgm index"
        ids, vecs = cat.bgm_vectors()
        for v in vecs:
            assert [h.audio_id for h in indexed.search(v, 2)] == [h.audio_id for h in exact.search(v, 2)]
        assert [h.audio_id for h in indexed.search(vecs[0], 2, exclude_ids=[int(ids[0])])] == [int(ids[1])]


# --------------------------------------------------------------------------- budgets and errors


def test_footage_over_budget_is_selected_and_trimmed(lib: Lib) -> None:
    req = PlanRequest(product=PRODUCT, pool=lib.pool, max_duration_s=10.0)
    (plan,) = plan_edit(lib.root, req, "random")
    assert_valid(plan, lib, req)
    assert plan.duration_s <= 10.0 and len(plan.segments) < 6


def test_bad_requests_fail_with_clear_messages(lib: Lib) -> None:
    def fails(req: PlanRequest, match: str, **kw: object) -> None:
        with pytest.raises(PlanError, match=match):
            plan_edit(lib.root, req, "heuristic", **kw)  # type: ignore[arg-type]

    fails(PlanRequest(product=PRODUCT, pool=[PoolItem(photo_id=999)]), "unknown photo_id 999")
    fails(PlanRequest(product=PRODUCT, pool=[PoolItem(path=str(lib.media / "low.wav"))]), "not in library")
    fails(
        PlanRequest(product=PRODUCT, pool=[PoolItem(photo_id=lib.c)], script=SCRIPT),
        "3 sentences but the pool yields only 1",
    )
    fails(
        PlanRequest(product=PRODUCT, pool=lib.pool),
        "limit is 3",
        options=PlanOptions(candidates=CandidateConfig(max_candidates=3)),
    )
    fails(
        PlanRequest(product=PRODUCT, pool=lib.pool),
        "prompt tokens even at one frame per clip",
        options=PlanOptions(candidates=CandidateConfig(max_prompt_tokens=30)),
    )
    fails(PlanRequest(product=PRODUCT, pool=lib.pool, script=["Fine.", " "]), "script line 2 is empty")
    long = " ".join(["This sentence keeps going and going without any end in sight"] * 4) + "."
    fails(PlanRequest(product=PRODUCT, pool=[PoolItem(photo_id=lib.c)], script=[long]), "needs .* s even at")
    fails(PlanRequest(product=PRODUCT, pool=lib.pool, script=SCRIPT, max_duration_s=2.0), "max_duration_s")


def test_pool_paths_resolve_to_ingested_sources_once(lib: Lib) -> None:
    with Catalog.open(lib.root, create=False) as cat:
        pool = build_candidates(cat, [PoolItem(path=str(lib.media / "a.mp4")), PoolItem(photo_id=lib.a)])
        assert {c.photo_id for c in pool.candidates} == {lib.a} and len(pool.candidates) == 3
        # K frames per candidate at most, uniformly sampled, inside the candidate's span.
        whole = build_candidates(cat, lib.pool, CandidateConfig(split="whole", max_frames=2))
        assert len(whole.candidates) == 3
        for c in whole.candidates:
            assert 1 <= len(c.frame_ids) <= 2
            assert all(c.start_s - 1e-6 <= split_frame_id(f)[1] < c.end_s for f in c.frame_ids)


def test_frames_per_candidate_halve_until_the_prompt_fits(lib: Lib) -> None:
    """As the corpus the LM trains on: K = 8 frames a clip, halved while the listing is over budget."""
    with Catalog.open(lib.root, create=False) as cat:
        full = build_candidates(cat, lib.pool, CandidateConfig(split="whole"))
        assert full.config.max_frames == 8 and max(len(c.frame_ids) for c in full.candidates) > 2
        budget = full.prompt_tokens - 1
        fitted = build_candidates(cat, lib.pool, CandidateConfig(split="whole", max_prompt_tokens=budget))
    assert fitted.config.max_frames < 8 and fitted.prompt_tokens <= budget
    assert all(len(c.frame_ids) <= fitted.config.max_frames for c in fitted.candidates)
    assert [c.photo_id for c in fitted.candidates] == [c.photo_id for c in full.candidates]


def test_check_decision_enforces_the_task_constraints(lib: Lib) -> None:
    with Catalog.open(lib.root, create=False) as cat:
        pool = build_candidates(cat, lib.pool)
        task = PlanningTask(
            request=PlanRequest(product=PRODUCT, pool=lib.pool, script=SCRIPT),
            pool=pool,
            catalog=cat,
            library_dir=lib.root,
            n_select=3,
            budget_s=60.0,
            bgm_ids=np.zeros(0, np.int64),
            bgm_vectors=np.zeros((0, 4), np.float32),
        )
        check_decision(task, Decision((0, 2, 4), (4, 0, 2), ("a", "b", "c")))
        bad = [
            (Decision((0, 2), (0, 2), ("a", "b")), "3 sentences"),
            (Decision((0, 0, 2), (0, 0, 2), ("a", "b", "c")), "twice"),
            (Decision((2, 0, 4), (0, 2, 4), ("a", "b", "c")), "ascending"),
            (Decision((0, 2, 9), (0, 2, 9), ("a", "b", "c")), "outside"),
            (Decision((0, 2, 4), (0, 2, 5), ("a", "b", "c")), "permutation"),
            (Decision((0, 2, 4), (0, 2, 4), ("a", "b")), "one sentence per clip"),
        ]
        for d, match in bad:
            with pytest.raises(PlanError, match=match):
                check_decision(task, d)


def test_cli_writes_one_file_per_variant(lib: Lib, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autocut.cli import main

    req = PlanRequest(product=PRODUCT, pool=lib.pool, script=SCRIPT, n_variants=2)
    path = tmp_path / "request.json"
    path.write_text(req.model_dump_json(), encoding="utf-8")
    out = tmp_path / "out" / "plan.json"
    rc = main(
        ["--library", str(lib.root), "plan", str(path), "-o", str(out), "--planner", "random", "--mode", "by_clip"]
    )
    assert rc == 0
    plans = [EditPlan.model_validate_json(p.read_text()) for p in (out, out.with_name("plan.v2.json"))]
    assert all(p.planner == "random" and p.segments[0].mode == "by_clip" for p in plans)
    assert "all distinct: True" in capsys.readouterr().out
    assert json.loads(out.read_text())["version"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"product": {"name": "x"}, "pool": []}', encoding="utf-8")
    assert main(["--library", str(lib.root), "plan", str(bad), "-o", str(out)]) == 2
