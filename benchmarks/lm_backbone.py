"""Which small backbone should `autocut train` use on CPU: SmolLM2-135M-Instruct or a small Qwen3 init?

Same synthetic ad world, same corpus, same wall-clock budget per stage (align, then SFT) for both; then
held-out (test-split products) greedy answers and response NLL on the four tasks, beside the random
baseline measured on the same samples (`autocut.evaluation.heldout`).

The world is built to be learnable from the tokens alone: 10 categories x 3 products, each product's
clips share a visual centre (selection), clip roles (hook / feature / call to action) shift the frames
the same way in every ad (sorting), scripts are templated from the product info and role (script
generation), and each category has its own BGM track (BGM selection).

- smollm2: pretrained (text knowledge, 49k vocabulary, 30 layers x 576, tied embeddings);
- qwen3-small: random init (Qwen3 tokenizer = the production tokenizer, 6 layers x 384, tied).

Run: nice .venv/bin/python -m benchmarks.lm_backbone [--quick] [--budget-s 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import cache_dir, print_table

DIM = 32
CATEGORIES = ["kitchen", "beauty", "phone", "fitness", "toys", "garden", "office", "pets", "travel", "audio"]
POINTS = ["saves time", "easy to clean", "lasts all week", "fits in a bag", "quiet and strong", "safe for kids"]
HOOKS = ["Tired of wasting mornings?", "Still doing it the hard way?", "Looking for something better?"]
CTAS = ["Order yours today.", "Tap the link and get one now.", "Grab it before it sells out."]


def build_world(root: Path, seed: int = 0) -> None:
    """A catalog with 30 products, 60 reference ads, 10 BGM tracks, synthetic DIM-d frames."""
    from autocut.library.catalog import Catalog, NewBgm, NewSource, ProductRecord, RefEditRecord, RefSegment

    rng = np.random.default_rng(seed)
    cat_centres = rng.normal(size=(len(CATEGORIES), DIM))
    roles = {"hook": rng.normal(size=DIM), "feature": rng.normal(size=DIM), "cta": rng.normal(size=DIM)}
    with Catalog.open(root, create=True, writable=True) as cat:
        bgm_ids = cat.add_bgm(
            [
                NewBgm(
                    content_hash=f"bgm-{c}",
                    source_path=str(root / f"{c}.ogg"),
                    start_s=0.0,
                    duration_s=25.0,
                    blocks=(cat_centres[i] + 0.1 * rng.normal(size=(4, DIM))).astype(np.float32),
                    track=cat_centres[i].astype(np.float32),
                    title=c,
                )
                for i, c in enumerate(CATEGORIES)
            ]
        )
        for p in range(30):
            ci = p % len(CATEGORIES)
            centre = cat_centres[ci] + 0.7 * rng.normal(size=DIM)
            name = f"{CATEGORIES[ci].title()} Gadget {p}"
            points = list(rng.choice(POINTS, size=2, replace=False))
            split = "train" if p < 24 else ("val" if p < 27 else "test")
            cat.upsert_product(
                ProductRecord(
                    product_id=f"p{p}",
                    name=name,
                    brand=f"Brand{p % 7}",
                    category=CATEGORIES[ci],
                    selling_points=points,
                    split=split,
                )
            )
            for a in range(2):
                n_feat = int(rng.integers(1, 4))
                plan = ["hook"] + ["feature"] * n_feat + ["cta"]
                durs = rng.integers(3, 7, size=len(plan))
                n = int(durs.sum()) + 1
                frames, t = [], 0
                for role, d in zip(plan, durs):
                    for _ in range(d):
                        frames.append(centre + 0.8 * roles[role] + 0.25 * rng.normal(size=DIM))
                    t += d
                frames.append(frames[-1])
                fr = np.asarray(frames, np.float32)
                fr /= np.linalg.norm(fr, axis=1, keepdims=True)
                pid = cat.add_source(
                    NewSource(
                        content_hash=f"ad-{p}-{a}",
                        path=str(root / f"ad-{p}-{a}.mp4"),
                        kind="ad",
                        duration_s=float(n),
                        probe={},
                        frame_times_s=[float(i) for i in range(n)],
                        frames_raw=fr,
                        frames=fr,
                        clip_spans=[],
                        clips=np.zeros((0, DIM), np.float32),
                    )
                )
                segs, t = [], 0.0
                for k, (role, d) in enumerate(zip(plan, durs)):
                    if role == "hook":
                        s = str(rng.choice(HOOKS))
                    elif role == "cta":
                        s = str(rng.choice(CTAS))
                    else:
                        s = f"The {name} {points[(k - 1) % 2]}."
                    segs.append(RefSegment(pid, t, float(d), s, role))
                    t += float(d)
                cat.add_reference_edit(
                    RefEditRecord(
                        f"ad-{p:02d}-{a}", f"p{p}", "en", segs, audio_id=bgm_ids[ci], split=split, source="benchmark"
                    )
                )


def _tokenizers(root: Path):
    from autocut.library.catalog import Catalog
    from rqvae import ModelConfig, RQVAEConfig, TrainConfig, train

    with Catalog.open(root, create=False) as cat:
        _, frames = cat.frame_vectors()
        _, bgm = cat.bgm_vectors()
    out = []
    for modality, x in (
        ("video", frames),
        ("audio", np.repeat(bgm, 100, axis=0) + 0.02 * np.random.default_rng(1).normal(size=(1000, DIM))),
    ):
        cfg = RQVAEConfig(
            model=ModelConfig(
                modality=modality,
                input_dim=DIM,
                encoder_hidden=(64,),
                decoder_hidden=(64,),
                codebook_dim=16,
                kmeans_iters=5,
            ),
            train=TrainConfig(epochs=4, batch_size=512, val_fraction=0.0),
        )
        out.append(train(x.astype(np.float32), np.arange(len(x)) % 11, cfg).tokenizer)
    return out


def main(
    quick: bool = False,
    budget_s: float | None = None,
    backbones: tuple[str, ...] = ("smollm2", "qwen3-small"),
    keep: Path | None = None,
) -> dict:
    from autocut.evaluation.heldout import evaluate_sft
    from autocut.library.catalog import Catalog
    from autocut.lm.backbone import resolve_backbone
    from autocut.lm.corpus import CorpusConfig, build_corpus, sft_files
    from autocut.lm.train import preset, train_lm

    budget = budget_s or (90.0 if quick else 300.0)
    per_task = 3 if quick else 10
    work = Path(tempfile.mkdtemp(prefix="lm-backbone-"))
    figures: dict = {"budget_s_per_stage": budget, "backbones": {}}
    try:
        lib = work / "library"
        t0 = time.perf_counter()
        build_world(lib)
        video, audio = _tokenizers(lib)
        with Catalog.open(lib, create=False) as cat:
            rep = build_corpus(
                cat,
                work / "corpus",
                video_tokenizer=video,
                audio_tokenizer=audio,
                config=CorpusConfig(max_frames_per_clip=2),
            )
        figures["corpus"] = rep.files
        figures["world_s"] = round(time.perf_counter() - t0, 1)
        test_files = sft_files(work / "corpus", "test")
        cache = cache_dir() / "lm-backbones"
        for name in backbones:
            b0 = time.perf_counter()
            init = resolve_backbone(name, cache, seed=0)
            align = train_lm(
                stage="align",
                init_dir=init,
                data_files=[work / "corpus" / "align_train.jsonl"],
                run_dir=work / name / "align",
                config=replace(preset("align"), time_budget_s=budget, epochs=50, save_every_steps=None, cutoff_len=512),
                num_threads=1,
            )
            sft = train_lm(
                stage="sft",
                init_dir=align.model_dir,
                data_files=sft_files(work / "corpus", "train"),
                run_dir=work / name / "sft",
                config=replace(preset("sft"), time_budget_s=budget, epochs=50, save_every_steps=None, cutoff_len=1024),
                num_threads=1,
            )
            ev = evaluate_sft(sft.model_dir, test_files, max_per_task=per_task, num_threads=1)
            print(ev.summary())
            figures["backbones"][name] = {
                "align_steps": align.steps,
                "align_s_per_step": round(align.seconds / max(align.steps, 1), 2),
                "align_loss_first_last": [
                    align.loss_history[0]["loss"] if align.loss_history else None,
                    align.final_loss,
                ],
                "sft_steps": sft.steps,
                "sft_s_per_step": round(sft.seconds / max(sft.steps, 1), 2),
                "sft_loss_first_last": [sft.loss_history[0]["loss"] if sft.loss_history else None, sft.final_loss],
                "eval": {
                    t: {
                        "n": s.n,
                        "parse_rate": s.parse_rate,
                        **s.metrics,
                        **{f"random_{k}": v for k, v in s.random_baseline.items()},
                        "response_nll": s.response_nll,
                        "examples": s.examples,
                    }
                    for t, s in ev.tasks.items()
                },
                "total_s": round(time.perf_counter() - b0, 1),
            }
            if keep is not None:
                shutil.copytree(work / name / "sft" / "model", keep / name, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for name, f in figures["backbones"].items():
        rows.append(
            (
                f"{name} align",
                f"{f['align_steps']} steps, {f['align_s_per_step']} s/step, loss {f['align_loss_first_last']}",
            )
        )
        rows.append(
            (f"{name} sft", f"{f['sft_steps']} steps, {f['sft_s_per_step']} s/step, loss {f['sft_loss_first_last']}")
        )
        for t, e in f["eval"].items():
            shown = {k: round(v, 3) for k, v in e.items() if isinstance(v, float)}
            rows.append((f"{name} {t}", json.dumps(shown)))
    print_table(f"LM backbones, {budget:.0f} s per stage", rows)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget per stage and backbone")
    ap.add_argument("--backbones", default="smollm2,qwen3-small")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    figs = main(quick=args.quick, budget_s=args.budget_s, backbones=tuple(args.backbones.split(",")))
    if args.json:
        args.json.write_text(json.dumps(figs, indent=2, default=str))
