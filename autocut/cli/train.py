"""`autocut corpus build|import|export|tags` and `autocut train align|sft`: thin wrappers over `autocut.lm`."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from autocut.errors import ConfigError
from autocut.library.layout import LibraryLayout

__all__ = ["register"]

log = logging.getLogger(__name__)

# Mirrors of library values the parsers show. `autocut.lm.backbone` imports torch and `autocut.lm.corpus`
# the catalog; building the parser (`autocut --help`) imports neither. tests/test_cli_startup.py checks
# these equal autocut.lm.backbone.DEFAULT_CPU_BACKBONE, autocut.lm.corpus.TASKS and CorpusConfig().
DEFAULT_CPU_BACKBONE = "smollm2"
TASKS = ("select", "sort", "script", "bgm")
# Mirrors of autocut.lm.small.SMALL_PRESETS / autocut.lm.compact_train.CompactTrainConfig().backbone.
COMPACT_BACKBONES = ("qwen3-tiny", "qwen3-small4", "qwen3-small8")
COMPACT_DEFAULT_BACKBONE = "qwen3-small4"
DEFAULT_IDENTITY_WEIGHT = 12.0  # mirror of autocut.lm.compact_train.DEFAULT_IDENTITY_WEIGHT
CORPUS_DEFAULTS = {"seed": 0, "max_frames_per_clip": 8, "max_prompt_tokens": 3500, "max_pool_size": 24}


def _corpus_dir(args: argparse.Namespace) -> Path:
    return Path(args.corpus) if getattr(args, "corpus", None) else LibraryLayout.of(args.library).corpus_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    # ------------------------------------------------------------------ corpus
    corpus = subparsers.add_parser("corpus", help="build / import / export LM training data")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION")
    csub.required = True
    d = CORPUS_DEFAULTS
    b = csub.add_parser("build", help="alignment corpus + the four SFT task files from the library's reference edits")
    b.add_argument("--out", type=Path, default=None, help="corpus directory (default: LIBRARY/lm/corpus)")
    b.add_argument(
        "--video-tokenizer",
        type=Path,
        default=None,
        help="video RQ-VAE checkpoint (default: LIBRARY/models/rqvae_video)",
    )
    b.add_argument(
        "--audio-tokenizer",
        type=Path,
        default=None,
        help="audio RQ-VAE checkpoint (default: LIBRARY/models/rqvae_audio; BGM task skipped if absent)",
    )
    b.add_argument("--seed", type=int, default=d["seed"])
    b.add_argument(
        "--frames-per-clip",
        type=int,
        default=d["max_frames_per_clip"],
        metavar="K",
        help=f"max frames per candidate clip in SFT prompts (default {d['max_frames_per_clip']})",
    )
    b.add_argument("--max-prompt-tokens", type=int, default=d["max_prompt_tokens"])
    b.add_argument("--max-pool", type=int, default=d["max_pool_size"], help="max selection pool size")
    b.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    b.set_defaults(func=_corpus_build)

    i = csub.add_parser("import", help="convert AutoCut-format SFT files (JSON array / JSONL) into ours")
    i.add_argument("files", nargs="+", type=Path)
    i.add_argument("--out", type=Path, default=None, help="corpus directory (default: LIBRARY/lm/corpus)")
    i.add_argument("--split", default="train")
    i.set_defaults(func=_corpus_import)

    e = csub.add_parser("export", help="write our SFT files as one AutoCut-format JSON array")
    e.add_argument("--corpus", type=Path, default=None, help="corpus directory (default: LIBRARY/lm/corpus)")
    e.add_argument("--split", default="train")
    e.add_argument("--tasks", default=",".join(TASKS))
    e.add_argument("--out", type=Path, required=True, help="output .json file")
    e.set_defaults(func=_corpus_export)

    g = csub.add_parser(
        "tags",
        help="the SFT files with visual tags instead of video tokens (caption-sft baseline)",
        description="Rewrite the select/sort/script SFT files of a token corpus with each clip "
        "listed as its ImageNet tags (autocut.library.tags); the BGM task is omitted (its "
        "answer is audio tokens).",
    )
    g.add_argument("--corpus", type=Path, default=None, help="token corpus to read (default: LIBRARY/lm/corpus)")
    g.add_argument("--out", type=Path, default=None, help="tag corpus directory (default: LIBRARY/lm/corpus_tags)")
    g.add_argument("--tags-per-clip", type=int, default=3, metavar="K", help="labels per clip (default 3)")
    g.add_argument(
        "--source",
        choices=("auto", "features", "video"),
        default="auto",
        help="classify stored frame features (efficientnet-lite0 libraries) or decoded frames",
    )
    g.set_defaults(func=_corpus_tags)

    # ------------------------------------------------------------------ train
    train = subparsers.add_parser("train", help="train the extended-vocabulary LM (align, then sft)")
    tsub = train.add_subparsers(dest="train_command", metavar="STAGE")
    tsub.required = True
    for stage in ("align", "sft"):
        p = tsub.add_parser(
            stage,
            help="stage 1: new token rows only"
            if stage == "align"
            else "stage 2: full fine-tuning (or --lora), loss on the response",
        )
        src = p.add_mutually_exclusive_group()
        src.add_argument(
            "--backbone",
            default=None,
            help=f"'smollm2', 'qwen3-small' or a HF model directory (align default: {DEFAULT_CPU_BACKBONE}; "
            "for sft this starts from an unaligned backbone: the SFT-only ablation)",
        )
        if stage == "sft":
            src.add_argument(
                "--init", type=Path, default=None, help="model to fine-tune (default: LIBRARY/models/lm/align/model)"
            )
        p.add_argument("--corpus", type=Path, default=None, help="corpus directory (default: LIBRARY/lm/corpus)")
        p.add_argument("--data", type=Path, nargs="+", default=None, help="explicit data files (override --corpus)")
        p.add_argument("--run-dir", type=Path, default=None, help=f"default: LIBRARY/models/lm/{stage}")
        p.add_argument("--config", type=Path, default=None, help="training config JSON (see configs/)")
        p.add_argument(
            "--profile",
            choices=("cpu", "table4"),
            default="cpu",
            help="preset when no --config is given (table4 = the paper's Qwen3-8B recipe, GPU)",
        )
        p.add_argument("--time-budget-s", type=float, default=None)
        p.add_argument("--max-steps", type=int, default=None)
        p.add_argument("--epochs", type=float, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--cutoff-len", type=int, default=None)
        p.add_argument("--save-every", type=int, default=None, metavar="STEPS")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
        if stage == "sft":
            p.add_argument("--lora", action="store_true", help="LoRA adapters (peft) instead of full fine-tuning")
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch CPU threads (1 is often fastest on a machine shared with other jobs)",
        )
        p.add_argument("--progress", action="store_true", help="show a progress bar")
        p.set_defaults(func=_train, stage=stage)

    c = tsub.add_parser(
        "compact",
        help="the compact planner: a small Qwen3-class LM from scratch, one decision per token",
        description="Train the compact planner (docs/method.md, 'The compact planner') on the library's "
        "reference ads of --split, labelled by the demo world's manifest, for a wall-clock budget; then score "
        "it against the heuristic on --heldout-split (the model card records the result, which the server's "
        "`auto` planner reads). Needs the video and audio RQ-VAE tokenizers (`autocut rqvae train`).",
    )
    c.add_argument(
        "--backbone",
        default=COMPACT_DEFAULT_BACKBONE,
        choices=COMPACT_BACKBONES,
        help=f"model size (default {COMPACT_DEFAULT_BACKBONE})",
    )
    c.add_argument("--budget-s", type=float, default=600.0, help="training wall-clock seconds (default 600)")
    c.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps; the schedule follows them, so runs compare on a busy machine",
    )
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--split", default="train", help="split whose reference ads it learns from (default train)")
    c.add_argument("--heldout-split", default="val", help="split of the held-out check (default val)")
    c.add_argument("--heldout-ads", type=int, default=20, help="reference ads in the held-out check (0: skip it)")
    c.add_argument("--out", type=Path, default=None, help="model directory (default LIBRARY/models/lm/compact/model)")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    c.add_argument(
        "--match-edges",
        default=None,
        metavar="R1,R2,...",
        help="product-match buckets: rank edges by photo similarity (default 2,4,8,16; 'none': no match tokens)",
    )
    c.add_argument(
        "--match-metric",
        choices=("cosine", "learned"),
        default="learned",
        help="what the match buckets rank by: the learned identity map (default; `autocut train identity`, "
        "fitted first when missing; training examples use cross-fitted maps; a library without a demo-world "
        "manifest falls back to cosine) or the raw photo cosine",
    )
    c.add_argument(
        "--identity-weight",
        type=float,
        default=None,
        help="the identity prior added to the LM's clip log-probabilities at decoding, recorded in the model "
        f"card (default {DEFAULT_IDENTITY_WEIGHT:g}; 0: the pure LM)",
    )
    c.set_defaults(func=_train_compact)

    i = tsub.add_parser(
        "identity",
        help="the learned product-identity metric (photo vs clip) the planners' identity prior reads",
        description="Fit a linear metric on the frame space so that a product's own shots rank above the "
        "look-alike rival's and other same-category products' shots given the product photo (docs/method.md, "
        "'Product identity'); fitted on --split, the step kept by mean AUC on --val-split, both AUCs printed "
        "beside the raw cosine's. Needs the demo world's manifest (which shot is whose). Writes "
        "LIBRARY/models/identity/identity.npz (or --out).",
    )
    i.add_argument("--split", default="train", help="split it is fitted on (default train)")
    i.add_argument("--val-split", default="val", help="split that picks the step (default val)")
    i.add_argument("--steps", type=int, default=400, help="optimisation steps (default 400)")
    i.add_argument("--decay", type=float, default=1e-2, help="weight decay towards the identity map (default 0.01)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", type=Path, default=None, help="output file (default LIBRARY/models/identity/identity.npz)")
    i.set_defaults(func=_train_identity)


def _train_identity(args: argparse.Namespace) -> int:
    from autocut.library.catalog import Catalog
    from autocut.planning.identity import fit_identity, identity_path
    from autocut.planning.identity_data import load_identity_pools

    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    with Catalog.open(args.library, create=False) as cat:
        pca_version = cat.pca_version
    train = load_identity_pools(args.library, args.split)
    val = load_identity_pools(args.library, args.val_split)

    def progress(step: int, steps: int, loss: float, auc: float) -> None:
        if step % 100 == 0 or step == steps:
            print(f"  step {step}/{steps}: loss {loss:.4f}, val AUC {auc:.4f}", file=sys.stderr, flush=True)

    model = fit_identity(
        train, val, pca_version=pca_version, steps=args.steps, decay=args.decay, seed=args.seed, progress=progress
    )
    out = model.save(args.out or identity_path(args.library))
    m = model.metrics
    print(
        f"identity: val AUC {m['auc_val']['learned']:.4f} (raw cosine {m['auc_val']['raw_cosine']:.4f}), "
        f"train AUC {m['auc_train']['learned']:.4f} (raw {m['auc_train']['raw_cosine']:.4f}), "
        f"best step {m['best_step']}/{m['steps']}, {m['seconds']:.0f} s -> {out}"
    )
    return 0


def _corpus_build(args: argparse.Namespace) -> int:
    from autocut.library.catalog import Catalog
    from autocut.lm.corpus import CorpusConfig, build_corpus
    from rqvae import Tokenizer

    lib = Path(args.library)
    vpath = args.video_tokenizer or LibraryLayout(lib).rqvae_dir("video")
    apath = args.audio_tokenizer or LibraryLayout(lib).rqvae_dir("audio")
    tasks = tuple(t for t in args.tasks.split(",") if t)
    cfg = CorpusConfig(
        seed=args.seed,
        max_frames_per_clip=args.frames_per_clip,
        max_prompt_tokens=args.max_prompt_tokens,
        max_pool_size=args.max_pool,
        tasks=tasks,
    )
    with Catalog.open(lib, create=False) as cat:
        pca = cat.pca_version or None
        if not Path(vpath).exists():
            raise ConfigError(f"no video RQ-VAE tokenizer at {vpath} (train one first, or pass --video-tokenizer)")
        from autocut.errors import CheckpointError
        from rqvae import RQVAEError

        try:
            video = Tokenizer.load(vpath, expect_modality="video", expect_pca_version=pca)
            audio = Tokenizer.load(apath, expect_modality="audio") if Path(apath).exists() else None
        except RQVAEError as exc:  # a user-supplied checkpoint: a clear error, not a traceback
            raise CheckpointError(f"{exc} (retrain with `autocut rqvae train`)") from None
        if audio is None:
            log.warning("no audio RQ-VAE tokenizer at %s: the BGM task and audio tokens are skipped", apath)
        info = {
            "video": {"path": str(vpath), "pca_version": video.pca_version},
            "audio": {"path": str(apath)} if audio is not None else None,
        }
        report = build_corpus(
            cat,
            args.out or LibraryLayout(lib).corpus_dir,
            video_tokenizer=video,
            audio_tokenizer=audio,
            config=cfg,
            tokenizer_info=info,
        )
    print(report.summary())
    return 0


def _corpus_import(args: argparse.Namespace) -> int:
    from autocut.lm.corpus import import_autocut

    report = import_autocut(args.files, args.out or LibraryLayout.of(args.library).corpus_dir, split=args.split)
    print(report.summary())
    return 0


def _corpus_tags(args: argparse.Namespace) -> int:
    from autocut.library.catalog import Catalog
    from autocut.lm.tag_corpus import build_tag_corpus

    lib = Path(args.library)
    with Catalog.open(lib, create=False) as cat:
        report = build_tag_corpus(
            cat,
            _corpus_dir(args),
            args.out or LibraryLayout(lib).tag_corpus_dir,
            tags_per_clip=args.tags_per_clip,
            source=args.source,
        )
    print(report.summary())
    return 0


def _corpus_export(args: argparse.Namespace) -> int:
    from autocut.lm.corpus import export_autocut, sft_files

    tasks = [t for t in args.tasks.split(",") if t]
    files = sft_files(_corpus_dir(args), args.split, tasks)
    if not files:
        raise ConfigError(f"no SFT files for split {args.split!r} in {_corpus_dir(args)}")
    n = export_autocut(files, args.out)
    print(f"exported {n} records from {len(files)} files to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from autocut.lm.backbone import DEFAULT_CPU_BACKBONE, resolve_backbone
    from autocut.lm.corpus import sft_files
    from autocut.lm.train import LMTrainConfig, preset, train_lm

    lib = Path(args.library)
    stage = args.stage
    cfg = LMTrainConfig.from_json(args.config) if args.config else preset(stage, args.profile)
    overrides = {
        "time_budget_s": args.time_budget_s,
        "max_steps": args.max_steps,
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "cutoff_len": args.cutoff_len,
        "save_every_steps": args.save_every,
        "seed": args.seed,
    }
    cfg = replace(cfg, stage=stage, **{k: v for k, v in overrides.items() if v is not None})
    if stage == "sft" and args.lora:
        from autocut.lm.train import LoraSettings

        cfg = replace(cfg, lora=LoraSettings())
    cache = LibraryLayout(lib).backbones_dir
    if stage == "align":
        init = resolve_backbone(args.backbone or DEFAULT_CPU_BACKBONE, cache, seed=cfg.seed)
    elif args.backbone:
        init = resolve_backbone(args.backbone, cache, seed=cfg.seed)
    else:
        init = args.init or LibraryLayout(lib).lm_run_dir("align") / "model"
        if not (Path(init) / "config.json").exists():
            raise ConfigError(
                f"no aligned model at {init}: run `autocut train align` first, pass --init DIR, "
                "or --backbone NAME for an SFT-only run"
            )
    if args.data:
        data = list(args.data)
    else:
        corpus = _corpus_dir(args)
        data = [corpus / "align_train.jsonl"] if stage == "align" else sft_files(corpus, "train")
        if not data or not all(p.exists() for p in data):
            raise ConfigError(f"no {stage} training data in {corpus} (run `autocut corpus build` first)")
    run_dir = args.run_dir or LibraryLayout(lib).lm_run_dir(stage)
    result = train_lm(
        stage=stage,
        init_dir=init,
        data_files=data,
        run_dir=run_dir,
        config=cfg,
        resume=args.resume,
        progress=args.progress,
        num_threads=args.threads,
    )
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    print(
        f"{stage}: {result.steps}/{result.planned_steps} steps ({result.stop_reason}), final loss {loss}, "
        f"{result.seconds:.0f} s{', frozen-row check passed' if result.frozen_check else ''} -> {result.model_dir}"
    )
    return 0


def _train_compact(args: argparse.Namespace) -> int:
    from autocut.lm.compact_train import CompactTrainConfig, train_library_planner

    kw: dict = {"lr": args.lr} if args.lr is not None else {}
    if args.match_edges is not None:
        text = args.match_edges.strip().lower()
        try:
            kw["match_edges"] = () if text in ("none", "") else tuple(int(x) for x in text.split(","))
        except ValueError:
            raise ConfigError(
                f"--match-edges takes comma-separated ranks or 'none', got {args.match_edges!r}"
            ) from None
    cfg = CompactTrainConfig(
        match_metric=args.match_metric,
        backbone=args.backbone,
        budget_s=args.budget_s,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        **kw,
    )
    train_library_planner(
        args.library,
        args.out or LibraryLayout.of(args.library).compact_model_dir,
        cfg,
        split=args.split,
        heldout_split=args.heldout_split,
        heldout_ads=args.heldout_ads,
        check=args.heldout_ads > 0,
        identity_weight=DEFAULT_IDENTITY_WEIGHT if args.identity_weight is None else args.identity_weight,
    )
    return 0
