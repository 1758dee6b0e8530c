"""Fit the packaged default 128-d PCA for a frame encoder (docs/method.md, "Encoders and the library PCA").

The default is fitted on the real media the demo world is built from (packaged sample videos and photos),
so a new library has a sensible 128-d space before it holds a few thousand frames of its own. The output
is written to autocut/data/pca_<encoder>_default.npz and committed.

    .venv/bin/python scripts/fit_default_pca.py [--encoder efficientnet-lite0] [--weights DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autocut.encoders import load_frame_encoder
from autocut.encoders.pca import default_pca_path
from autocut.library.pca import fit_pca_on_media
from autocut.library.samples import sample_photos, sample_videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--weights", type=Path, default=None, help="local weights dir (resnet50)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--max-photos", type=int, default=400)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    enc = load_frame_encoder(args.encoder, weights_dir=args.weights)
    photos = sample_photos()[: args.max_photos]
    pca = fit_pca_on_media(sample_videos(), photos, enc)
    out = args.out or default_pca_path(args.encoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    pca.save(out)
    print(f"wrote {out} ({pca.version})")


if __name__ == "__main__":
    main()
