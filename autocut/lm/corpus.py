"""Training data for the LM, built from reference edits: the alignment corpus and the four SFT task files.

One module (~700 lines): the four task builders share the per-ad clip codes, splits and negatives; the
import/export of the public AutoCut format reads and writes the same records.

From every reference edit (a finished ad: ordered clips with one sentence each, plus its BGM track) and
the RQ-VAE codes of its frames and BGM this writes (AutoCut 4.1, 7.6; docs/method.md, "Corpus format"):

- ``align_<split>.jsonl``: ``{"text": "<|ad_start|>...<|ad_end|>", "meta": {...}}``, one ad per line,
  every 1 fps frame inside each sentence's span (AutoCut 7.6.1 "soft-align visual tokens whose
  timestamps fall inside each sentence span"), then the BGM's 8 audio tokens;
- ``sft_<task>_<split>.jsonl`` for task in select / sort / script / bgm: ShareGPT records
  ``{"conversations": [{"from": "human", ...}, {"from": "gpt", ...}], "system": "", "tools": "",
  "meta": {...}}``, every prompt headed by the product info (【商品】【品牌】【卖点】), candidates
  carrying at most K uniformly sampled frames (docs/method.md, "Candidates and prompt budget");
- ``manifest.json``: format version, configuration, the tokenizers' versions, counts, filter statistics.

Splits follow the product (a product's ads never straddle train and test). SFT data passes the filters
of AutoCut 4.1 / 7.6.2: ads shorter than 120 s, clips 2-60 s, no empty / incoherent / repetitive
transcripts, deduplicated on {brand, product, script}; the alignment corpus only drops ads that cannot
be serialised at all (AutoCut trains alignment on the larger, noisier set). All randomness (negative
sampling, shuffling) comes from ``seed`` and the edit id, so rebuilding gives byte-identical files and
adding an ad does not reshuffle the others.

`import_autocut` reads AutoCut-format SFT files (a JSON array, or JSONL, of ShareGPT records without
our ``meta``) and writes ours; `export_autocut` writes ours in that format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autocut.errors import AutoCutError, ConfigError, VersionMismatchError
from autocut.files import write_lines_atomic
from autocut.library.catalog import Catalog, ProductRecord, RefEditRecord, RefSegment
from autocut.library.ids import frame_id, split_frame_id
from autocut.lm import tokens as T
from autocut.lm.prompts import CLIPS_KEY, DURATIONS_KEY, SCRIPT_KEY, product_view, task_prompt  # noqa: F401
from autocut.planning.candidates import sample_uniform

__all__ = [
    "AUTOCUT_TASK_NAMES",
    "CORPUS_FORMAT_VERSION",
    "TASKS",
    "CodeEncoder",
    "CorpusConfig",
    "CorpusReport",
    "SftFormatError",
    "build_corpus",
    "detect_task",
    "estimate_tokens",
    "export_autocut",
    "frames_in_span",
    "import_autocut",
    "read_manifest",
    "read_sharegpt",
    "sft_files",
    "transcript_problems",
]

log = logging.getLogger(__name__)

CORPUS_FORMAT_VERSION = 1
TASKS: tuple[str, ...] = ("select", "sort", "script", "bgm")
# The public generator's task names (sft_data_generator: vid_select, vid_sort, vid2text, vid2aud).
AUTOCUT_TASK_NAMES = {"select": "vid_select", "sort": "vid_sort", "script": "vid2text", "bgm": "vid2aud"}
_TASK_SALT = {t: i + 1 for i, t in enumerate(TASKS)}


class CodeEncoder(Protocol):
    """What the corpus needs from an RQ-VAE tokenizer (`rqvae.Tokenizer` satisfies it)."""

    def encode(self, x: np.ndarray) -> np.ndarray: ...  # (N, D) float -> (N, 8) int


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    # K: frames per candidate clip in SFT prompts, uniformly sampled (each frame costs 10 prompt tokens).
    max_frames_per_clip: int = 8
    # Frames per clip in the alignment corpus (None = every 1 fps frame of the sentence's span).
    align_max_frames_per_clip: int | None = None
    # Estimated prompt tokens (see `estimate_tokens`); K is halved until a prompt fits, else it is dropped.
    # 3,500 leaves room for the answer under Table 4's SFT cutoff of 4,000.
    max_prompt_tokens: int = 3500
    max_pool_size: int = 24  # selection pool = positives + negatives
    negatives_per_positive: float = 1.0  # AutoCut 7.6.3: positives and negatives 1:1
    max_ad_duration_s: float = 120.0  # AutoCut 4.1 filters
    min_clip_s: float = 2.0
    max_clip_s: float = 60.0
    tasks: tuple[str, ...] = TASKS

    def __post_init__(self) -> None:
        if self.max_frames_per_clip < 1:
            raise ConfigError(f"max_frames_per_clip (K) must be >= 1, got {self.max_frames_per_clip}")
        if self.max_pool_size < 2:
            raise ConfigError("max_pool_size must be >= 2")
        bad = set(self.tasks) - set(TASKS)
        if bad:
            raise ConfigError(f"unknown SFT task(s) {sorted(bad)}; choose from {', '.join(TASKS)}")
        object.__setattr__(self, "tasks", tuple(self.tasks))


@dataclass
class CorpusReport:
    out_dir: str
    files: dict[str, int] = field(default_factory=dict)  # file name -> records
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> ads/records dropped
    edits: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"corpus in {self.out_dir}: {self.edits} reference edits, {self.seconds:.1f} s"]
        lines += [f"  {name:28s} {n:6d} records" for name, n in sorted(self.files.items())]
        lines += [f"  dropped: {reason} x{n}" for reason, n in sorted(self.dropped.items())]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- helpers


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def _rng(seed: int, task: str, edit_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, _TASK_SALT.get(task, 0), _stable_int(edit_id)])


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


_TOKEN_ANY = re.compile(r"<[va]_\d+_\d+>|<\|[a-z_]+\|>")


def estimate_tokens(text: str) -> int:
    """Rough LM token count: one per AutoCut/special token, plus UTF-8 bytes / 3 for the rest
    (~1 per CJK character, ~1 per 3 Latin characters: conservative for English BPE)."""
    n_special = len(_TOKEN_ANY.findall(text))
    rest = _TOKEN_ANY.sub("", text)
    return n_special + math.ceil(len(rest.encode("utf-8")) / 3)


def frames_in_span(start_s: float, duration_s: float, n_frames: int) -> list[int]:
    """1 fps frame indices (frame i shows t = i s) whose timestamps fall inside [start, start + duration);
    the nearest frame when none does (spans shorter than a second)."""
    first = math.ceil(start_s - 1e-6)
    end = start_s + duration_s
    idx = list(range(max(first, 0), min(math.ceil(end - 1e-6), n_frames)))
    if not idx and n_frames > 0:
        idx = [min(max(int(round(start_s + duration_s / 2)), 0), n_frames - 1)]
    return idx


_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)


def _units(sentence: str) -> list[str]:
    """Words: CJK characters one by one, Latin words by whitespace (the WCD word rule)."""
    out: list[str] = []
    for w in _WORD_RE.findall(sentence):
        if _CJK_RE.search(w):
            out.extend(ch for ch in w)
        else:
            out.append(w.lower())
    return out


def transcript_problems(sentences: Sequence[str]) -> list[str]:
    """Why a transcript fails the SFT caption-quality filter (AutoCut 7.6.2); empty if it passes.

    - empty: no transcript, or a sentence without any letter/CJK character;
    - incoherent: a sentence whose non-space characters are mostly not letters (symbol or digit soup);
    - repetitive: a third or more of the sentences repeat, or one word makes up over half of a
      sentence of 4+ words (ASR loops such as "buy buy buy buy").
    """
    problems: list[str] = []
    if not sentences:
        return ["empty transcript"]
    norm = []
    for s in sentences:
        chars = [c for c in s if not c.isspace()]
        units = _units(s)
        if not units:
            problems.append("empty sentence")
            continue
        letters = sum(1 for c in chars if unicodedata.category(c).startswith("L"))
        if letters < 0.5 * len(chars):
            problems.append("incoherent sentence")
        if len(units) >= 4 and Counter(units).most_common(1)[0][1] > 0.5 * len(units):
            problems.append("repetitive sentence")
        norm.append(" ".join(units))
    if len(norm) >= 3 and len(set(norm)) <= (2 * len(norm)) / 3:
        problems.append("repeated sentences")
    return sorted(set(problems))


# ---------------------------------------------------------------------------------------------- prompts


# Prompt formats: `autocut.lm.prompts` (shared with the token planner, so train and inference prompts match).


def _record(prompt: str, answer: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}],
        "system": "",
        "tools": "",
        "meta": meta,
    }


# ---------------------------------------------------------------------------------------------- building


@dataclass
class _Clip:
    seg: RefSegment
    codes: np.ndarray  # (F, 8) all frames inside the span


@dataclass
class _Ad:
    edit: RefEditRecord
    split: str
    product: ProductRecord
    clips: list[_Clip]
    audio: np.ndarray | None  # (8,) audio codes of the BGM track


def _clip_tokens(codes: np.ndarray, k: int, text: str | None = None) -> str:
    return T.clip_block(codes[sample_uniform(len(codes), k)], text)


class _Builder:
    def __init__(self, ads: list[_Ad], config: CorpusConfig) -> None:
        self.ads = ads
        self.cfg = config
        self.dropped: Counter[str] = Counter()
        # Negative candidates per split: (product_id, edit_id, clip) of every ad.
        self.by_split: dict[str, list[tuple[str, str, _Clip]]] = defaultdict(list)
        for ad in ads:
            for c in ad.clips:
                self.by_split[ad.split].append((ad.edit.product_id, ad.edit.edit_id, c))

    def _fit(self, build, what: str):
        """Halve K until the prompt fits the budget; None (counted) if even K=1 does not."""
        k = self.cfg.max_frames_per_clip
        while True:
            out = build(k)
            if estimate_tokens(out[0]) <= self.cfg.max_prompt_tokens:
                if k < self.cfg.max_frames_per_clip:
                    out[2]["frames_per_clip"] = k
                return out
            if k == 1:
                self.dropped[f"{what}: prompt over {self.cfg.max_prompt_tokens} tokens"] += 1
                return None
            k = max(1, k // 2)

    def _meta(self, ad: _Ad, task: str) -> dict[str, Any]:
        return {
            "task": task,
            "edit_id": ad.edit.edit_id,
            "product_id": ad.edit.product_id,
            "split": ad.split,
            "language": ad.edit.language,
            "seed": self.cfg.seed,
            "frames_per_clip": self.cfg.max_frames_per_clip,
        }

    @staticmethod
    def _cand(c: _Clip, **extra: Any) -> dict[str, Any]:
        return {"photo_id": c.seg.photo_id, "start_s": c.seg.start_s, "duration_s": c.seg.duration_s, **extra}

    def select(self, ad: _Ad) -> dict[str, Any] | None:
        rng = _rng(self.cfg.seed, "select", ad.edit.edit_id)
        n_pos = len(ad.clips)
        n_neg = max(1, int(round(n_pos * self.cfg.negatives_per_positive)))
        if n_pos + n_neg > self.cfg.max_pool_size:
            self.dropped[f"select: pool of {n_pos + n_neg} over max_pool_size"] += 1
            return None
        # Negatives come from other products' ads of the same split (never across splits).
        negs = [c for pid, _, c in self.by_split[ad.split] if pid != ad.edit.product_id]
        if len(negs) < n_neg:
            self.dropped["select: not enough negative clips from other products"] += 1
            return None
        neg_idx = rng.choice(len(negs), size=n_neg, replace=False)
        pool = [(c, True) for c in ad.clips] + [(negs[i], False) for i in sorted(neg_idx)]
        order = rng.permutation(len(pool))
        shown = [pool[i] for i in order]
        answer = T.format_indices([k for k, (_, pos) in enumerate(shown, start=1) if pos])
        script = [c.seg.sentence for c in ad.clips]
        product = product_view(ad.product, ad.edit.language)

        def build(k: int) -> tuple[str, str, dict[str, Any]]:
            prompt = task_prompt(
                "select",
                ad.edit.language,
                product,
                n=n_pos,
                script=script,
                clips=[_clip_tokens(c.codes, k) for c, _ in shown],
            )
            meta = self._meta(ad, "select") | {"candidates": [self._cand(c, positive=pos) for c, pos in shown]}
            return prompt, answer, meta

        return self._finish(build, "select")

    def sort(self, ad: _Ad) -> dict[str, Any] | None:
        n = len(ad.clips)
        if n < 2:
            self.dropped["sort: fewer than 2 clips"] += 1
            return None
        rng = _rng(self.cfg.seed, "sort", ad.edit.edit_id)
        perm = rng.permutation(n)
        while n > 1 and np.array_equal(perm, np.arange(n)):  # a shown order equal to the answer teaches nothing
            perm = rng.permutation(n)
        shown = [ad.clips[i] for i in perm]
        pos_of = {int(orig): k for k, orig in enumerate(perm, start=1)}
        answer = T.format_indices([pos_of[i] for i in range(n)])
        script = [c.seg.sentence for c in ad.clips]
        product = product_view(ad.product, ad.edit.language)

        def build(k: int) -> tuple[str, str, dict[str, Any]]:
            prompt = task_prompt(
                "sort", ad.edit.language, product, n=n, script=script, clips=[_clip_tokens(c.codes, k) for c in shown]
            )
            meta = self._meta(ad, "sort") | {"candidates": [self._cand(c) for c in shown]}
            return prompt, answer, meta

        return self._finish(build, "sort")

    def script(self, ad: _Ad) -> dict[str, Any] | None:
        product = product_view(ad.product, ad.edit.language)
        durations = [c.seg.duration_s for c in ad.clips]
        answer = "\n".join(c.seg.sentence for c in ad.clips)

        def build(k: int) -> tuple[str, str, dict[str, Any]]:
            prompt = task_prompt(
                "script",
                ad.edit.language,
                product,
                n=len(ad.clips),
                script=None,
                clips=[_clip_tokens(c.codes, k) for c in ad.clips],
                durations_s=durations,
            )
            meta = self._meta(ad, "script") | {
                "durations_s": durations,
                "candidates": [self._cand(c) for c in ad.clips],
            }
            return prompt, answer, meta

        return self._finish(build, "script")

    def bgm(self, ad: _Ad) -> dict[str, Any] | None:
        if ad.audio is None:
            self.dropped["bgm: reference edit has no BGM track"] += 1
            return None
        product = product_view(ad.product, ad.edit.language)
        answer = T.audio_block(ad.audio)

        def build(k: int) -> tuple[str, str, dict[str, Any]]:
            prompt = task_prompt(
                "bgm",
                ad.edit.language,
                product,
                n=len(ad.clips),
                script=None,
                clips=[_clip_tokens(c.codes, k, c.seg.sentence) for c in ad.clips],
            )
            meta = self._meta(ad, "bgm") | {"audio_id": ad.edit.audio_id}
            return prompt, answer, meta

        return self._finish(build, "bgm")

    def _finish(self, build, task: str) -> dict[str, Any] | None:
        out = self._fit(build, task)
        if out is None:
            return None
        prompt, answer, meta = out
        return _record(prompt, answer, meta)


def _align_text(ad: _Ad, max_frames: int | None) -> str:
    clips = [
        (c.seg.sentence, c.codes if max_frames is None else c.codes[sample_uniform(len(c.codes), max_frames)])
        for c in ad.clips
    ]
    return T.ad_sequence(clips, ad.audio)


def _dedupe_key(ad: _Ad) -> str:
    p = product_view(ad.product, ad.edit.language)
    script = "\n".join(" ".join(_units(c.seg.sentence)) for c in ad.clips)
    return hashlib.sha256(f"{p.brand.strip().lower()}\x00{p.name.strip().lower()}\x00{script}".encode()).hexdigest()


def _sft_problems(ad: _Ad, cfg: CorpusConfig) -> list[str]:
    problems = []
    total = sum(c.seg.duration_s for c in ad.clips)
    if total >= cfg.max_ad_duration_s:
        problems.append(f"ad {cfg.max_ad_duration_s:.0f} s or longer")
    if any(not cfg.min_clip_s <= c.seg.duration_s <= cfg.max_clip_s for c in ad.clips):
        problems.append(f"clip outside {cfg.min_clip_s:.0f}-{cfg.max_clip_s:.0f} s")
    problems += transcript_problems([c.seg.sentence for c in ad.clips])
    return problems


def _load_ads(catalog: Catalog, video: CodeEncoder, audio: CodeEncoder | None, dropped: Counter[str]) -> list[_Ad]:
    edits = catalog.reference_edits()
    products = {p.product_id: p for p in catalog.products()}
    photo_ids = sorted({s.photo_id for e in edits for s in e.segments})
    fids, vecs = catalog.frame_vectors(photo_ids)
    codes = np.asarray(video.encode(vecs)) if len(fids) else np.zeros((0, T.NUM_LEVELS), np.int64)
    if codes.shape != (len(fids), T.NUM_LEVELS):
        raise ConfigError(f"video tokenizer returned codes of shape {codes.shape} for {len(fids)} frames")
    row_of = {int(f): i for i, f in enumerate(fids)}
    n_frames = Counter(split_frame_id(f)[0] for f in fids)
    audio_codes: dict[int, np.ndarray] = {}
    if audio is not None:
        aids, avecs = catalog.bgm_vectors()
        if len(aids):
            ac = np.asarray(audio.encode(avecs))
            audio_codes = {int(a): ac[i] for i, a in enumerate(aids)}
    ads = []
    for e in edits:
        product = products.get(e.product_id)
        if product is None:
            dropped["unknown product"] += 1
            continue
        if not e.segments:
            dropped["no segments"] += 1
            continue
        clips = []
        for s in e.segments:
            idx = frames_in_span(s.start_s, s.duration_s, n_frames.get(s.photo_id, 0))
            found = [row_of.get(frame_id(s.photo_id, i)) for i in idx]
            rows = [r for r in found if r is not None]
            if not rows or len(rows) != len(found):
                break
            clips.append(_Clip(s, codes[rows]))
        if len(clips) != len(e.segments):
            dropped["frames missing from the catalog"] += 1
            continue
        try:
            for c in clips:
                T.clip_block(c.codes[:1], c.seg.sentence)  # rejects sentences holding reserved markup
        except T.TokenFormatError:
            dropped["sentence contains reserved markup"] += 1
            continue
        a = audio_codes.get(int(e.audio_id)) if e.audio_id is not None else None
        if e.audio_id is not None and audio is not None and a is None:
            log.warning("reference edit %s: BGM track %s is not in the library", e.edit_id, e.audio_id)
        # The product's split decides (split by product); an edit without one keeps its own.
        ads.append(_Ad(e, product.split or e.split, product, clips, a))
    return ads


def sft_files(corpus_dir: str | os.PathLike[str], split: str, tasks: Sequence[str] = TASKS) -> list[Path]:
    """Existing SFT files of a split in a corpus directory."""
    d = Path(corpus_dir)
    return [p for t in tasks if (p := d / f"sft_{t}_{split}.jsonl").exists()]


def build_corpus(
    catalog: Catalog,
    out_dir: str | os.PathLike[str],
    *,
    video_tokenizer: CodeEncoder,
    audio_tokenizer: CodeEncoder | None,
    config: CorpusConfig | None = None,
    tokenizer_info: dict[str, Any] | None = None,
) -> CorpusReport:
    """Write the alignment corpus and the SFT task files for every reference edit in `catalog`."""
    cfg = config or CorpusConfig()
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dropped: Counter[str] = Counter()
    ads = _load_ads(catalog, video_tokenizer, audio_tokenizer, dropped)
    splits = sorted({a.split for a in ads})
    report = CorpusReport(out_dir=str(out), edits=len(catalog.reference_edits()))

    for split in splits:
        sel = [a for a in ads if a.split == split]
        n = write_lines_atomic(
            out / f"align_{split}.jsonl",
            (
                _dumps(
                    {
                        "text": _align_text(a, cfg.align_max_frames_per_clip),
                        "meta": {
                            "edit_id": a.edit.edit_id,
                            "product_id": a.edit.product_id,
                            "split": split,
                            "language": a.edit.language,
                            "audio_id": a.edit.audio_id,
                        },
                    }
                )
                for a in sel
            ),
        )
        report.files[f"align_{split}.jsonl"] = n

    # SFT: filters, then dedupe on {brand, product, script} (first edit id wins: deterministic).
    sft_ads = []
    seen: set[str] = set()
    for a in ads:
        problems = _sft_problems(a, cfg)
        if problems:
            for p in problems:
                dropped[f"sft filter: {p}"] += 1
            continue
        key = _dedupe_key(a)
        if key in seen:
            dropped["sft filter: duplicate {brand, product, script}"] += 1
            continue
        seen.add(key)
        sft_ads.append(a)
    builder = _Builder(sft_ads, cfg)
    for task in cfg.tasks:
        fn = getattr(builder, task)
        for split in splits:
            recs = (fn(a) for a in sft_ads if a.split == split)
            n = write_lines_atomic(out / f"sft_{task}_{split}.jsonl", (_dumps(r) for r in recs if r is not None))
            report.files[f"sft_{task}_{split}.jsonl"] = n
    dropped.update(builder.dropped)
    report.dropped = dict(dropped)
    report.seconds = time.perf_counter() - t0
    manifest = {
        "format": "autocut-lm-corpus",
        "format_version": CORPUS_FORMAT_VERSION,
        "created_at": time.time(),
        "library": str(catalog.root),
        "pca_version": catalog.pca_version,
        "config": asdict(cfg),
        "tokenizers": tokenizer_info or {},
        "files": report.files,
        "dropped": report.dropped,
        "splits": {s: sorted({a.edit.product_id for a in ads if a.split == s}) for s in splits},
    }
    write_lines_atomic(out / "manifest.json", [json.dumps(manifest, ensure_ascii=False, indent=2)])
    log.info("%s", report.summary())
    return report


def read_manifest(corpus_dir: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(corpus_dir) / "manifest.json"
    if not p.exists():
        raise ConfigError(f"no corpus in {corpus_dir} (run `autocut corpus build` first)")
    data = json.loads(p.read_text())
    if data.get("format_version") != CORPUS_FORMAT_VERSION:
        raise VersionMismatchError(
            f"{p}: corpus format {data.get('format_version')}, this AutoCut reads "
            f"{CORPUS_FORMAT_VERSION}; rebuild with `autocut corpus build`"
        )
    return data


# ---------------------------------------------------------------------------------------------- AutoCut format


class SftFormatError(AutoCutError):
    """A ShareGPT SFT record does not have the expected structure."""


def read_sharegpt(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Records of a ShareGPT file: a JSON array (the public AutoCut files) or JSONL (ours)."""
    p = Path(path)
    with open(p, encoding="utf-8") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise SftFormatError(f"{p}: invalid JSON ({exc})") from None
            yield from data
            return
        for ln, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SftFormatError(f"{p}:{ln}: invalid JSON ({exc})") from None


def _exchange(rec: Any, where: str) -> tuple[str, str]:
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        raise SftFormatError(f"{where}: not a ShareGPT record (no 'conversations' list)")
    conv = rec["conversations"]
    if len(conv) != 2 or [c.get("from") if isinstance(c, dict) else None for c in conv] != ["human", "gpt"]:
        raise SftFormatError(f"{where}: expected one human turn then one gpt turn")
    human, gpt = conv[0].get("value"), conv[1].get("value")
    if not isinstance(human, str) or not isinstance(gpt, str) or not human.strip() or not gpt.strip():
        raise SftFormatError(f"{where}: empty or non-text turn")
    return human, gpt


_CLIP_LINE_RE = re.compile(r"(?m)^\s*(\d+)\)\s*<\|clip_start\|>")


def detect_task(human: str, answer: str) -> str:
    """Which of the four tasks a record is, from its structure (the public files carry no task field).

    bgm: the answer is an audio block; sort: the answer is a permutation of all shown clips;
    select: a subset of them; script: anything else (lines of text).
    """
    if "<|audio_start|>" in answer or re.search(r"<a_\d+_\d+>", answer):
        T.parse_audio(answer)
        return "bgm"
    n_shown = len(_CLIP_LINE_RE.findall(human))
    if n_shown and re.fullmatch(r"[\s\d,，、]+", answer):
        idx = T.parse_indices(answer, pool_size=n_shown)
        return "sort" if sorted(idx) == list(range(1, n_shown + 1)) else "select"
    return "script"


def import_autocut(
    paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *, split: str = "train"
) -> CorpusReport:
    """Convert AutoCut-format SFT files into ours (``sft_<task>_<split>.jsonl`` with meta), validating
    every record's structure and tokens."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for i, rec in enumerate(read_sharegpt(path)):
            where = f"{path} record {i}"
            human, gpt = _exchange(rec, where)
            try:
                T.parse_ad(human)  # structure and code ranges of every clip in the prompt
                task = detect_task(human, gpt)
            except T.TokenFormatError as exc:
                raise SftFormatError(f"{where}: {exc}") from None
            kept = {k: v for k, v in rec.items() if k not in ("conversations", "system", "tools", "meta")}
            meta = {"task": task, "split": split, "source": f"autocut:{Path(path).name}", "index": i}
            if kept:
                meta["extra"] = kept  # fields the public files sometimes carry (sample_id, ad_key, ...)
            by_task[task].append(
                _dumps(
                    {
                        "conversations": rec["conversations"],
                        "system": rec.get("system", ""),
                        "tools": rec.get("tools", ""),
                        "meta": meta,
                    }
                )
            )
    report = CorpusReport(out_dir=str(out))
    for task, lines in by_task.items():
        name = f"sft_{task}_{split}.jsonl"
        report.files[name] = write_lines_atomic(out / name, lines)
    report.seconds = time.perf_counter() - t0
    return report


def export_autocut(paths: Sequence[str | os.PathLike[str]], out_path: str | os.PathLike[str]) -> int:
    """Write our SFT records (any number of files) as one AutoCut-format JSON array; returns the count."""
    records = []
    for path in paths:
        for i, rec in enumerate(read_sharegpt(path)):
            _exchange(rec, f"{path} record {i}")
            out_rec = {
                "conversations": rec["conversations"],
                "system": rec.get("system", ""),
                "tools": rec.get("tools", ""),
            }
            extra = (rec.get("meta") or {}).get("extra")
            if isinstance(extra, dict):
                out_rec.update(extra)  # give back fields an import set aside
            records.append(out_rec)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return len(records)
