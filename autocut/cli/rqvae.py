"""`autocut rqvae train|eval`: the library's RQ-VAE tokenizers (logic in `autocut.library.codes`)."""

from __future__ import annotations

import argparse

from autocut.errors import CheckpointError

# Mirrors rqvae.MODALITIES: importing `rqvae` loads torch, which `autocut --help` must not wait for
# (tests/test_cli_startup.py checks the two agree).
MODALITIES = ("video", "audio")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rqvae", help="RQ-VAE tokenizers: frame / BGM embeddings <-> 8 discrete codes")
    rsub = p.add_subparsers(dest="rqvae_command", metavar="ACTION")
    rsub.required = True

    t = rsub.add_parser(
        "train", help="train a tokenizer on the library (paper preset) into LIBRARY/models/rqvae_<modality>/"
    )
    t.add_argument("--modality", choices=MODALITIES, required=True)
    t.add_argument("--epochs", type=int, default=None, help="default: the preset's (video 20, audio 50)")
    t.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        metavar="S",
        help="finish within S seconds (the cosine schedule is shortened to fit)",
    )
    t.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="most rows per step (default 8192, Table 3; smaller libraries get >= 8 steps per epoch)",
    )
    t.add_argument(
        "--val-fraction", type=float, default=None, help="share of rows held out by source video / track (default 0.1)"
    )
    t.add_argument("--seed", type=int, default=None)
    _threads_arg(t)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    e = rsub.add_parser("eval", help="reconstruction cosine and codebook use of the stored tokenizer(s)")
    e.add_argument("--modality", choices=[*MODALITIES, "all"], default="all")
    _threads_arg(e)
    e.set_defaults(func=_eval)


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (on a shared, busy machine 1 is often fastest)",
    )


def _set_threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(max(1, n))


def _train(args: argparse.Namespace) -> int:
    from autocut.library.codes import train_library_tokenizer

    _set_threads(args.threads)
    report = train_library_tokenizer(
        args.library,
        args.modality,
        epochs=args.epochs,
        time_budget_s=args.time_budget_s,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(report.to_text())
    return 0


def _eval(args: argparse.Namespace) -> int:
    from autocut.library.codes import evaluate_library_tokenizer, tokenizer_dir

    _set_threads(args.threads)
    if args.modality != "all":
        print(evaluate_library_tokenizer(args.library, args.modality).to_text())
        return 0
    found = [m for m in MODALITIES if tokenizer_dir(args.library, m).exists()]
    if not found:
        raise CheckpointError(f"no RQ-VAE tokenizer in {args.library}/models (run `autocut rqvae train` first)")
    for modality in found:
        print(evaluate_library_tokenizer(args.library, modality).to_text())
    return 0
