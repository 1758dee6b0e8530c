"""`autocut ingest PATH... [--kind footage|bgm|ad]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autocut.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="add footage, music or finished ads to the material library",
        description="Validate, embed and segment media files (or directories of them) into the "
        "library. Idempotent: content already present is skipped. A bad file is "
        "reported and skipped; the others are ingested, and the exit status is 1 "
        "when any file failed (0 when every file was stored or already present). Finished ads (--kind ad) "
        "are also transcribed (packaged whisper-base) into a reference edit for "
        "--product-id: one clip per spoken sentence, BGM from the non-speech audio.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="media files or directories")
    p.add_argument(
        "--kind",
        choices=["footage", "bgm", "ad"],
        default="footage",
        help="footage (videos, default), bgm (music, cut into excerpts) or ad (finished ads of one "
        "product: stored with their ASR reference edit)",
    )
    p.add_argument(
        "--product-id",
        default=None,
        metavar="ID",
        help="with --kind ad: the library product the ads advertise (required)",
    )
    p.add_argument(
        "--language",
        choices=["en", "zh"],
        default=None,
        help="with --kind ad: the ads' spoken language (default: detected by the ASR)",
    )
    p.add_argument(
        "--frame-encoder",
        default="efficientnet-lite0",
        choices=["efficientnet-lite0", "resnet50"],
        help="frame CNN (default: the embedded efficientnet-lite0)",
    )
    p.add_argument(
        "--frame-weights",
        type=Path,
        default=None,
        metavar="DIR",
        help="local weights directory for resnet50 (a transformers ResNetModel directory)",
    )
    p.add_argument(
        "--audio-encoder",
        default="aisfx",
        choices=["aisfx", "panns"],
        help="audio embedder (default: the embedded aisfx)",
    )
    p.add_argument(
        "--audio-weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="local PANNs checkpoint (Cnn14 .pth) for --audio-encoder panns",
    )
    p.add_argument(
        "--excerpt-s",
        type=float,
        default=25.0,
        help="cut BGM files into excerpts of this many seconds (0 = whole file; default 25)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads for the encoders (and the ASR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autocut.library.ingest import FileResult, IngestConfig, ingest_paths

    if args.language and args.kind != "ad":  # a missing or stray --product-id is refused by ingest_paths
        raise ConfigError("--language is for finished ads (--kind ad)")
    cfg = IngestConfig(
        frame_encoder=args.frame_encoder,
        frame_weights=args.frame_weights,
        audio_encoder=args.audio_encoder,
        audio_weights=args.audio_weights,
        bgm_excerpt_s=args.excerpt_s or None,
        num_threads=args.threads,
        ad_language=args.language,
    )
    bar = tqdm(total=None, unit="file", desc=f"ingest {args.kind}", disable=None, file=sys.stderr)

    def progress(done: int, total: int, res: FileResult) -> None:
        bar.total = total
        bar.update(1)
        if res.status == "failed":
            bar.write(f"failed: {res.path}: {res.reason}", file=sys.stderr)
        elif res.edit_id:
            state = "stored" if res.status == "added" else "already stored"
            bar.write(f"{res.path}: reference edit {res.edit_id} {state} ({res.n_sentences} sentences)")

    report = ingest_paths(
        args.library, args.paths, kind=args.kind, config=cfg, progress=progress, product_id=args.product_id
    )
    bar.close()
    print(report.summary())
    # Scripts see a partial failure: the good files are stored, and the status still says something failed.
    return 1 if report.failed else 0
