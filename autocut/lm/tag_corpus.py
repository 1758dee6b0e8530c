"""SFT data for the caption baselines: the token corpus with every clip block replaced by its visual tags.

The paper's Caption + SFT baseline (AutoCut 4.3, Table 1) is the text LLM fine-tuned "on the same SFT
dataset used by AutoCut ... but operates on captionized clip inputs rather than discrete video tokens".
So this reads the token corpus (`autocut corpus build`) and rewrites each record in place: the same
instructions, product header, script, durations and answer, and in each ``k)<|clip_start|>...<|clip_end|>``
line the block becomes the clip's tags (`autocut.library.tags`), computed over exactly the frames the token
prompt showed (the same span, the same uniform K-of-N sample). The records' ``meta`` stay, plus
``"clips": "tags"``.

Tasks: select, sort and script. The BGM task is left out: its answer is an audio block (8 audio
tokens), which a tag-only model cannot be taught to emit; the caption planners pick BGM like the
heuristic baseline does (`autocut.planning.planners.caption`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from autocut.errors import ConfigError
from autocut.files import write_lines_atomic
from autocut.library.catalog import Catalog
from autocut.library.ids import frame_id
from autocut.library.tags import (
    DEFAULT_TAGS_PER_CLIP,
    TAGGER_NAME,
    TAGS_FORMAT_VERSION,
    TagSource,
    TagStats,
    clip_labels,
    frame_tags,
    tags_text,
)
from autocut.lm.corpus import (
    CorpusReport,
    SftFormatError,
    _dumps,
    frames_in_span,
    read_manifest,
    read_sharegpt,
)
from autocut.planning.candidates import sample_uniform

__all__ = ["TAG_CORPUS_FORMAT_VERSION", "TAG_TASKS", "build_tag_corpus", "tag_prompt"]

log = logging.getLogger(__name__)

TAG_CORPUS_FORMAT_VERSION = 1
TAG_TASKS: tuple[str, ...] = ("select", "sort", "script")  # bgm: answers are audio tokens (module docstring)

# One candidate line of a token prompt: "k)<|clip_start|>...<|clip_end|>" (corpus `_clip_lines`).
_CLIP_LINE_RE = re.compile(r"(?m)^(\d+)\)(<\|clip_start\|>.*?<\|clip_end\|>)$")


def _shown_frames(cand: dict[str, Any], n_frames: dict[int, int], k: int) -> list[int]:
    """Frame ids a token prompt showed for a candidate (corpus: every frame in the span, K sampled uniformly)."""
    pid = int(cand["photo_id"])
    span = frames_in_span(float(cand["start_s"]), float(cand["duration_s"]), n_frames.get(pid, 0))
    return [frame_id(pid, span[i]) for i in sample_uniform(len(span), k)]


def tag_prompt(human: str, clip_tags: list[str], where: str) -> str:
    """`human` with its i-th clip block replaced by ``clip_tags[i]`` (lines must be numbered 1..n)."""
    found = _CLIP_LINE_RE.findall(human)
    if [int(n) for n, _ in found] != list(range(1, len(clip_tags) + 1)):
        raise SftFormatError(f"{where}: expected clip lines 1..{len(clip_tags)}, found {[int(n) for n, _ in found]}")
    it = iter(clip_tags)
    return _CLIP_LINE_RE.sub(lambda m: f"{m.group(1)}){next(it)}", human)


def build_tag_corpus(
    catalog: Catalog,
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    tags_per_clip: int = DEFAULT_TAGS_PER_CLIP,
    source: TagSource = "auto",
    tasks: tuple[str, ...] = TAG_TASKS,
) -> CorpusReport:
    """Write ``sft_<task>_<split>.jsonl`` (tags instead of video tokens) and a manifest into `out_dir`."""
    t0 = time.perf_counter()
    src_dir, out = Path(corpus_dir), Path(out_dir)
    bad = set(tasks) - set(TAG_TASKS)
    if bad:
        raise ConfigError(
            f"tag corpus tasks are {', '.join(TAG_TASKS)} (bgm answers are audio tokens); got {sorted(bad)}"
        )
    manifest = read_manifest(src_dir)  # refuses a missing or other-version token corpus
    if manifest.get("pca_version") and catalog.pca_version and manifest["pca_version"] != catalog.pca_version:
        log.warning(
            "corpus %s was built on PCA %s, the library is now on %s; tags come from the frames, "
            "so they do not depend on it",
            src_dir,
            manifest["pca_version"],
            catalog.pca_version,
        )
    files = sorted(p for t in tasks for p in src_dir.glob(f"sft_{t}_*.jsonl"))
    if not files:
        raise ConfigError(f"no SFT files for tasks {', '.join(tasks)} in {src_dir} (run `autocut corpus build`)")
    n_frames = {s.photo_id: s.n_frames for s in catalog.sources()}

    # Pass 1: every record's shown frames; one tagging call for all of them (cached per frame).
    loaded: dict[Path, list[tuple[dict[str, Any], list[list[int]]]]] = {}
    for path in files:
        rows = []
        for i, rec in enumerate(read_sharegpt(path)):
            where = f"{path} record {i}"
            meta = rec.get("meta") or {}
            cands = meta.get("candidates")
            if not isinstance(cands, list) or not cands:
                raise SftFormatError(
                    f"{where}: no meta.candidates (only corpora built by `autocut corpus build` "
                    "say which footage each clip is)"
                )
            k = int(meta.get("frames_per_clip", 1))
            shown = [_shown_frames(c, n_frames, k) for c in cands]
            if any(not s for s in shown):
                raise SftFormatError(f"{where}: a candidate's frames are not in library {catalog.root}")
            rows.append((rec, shown))
        loaded[path] = rows
    stats = TagStats()
    all_frames = {f for rows in loaded.values() for _, shown in rows for s in shown for f in s}
    tags = frame_tags(catalog, all_frames, source=source, stats=stats)

    out.mkdir(parents=True, exist_ok=True)
    report = CorpusReport(out_dir=str(out))
    for path, rows in loaded.items():
        lines = []
        for i, (rec, shown) in enumerate(rows):
            human = rec["conversations"][0]["value"]
            n_blocks = [b.count("<|frame_start|>") for _, b in _CLIP_LINE_RE.findall(human)]
            if n_blocks != [len(s) for s in shown]:  # the frames we tag are the frames the prompt showed
                raise SftFormatError(
                    f"{path} record {i}: clip blocks show {n_blocks} frames, the corpus "
                    f"sampling gives {[len(s) for s in shown]} (library changed since the build?)"
                )
            text = tag_prompt(
                human, [tags_text(clip_labels(tags, s, tags_per_clip)) for s in shown], f"{path} record {i}"
            )
            conv = [{"from": "human", "value": text}, rec["conversations"][1]]
            lines.append(
                _dumps(
                    {
                        "conversations": conv,
                        "system": rec.get("system", ""),
                        "tools": rec.get("tools", ""),
                        "meta": (rec.get("meta") or {}) | {"clips": "tags"},
                    }
                )
            )
        report.files[path.name] = write_lines_atomic(out / path.name, lines)
    report.edits = len({(r.get("meta") or {}).get("edit_id") for rows in loaded.values() for r, _ in rows})
    report.seconds = time.perf_counter() - t0
    info = {
        "format": "autocut-lm-tag-corpus",
        "format_version": TAG_CORPUS_FORMAT_VERSION,
        "created_at": time.time(),
        "library": str(catalog.root),
        "source_corpus": str(src_dir.resolve()),
        "source_corpus_created_at": manifest.get("created_at"),
        "tags": {
            "tagger": TAGGER_NAME,
            "tags_format_version": TAGS_FORMAT_VERSION,
            "tags_per_clip": tags_per_clip,
            "frames": len(all_frames),
            "computed": stats.computed,
            "cache_hits": stats.cache_hits,
            "ms_per_frame": stats.ms_per_frame,
            "source": stats.source,
        },
        "files": report.files,
        "omitted_tasks": {"bgm": "answers are audio tokens"},
    }
    write_lines_atomic(out / "manifest.json", [json.dumps(info, ensure_ascii=False, indent=2)])
    log.info("%s", report.summary())
    return report
