"""Caption baselines: visual tags, their cache, the tag-format SFT corpus, and the caption planners end to end.

A small real library: generated videos plus a video of two packaged photos (opencv-doc's orange and
baboon, whose ImageNet classes are known), ingested with the real EfficientNet-Lite0 encoder; a real
tiny RQ-VAE and token corpus; a tiny `Qwen3ForCausalLM` with the real Qwen3 tokenizer as the LM (a
fine-tuned one for caption-sft, trained here for two steps on the tag corpus).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from autocut.errors import CheckpointError, ConfigError
from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord, RefSegment
from autocut.library.tags import TAGS_FORMAT_VERSION, TagStats, clip_labels, frame_tags, imagenet_labels, short_labels
from autocut.lm.backbone import default_qwen3_tokenizer_dir, make_qwen3_backbone
from autocut.planning import plan_edit
from autocut.planning.planners import get_planner
from autocut.planning.planners.caption import CaptionPlanner, CaptionSftPlanner
from autocut.speech.words import count_words, target_words
from autocut.types import PlanRequest, PoolItem, ProductInfo
from media_factory import ffmpeg, make_audio, make_shots

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
TOKENIZER_DIR = default_qwen3_tokenizer_dir()
TINY = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 32,
}
needs_tokenizer = pytest.mark.skipif(
    not (TOKENIZER_DIR / "tokenizer.json").exists(),
    reason="Qwen3 tokenizer not fetched (run scripts/fetch_qwen3_tokenizer.sh)",
)

SCRIPTS = {
    "p0": ["Fresh fruit every morning.", "Even the monkeys approve.", "Get the FreshCo bowl today."],
    "p1": ["Tired of dull screens?", "This panel shows every colour.", "Order yours now."],
    "p2": ["Need a test pattern?", "These bars never lie.", "Calibrate in minutes."],
    "p3": ["Gardens need light.", "Green all year long.", "Try the lamp tonight."],
}


@dataclass
class Lib:
    root: Path
    photos: int  # orange 3 s | baboon 3 s | orange 3 s
    videos: dict[str, int]  # product id -> its source photo_id
    track_high: int
    track_low: int


def _photo_video(path: Path, stills: list[Path], seconds: int = 3) -> Path:
    args: list[str] = []
    for s in stills:
        args += ["-loop", "1", "-t", str(seconds), "-framerate", "10", "-i", str(s)]
    graph = "".join(f"[{i}:v]scale=320:240,setsar=1,format=yuv420p[v{i}];" for i in range(len(stills)))
    graph += "".join(f"[v{i}]" for i in range(len(stills))) + f"concat=n={len(stills)}:v=1:a=0[out]"
    ffmpeg(*args, "-filter_complex", graph, "-map", "[out]", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


def _train_rqvae(x: np.ndarray, out: Path, pca_version: str) -> None:
    from rqvae import ModelConfig, RQVAEConfig, TrainConfig, train

    cfg = RQVAEConfig(
        model=ModelConfig(
            modality="video",
            input_dim=x.shape[1],
            encoder_hidden=(32,),
            decoder_hidden=(32,),
            codebook_dim=8,
            kmeans_iters=2,
        ),
        train=TrainConfig(epochs=1, batch_size=1024, val_fraction=0.0),
    )
    train(x, np.arange(len(x)) % 7, cfg).tokenizer.save(out, pca_version=pca_version)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, ingest_media) -> Lib:
    for name in ("orange.jpg", "baboon.jpg"):
        if not (OPENCV_DATA / name).exists():
            pytest.skip(f"{OPENCV_DATA / name} missing (Debian package opencv-doc)")
    base = tmp_path_factory.mktemp("caption")
    media = base / "media"
    media.mkdir()
    orange, baboon = OPENCV_DATA / "orange.jpg", OPENCV_DATA / "baboon.jpg"
    _photo_video(media / "photos.mp4", [orange, baboon, orange])
    size = "192x144"
    make_shots(media / "p1.mp4", [("testsrc2", 3), ("red", 3), ("mandelbrot", 3)], size=size)
    make_shots(media / "p2.mp4", [("smptebars", 3), ("blue", 3), ("rgbtestsrc", 3)], size=size)
    make_shots(media / "p3.mp4", [("yuvtestsrc", 3), ("green", 3), ("testsrc", 3)], size=size)
    make_audio(media / "low.wav", duration_s=10.5, freq=440)
    make_audio(media / "high.wav", duration_s=10.5, freq=1500)
    root = base / "library"
    footage = [media / f"{n}.mp4" for n in ("photos", "p1", "p2", "p3")]
    ids, tracks = ingest_media(root, footage, [media / "low.wav", media / "high.wav"])
    with Catalog.open(root, writable=True) as cat:
        videos = {"p0": ids["photos"], "p1": ids["p1"], "p2": ids["p2"], "p3": ids["p3"]}
        for pid, photo in videos.items():
            category = "kitchen" if pid in ("p0", "p1") else "beauty"
            cat.upsert_product(
                ProductRecord(
                    pid,
                    f"Product {pid}",
                    brand="FreshCo",
                    category=category,
                    selling_points=["bright colours"],
                    split="train",
                )
            )
            segs = [RefSegment(photo, 3.0 * k, 3.0, s) for k, s in enumerate(SCRIPTS[pid])]
            track = tracks["high"] if category == "kitchen" else tracks["low"]
            cat.add_reference_edit(RefEditRecord(f"e-{pid}", pid, "en", segs, audio_id=track, split="train"))
        _, frames = cat.frame_vectors()
        pca = cat.pca_version
    _train_rqvae(frames, root / "models" / "rqvae_video", pca)
    from autocut.cli import main

    assert main(["--library", str(root), "corpus", "build", "--frames-per-clip", "2"]) == 0
    return Lib(root, ids["photos"], videos, tracks["high"], tracks["low"])


@pytest.fixture(scope="module")
def tag_corpus(lib: Lib) -> Path:
    from autocut.cli import main

    assert main(["--library", str(lib.root), "corpus", "tags"]) == 0
    return lib.root / "lm" / "corpus_tags"


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        pytest.skip("Qwen3 tokenizer not fetched (run scripts/fetch_qwen3_tokenizer.sh)")
    return make_qwen3_backbone(tmp_path_factory.mktemp("bb") / "tiny-qwen3", TOKENIZER_DIR, seed=0, **TINY)


def _read(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------------- tags


def test_label_list_is_the_imagenet_order() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0].startswith("tench") and labels[1].startswith("goldfish")
    assert short_labels()[999] == "toilet tissue" and short_labels()[2] == "great white shark"


def test_tags_name_real_photos_and_a_decode_gives_the_stored_features_answer(lib: Lib) -> None:
    with Catalog.open(lib.root, create=False) as cat:
        fids, _ = cat.frame_vectors([lib.photos])
        st = TagStats()
        decoded = frame_tags(cat, fids, source="video", use_cache=False, stats=st)
        stored = frame_tags(cat, fids, source="features", use_cache=False)
    assert len(fids) == 9 and st.decoded_sources == 1 and st.computed == 9 and st.ms_per_frame > 0
    # The decode path re-creates the frames ingest embedded: same classes, same probabilities.
    assert np.array_equal(decoded.classes[:, 0], stored.classes[:, 0])
    assert np.allclose(decoded.probs, stored.probs, atol=1e-3)
    # Probabilities are the classifier's softmax, most probable first.
    assert np.all(np.diff(stored.probs, axis=1) <= 1e-7) and np.all(stored.probs.sum(axis=1) <= 1 + 1e-5)
    assert "orange" in clip_labels(stored, fids[0:3].tolist(), 3)
    assert "baboon" in clip_labels(stored, fids[3:6].tolist(), 3)
    assert clip_labels(stored, fids[0:3].tolist(), 1) == ["orange"]
    with pytest.raises(ConfigError, match="'auto', 'features' or 'video'"), Catalog.open(lib.root, create=False) as cat:
        frame_tags(cat, fids, source="clip")  # type: ignore[arg-type]


def test_tag_cache_hits_and_drops_entries_of_changed_sources(lib: Lib) -> None:
    path = lib.root / "tags" / f"frame_tags.v{TAGS_FORMAT_VERSION}.npz"
    path.unlink(missing_ok=True)
    with Catalog.open(lib.root, create=False) as cat:
        fids, _ = cat.frame_vectors([lib.videos["p1"]])
        first, st1 = TagStats(), TagStats()
        a = frame_tags(cat, fids, stats=first)
        assert first.computed == len(fids) and first.cache_hits == 0 and path.exists()
        b = frame_tags(cat, fids, stats=st1)
        assert st1.cache_hits == len(fids) and st1.computed == 0
        assert np.array_equal(a.classes, b.classes) and np.array_equal(a.probs, b.probs)
        # A cache entry whose source no longer has the recorded content is recomputed.
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["meta"]))
        meta["photo_hashes"][str(lib.videos["p1"])] = "another-video"
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
        st2 = TagStats()
        frame_tags(cat, fids, stats=st2)
        assert st2.computed == len(fids) and st2.cache_hits == 0


# ---------------------------------------------------------------------------------------------- tag corpus


def _strip_clips(text: str) -> str:
    return re.sub(r"(?m)^(\d+)\).*$", r"\1)", text)


def test_tag_corpus_replaces_only_the_clip_blocks(lib: Lib, tag_corpus: Path) -> None:
    token_dir = lib.root / "lm" / "corpus"
    assert not list(tag_corpus.glob("sft_bgm_*")) and list(token_dir.glob("sft_bgm_*"))  # BGM omitted
    manifest = json.loads((tag_corpus / "manifest.json").read_text())
    assert manifest["format"] == "autocut-lm-tag-corpus" and manifest["tags"]["tags_per_clip"] == 3
    names = sorted(p.name for p in tag_corpus.glob("sft_*.jsonl"))
    assert names == sorted(p.name for t in ("select", "sort", "script") for p in token_dir.glob(f"sft_{t}_*.jsonl"))
    orange_lines = 0
    for name in names:
        tokens, tags = _read(token_dir / name), _read(tag_corpus / name)
        assert len(tags) == len(tokens) > 0
        for a, b in zip(tokens, tags, strict=True):
            assert b["conversations"][1] == a["conversations"][1]  # the same answer
            assert b["meta"] == a["meta"] | {"clips": "tags"}
            ha, hb = a["conversations"][0]["value"], b["conversations"][0]["value"]
            assert _strip_clips(ha) == _strip_clips(hb)  # same instruction, header, script, durations
            assert "<|clip_start|>" in ha and "<|" not in hb and "<v_" not in hb
            lines = re.findall(r"(?m)^(\d+)\)(.*)$", hb)
            cands = b["meta"]["candidates"]
            assert [int(k) for k, _ in lines] == list(range(1, len(cands) + 1))
            for (_, text), c in zip(lines, cands, strict=True):
                assert len(text.split(", ")) == 3
                if c["photo_id"] == lib.photos and c["start_s"] in (0.0, 6.0):  # the orange shots
                    assert "orange" in text.split(", ")
                    orange_lines += 1
    assert orange_lines > 0


def test_tag_corpus_prompts_are_what_the_caption_planner_builds(lib: Lib, tag_corpus: Path) -> None:
    """Training and planning see one prompt format: each tag-corpus prompt is `task_prompt` with tag lines."""
    from autocut.lm.prompts import product_view, task_prompt

    with Catalog.open(lib.root, create=False) as cat:
        edits = {e.edit_id: e for e in cat.reference_edits()}
        products = {p.product_id: p for p in cat.products()}
    n = 0
    for path in sorted(tag_corpus.glob("sft_*.jsonl")):
        for rec in _read(path):
            meta, human = rec["meta"], rec["conversations"][0]["value"]
            script = [s.sentence for s in edits[meta["edit_id"]].segments]
            clips = [text for _, text in re.findall(r"(?m)^(\d+)\)(.*)$", human)]
            task = meta["task"]
            rebuilt = task_prompt(
                task,
                meta["language"],
                product_view(products[meta["product_id"]], meta["language"]),
                n=len(script) if task != "sort" else len(clips),
                script=None if task == "script" else script,
                clips=clips,
                durations_s=meta.get("durations_s"),
            )
            assert rebuilt == human
            n += 1
    assert n > 0


def test_tag_corpus_needs_a_token_corpus(lib: Lib, tmp_path: Path) -> None:
    from autocut.lm.tag_corpus import build_tag_corpus

    with Catalog.open(lib.root, create=False) as cat:
        with pytest.raises(ConfigError, match="corpus build"):
            build_tag_corpus(cat, tmp_path / "none", tmp_path / "out")
        with pytest.raises(ConfigError, match="bgm answers are audio tokens"):
            build_tag_corpus(cat, lib.root / "lm" / "corpus", tmp_path / "out", tasks=("bgm",))


# ---------------------------------------------------------------------------------------------- planners

PRODUCT = ProductInfo(name="FreshCo Bowl", brand="FreshCo", category="kitchen", selling_points=["bright colours"])


def _check_plan(plan, lib: Lib, pool: set[int]) -> None:
    with Catalog.open(lib.root, create=False) as cat:
        for seg in plan.segments:
            src = cat.source(seg.photo_id)
            assert seg.photo_id in pool
            assert seg.start_s >= 0 and seg.start_s + seg.duration_s <= src.duration_s + 1e-9
            assert seg.sentence.strip()
    assert plan.bgm is not None and plan.bgm.audio_id == lib.track_high  # the kitchen category's music


@needs_tokenizer
def test_caption_planner_plans_both_scenarios(lib: Lib, backbone: Path) -> None:
    pool = [PoolItem(photo_id=lib.videos[p]) for p in ("p0", "p1", "p2")]
    script = ["Bright mornings start here.", "Meet the FreshCo Bowl.", "Get yours today."]
    req = PlanRequest(product=PRODUCT, pool=pool, script=script, n_variants=2, seed=3)
    planner = CaptionPlanner(model_dir=backbone)
    plans = plan_edit(lib.root, req, planner)
    assert len(plans) == 2
    keys = set()
    for plan in plans:
        assert [s.sentence for s in plan.segments] == script
        assert plan.notes["clips_as"].startswith("ImageNet tags") and plan.notes["lm_model"] == str(backbone)
        _check_plan(plan, lib, {p.photo_id for p in pool})
        keys.add(tuple((s.photo_id, s.start_s) for s in plan.segments))
    assert len(keys) == 2  # variants differ
    # BGM comes from the heuristic's logic, not from the LM.
    heuristic = plan_edit(lib.root, req.model_copy(update={"n_variants": 1}), "heuristic")[0]
    assert heuristic.bgm.audio_id == plans[0].bgm.audio_id

    # Footage-driven: every clip of the curated pool is used and the LM writes one line per clip
    # within its word target.
    req = PlanRequest(product=PRODUCT, pool=[PoolItem(photo_id=lib.videos["p1"])], n_variants=1)
    plan = plan_edit(lib.root, req, planner)[0]
    _check_plan(plan, lib, {lib.videos["p1"]})
    assert len(plan.segments) == 3
    over = [s for s in plan.segments if count_words(s.sentence) > max(1, target_words(s.duration_s, "en"))]
    # Lines within their clip's word target, except template lines a sayable LM line could not replace.
    assert len(over) <= int(plan.notes.get("script_template_lines", 0))


@needs_tokenizer
def test_caption_sft_planner_uses_the_model_fine_tuned_on_tags(lib: Lib, tag_corpus: Path, backbone: Path) -> None:
    from autocut.lm.train import preset, train_lm

    req = PlanRequest(
        product=PRODUCT,
        pool=[PoolItem(photo_id=lib.videos[p]) for p in ("p0", "p2")],
        script=["Fresh fruit every morning.", "Get the FreshCo bowl today."],
    )
    with pytest.raises(CheckpointError, match="corpus tags"):
        plan_edit(lib.root, req, "caption-sft")
    run = lib.root / "models" / "lm" / "caption_sft"
    files = sorted(tag_corpus.glob("sft_*_train.jsonl"))
    res = train_lm(
        stage="sft",
        init_dir=backbone,
        data_files=files,
        run_dir=run,
        config=replace(preset("sft"), max_steps=2, cutoff_len=1024),
    )
    assert res.steps == 2 and res.model_dir == run / "model"
    assert isinstance(get_planner("caption-sft"), CaptionSftPlanner)
    plan = plan_edit(lib.root, req, "caption-sft")[0]  # by name: the library's default model directory
    assert plan.notes["lm_model"] == str(run / "model")
    assert len(plan.segments) == 2
    _check_plan(plan, lib, {lib.videos["p0"], lib.videos["p2"]})
