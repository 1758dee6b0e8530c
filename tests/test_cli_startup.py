"""`autocut --help` and light commands start without torch, FAISS or transformers.

Importing torch + vector-quantize-pytorch costs seconds; command modules import heavy libraries inside
their handlers, and the few library values the parsers show are mirrored in `autocut.cli.*` (checked
against the library here). Module loading is checked in a fresh interpreter, where nothing else has
imported them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from autocut.library.catalog import Catalog

# Modules that take from ~0.1 s (faiss) to several seconds (torch) to import.
HEAVY = ("torch", "vector_quantize_pytorch", "transformers", "faster_whisper", "faiss", "rqvae", "autocut.lm.backbone")

_PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_loaded(body: str) -> tuple[list[str], str]:
    """Run `body` in a fresh interpreter; the heavy modules it left loaded, and what it printed before."""
    code = _PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    *before, last = out.stdout.strip().splitlines()
    return json.loads(last), "\n".join(before)


def test_parser_and_every_help_text_import_nothing_heavy() -> None:
    body = """
import argparse
from autocut.cli import build_parser

def walk(p, names):
    yield names, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from walk(sp, names + [name])

n = 0
for names, p in walk(build_parser(), []):
    assert p.format_help(), names
    n += 1
print(n)
"""
    loaded, printed = _heavy_loaded(body)
    assert loaded == [], f"building the parser / formatting help imported {loaded}"
    assert int(printed) > 20  # the walk reached the sub-sub-commands (ingest, index rebuild, train sft, ...)


def test_library_stats_imports_nothing_heavy(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    with Catalog.open(lib, create=True, writable=True):
        pass
    body = f"""
from autocut.cli import main
rc = main(["--library", {str(lib)!r}, "library", "stats", "--json"])
assert rc == 0
"""
    loaded, printed = _heavy_loaded(body)
    assert loaded == [], f"`autocut library stats` imported {loaded}"
    assert json.loads(printed)["sources"] == 0


def test_mirrored_parser_values_match_the_library() -> None:
    import rqvae
    from autocut.cli import index, plan, train
    from autocut.cli import rqvae as cli_rqvae
    from autocut.library.indexing import INDEX_KINDS
    from autocut.lm.backbone import DEFAULT_CPU_BACKBONE
    from autocut.lm.corpus import TASKS, CorpusConfig
    from autocut.planning.candidates import CandidateConfig

    assert tuple(INDEX_KINDS) == index.INDEX_KINDS
    assert CandidateConfig().max_frames == plan.DEFAULT_MAX_FRAMES
    assert tuple(rqvae.MODALITIES) == cli_rqvae.MODALITIES
    assert train.DEFAULT_CPU_BACKBONE == DEFAULT_CPU_BACKBONE
    from autocut.lm.compact_train import DEFAULT_IDENTITY_WEIGHT, CompactTrainConfig
    from autocut.lm.small import SMALL_PRESETS

    assert train.DEFAULT_IDENTITY_WEIGHT == DEFAULT_IDENTITY_WEIGHT
    assert CompactTrainConfig().backbone == train.COMPACT_DEFAULT_BACKBONE
    assert tuple(SMALL_PRESETS) == train.COMPACT_BACKBONES
    assert tuple(TASKS) == train.TASKS
    d = CorpusConfig()
    assert {k: getattr(d, k) for k in train.CORPUS_DEFAULTS} == train.CORPUS_DEFAULTS
