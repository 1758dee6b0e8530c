"""Planning an edit: request -> candidates -> planner decisions -> grounded, voice-fitted `EditPlan`s.

The stable entry point is `plan_edit` (CLI, API server, worker and evaluation all call it):

    plans = plan_edit(library_dir, request, "heuristic")

Pipeline (AutoCut appendix 7.2; docs/method.md, "Decoding and grounding", "Rendering and voice fit"):
1. the pool becomes candidates (`autocut.planning.candidates`), refused with a clear `PlanError` when an id is
   unknown, an upload is not ingested, or the pool is too large for a prompt;
2. a planner (`autocut.planning.planners`) returns per variant a selection, an order, one sentence per clip
   and a target BGM embedding; `check_decision` enforces the task constraints;
3. grounding (`autocut.planning.grounding`) turns the embeddings into real ids by exact search over the
   pool (by frame: start at the retrieved frame, length = the candidate's stored length; by clip:
   the retrieved visual clip) and the BGM index;
4. each segment is fitted to its sentence's TTS duration (`autocut.speech.tts.estimate_duration_s`): the
   renderer refuses a sentence that cannot fit within +-15 % speech rate, so the planner extends
   the segment inside its source (never over another segment) or speeds the voice up within that
   range, and trims segments to the request's maximum duration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autocut.errors import CatalogError, PlanError
from autocut.library.catalog import Catalog
from autocut.library.ids import frame_id
from autocut.planning.candidates import Candidate, CandidateCache, CandidateConfig, CandidatePool, build_candidates
from autocut.planning.grounding import BgmGrounder, LibraryVideoGrounder, PoolGrounder, SourceWindow
from autocut.planning.planners.base import Decision, Planner, PlanningTask, get_planner
from autocut.planning.voice_fit import MAX_SPEECH_RATE, VOICE_LEAD_S, VOICE_TAIL_S
from autocut.speech.tts import base_words_per_minute
from autocut.speech.words import count_words
from autocut.types import BgmChoice, EditPlan, PlanRequest, PlanSegment, SegmentMode, VoiceSpec

__all__ = [
    "PlanOptions",
    "plan_edit",
    "plan_with_catalog",
]

log = logging.getLogger(__name__)

# Grounding looks at this many nearest frames/clips per chosen candidate, for one whose free source
# time can hold the sentence.
_GROUNDING_K = 8


@dataclass(frozen=True)
class PlanOptions:
    """How plans are assembled (the request says what; these say how)."""

    segment_mode: SegmentMode = "by_frame"
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    # Slack on top of the renderer's voice window (lead + tail silence, crossfades, frame rounding).
    speech_margin_s: float = 0.05
    # Shortest segment a plan may hold (trimming to max_duration_s stops here).
    min_segment_s: float = 1.0
    # Local frame-encoder weights (resnet50 libraries), for embedding a product photo.
    frame_weights: Path | None = None
    # Script length targets in words/s per language (the WCD rates); None = 2.5 en, 5 zh.
    words_per_s: dict[str, float] | None = None
    # Reference edits the heuristic may learn from (never the evaluation split).
    reference_split: str = "train"


# --------------------------------------------------------------------------- entry points


def plan_edit(
    library: str | Path | Catalog,
    request: PlanRequest,
    planner: str | Planner = "heuristic",
    *,
    options: PlanOptions | None = None,
) -> list[EditPlan]:
    """`request.n_variants` distinct plans (fewer only when the pool cannot give more; see notes["variants"]).

    `library` is a library directory or an open `Catalog`; `planner` a name from
    `autocut.planning.planners.PLANNERS` or a planner object. Bad input raises `PlanError` naming the problem.
    """
    if isinstance(library, Catalog):
        return plan_with_catalog(library, request, planner, options=options)
    with Catalog.open(library, create=False) as catalog:
        return plan_with_catalog(catalog, request, planner, options=options)


def plan_with_catalog(
    catalog: Catalog,
    request: PlanRequest,
    planner: str | Planner = "heuristic",
    *,
    options: PlanOptions | None = None,
    pools: CandidateCache | None = None,
    bgm: BgmGrounder | None = None,
) -> list[EditPlan]:
    """`plan_edit` on an open catalog.

    `pools` and `bgm` let a caller that plans many requests share work (the evaluator plans each pool with
    several planners and seeds): candidates come from the cache, BGM is searched with the given grounder of
    this catalog (None: built for this request). The plans are the same either way.
    """
    opts = options or PlanOptions()
    planner_obj = get_planner(planner) if isinstance(planner, str) else planner
    voice = _voice_for(request)
    _check_script(request)
    if pools is not None:
        pool = pools.build(catalog, request.pool, opts.candidates)
    else:
        pool = build_candidates(catalog, request.pool, opts.candidates)
    n_select = len(request.script) if request.script else None
    if n_select is not None and n_select > len(pool):
        raise PlanError(
            f"the script has {n_select} sentences but the pool yields only {len(pool)} candidate "
            "clips (one distinct clip per sentence): add footage or shorten the script"
        )
    bgm_ids, bgm_vecs = catalog.bgm_vectors()
    excluded = {int(a) for a in request.exclude_audio_ids}
    unknown = excluded - {int(a) for a in bgm_ids}
    if unknown:
        log.info("exclude_audio_ids %s are not in the library; ignoring them", sorted(unknown))
    keep = ~np.isin(bgm_ids, list(excluded)) if excluded else np.ones(len(bgm_ids), bool)
    task = PlanningTask(
        request=request,
        pool=pool,
        catalog=catalog,
        library_dir=catalog.root,
        n_select=n_select,
        budget_s=request.max_duration_s,
        bgm_ids=bgm_ids[keep],
        bgm_vectors=bgm_vecs[keep],
        frame_weights=opts.frame_weights,
        words_per_s=opts.words_per_s,
        speech_rate=_speech_rate_fn(voice, _extra_s(request, opts)),
        reference_split=opts.reference_split,
    )
    decisions = planner_obj.plan(task, request.n_variants)
    if not decisions:
        raise PlanError(f"the {planner_obj.name} planner produced no plan for this request")
    grounder, outside_note = _grounder(catalog, request, pool, decisions, opts)
    if bgm is None:
        bgm = BgmGrounder(catalog.root, catalog)
    plans: list[EditPlan] = []
    for k, d in enumerate(decisions):
        try:
            plans.append(
                _assemble(
                    task,
                    d,
                    variant=len(plans),
                    planner_name=planner_obj.name,
                    grounder=grounder,
                    bgm=bgm,
                    voice=voice,
                    opts=opts,
                    outside_note=outside_note,
                )
            )
        except PlanError as exc:
            # A later variant that cannot be grounded or voiced is dropped, not the whole request;
            # the first variant's failure is the request's failure.
            if k == 0:
                raise
            log.warning("dropping variant %d of %s: %s", k + 1, planner_obj.name, exc)
    if len(plans) < request.n_variants:
        for p in plans:
            p.notes["variants"] = (
                f"{len(plans)} distinct plans of {request.n_variants} asked: the pool and script allow no more"
            )
    return plans


# --------------------------------------------------------------------------- request checks


def _voice_for(request: PlanRequest) -> VoiceSpec:
    """The request's voice with its language and base rate settled, as the plan will record it."""
    voice = request.voice
    if voice.language != request.language:
        if voice.name is not None:
            raise PlanError(
                f"voice {voice.name!r} speaks {voice.language!r} but the request's language is {request.language!r}"
            )
        # The default voice follows the request's language (a "zh" request with the default
        # VoiceSpec means Mandarin narration, not English).
        voice = voice.model_copy(update={"language": request.language})
    # The language's default rate (Mandarin speaks faster than English) is written into the plan, so the
    # renderer voices it at the rate its fits were checked with even if the defaults change in between.
    return voice.model_copy(update={"words_per_minute": base_words_per_minute(voice)})


def _check_script(request: PlanRequest) -> None:
    if request.script is None:
        return
    for i, s in enumerate(request.script):
        if not s.strip():
            raise PlanError(f"script line {i + 1} is empty (one sentence per clip)")


# --------------------------------------------------------------------------- assembly


def _grounder(
    catalog: Catalog, request: PlanRequest, pool: CandidatePool, decisions: list[Decision], opts: PlanOptions
) -> tuple[PoolGrounder, str | None]:
    """Exact search over the pool; with `allow_outside_pool`, over the pool plus the library videos whose
    frames (or clips) the library index finds nearest the planner's queries (docs/method.md, "Decoding and grounding").

    Only decisions with their own queries (decoded embeddings) look outside: a baseline's query is a
    pool candidate's own embedding. Returns the grounder and a note for the plan (None: pool only).
    """
    by_frame = opts.segment_mode == "by_frame"
    queries = [q for d in decisions if (q := d.frame_queries if by_frame else d.clip_queries) is not None]
    if not request.allow_outside_pool or not queries:
        return PoolGrounder(pool), None
    try:
        library = LibraryVideoGrounder(catalog.root, catalog, "frames" if by_frame else "clips")
    except PlanError as exc:
        log.warning("allow_outside_pool: %s; grounding in the pool only", exc)
        return PoolGrounder(pool), f"pool only ({exc}; build it with `autocut index rebuild`)"
    hits = library.search(np.concatenate(queries), _GROUNDING_K)
    extra: list[int] = []
    for photo in sorted({photo for row in hits for _, photo, _ in row} - set(pool.sources)):
        try:
            catalog.source(photo)
        except CatalogError:  # an index entry whose video left the catalog
            continue
        extra.append(photo)
    if not extra:
        return PoolGrounder(pool), f"the library's {library.kind} index found the pool nearest every query"
    ids = [*pool.sources, *extra]
    frame_ids, frame_vecs = catalog.frame_vectors(ids)
    clip_ids, clip_vecs = catalog.clip_vectors(ids)
    wide = dataclasses.replace(
        pool,
        sources={**pool.sources, **{p: catalog.source(p) for p in extra}},
        frame_ids=frame_ids,
        frame_vectors=frame_vecs,
        clip_ids=clip_ids,
        clip_vectors=clip_vecs,
        clip_rows={r.clip_id: r for pid in ids for r in catalog.clips(pid)},
    )
    return PoolGrounder(wide), (
        f"pool + {len(extra)} library videos nearest the queries (photo_ids "
        f"{', '.join(map(str, extra))}; {library.kind} index)"
    )


@dataclass
class _Fit:
    start_s: float
    duration_s: float
    rate: float


def _speech_s(sentence: str, voice: VoiceSpec, rate: float) -> float:
    from autocut.speech.tts import estimate_duration_s  # local: loads espeak-ng on first use

    return estimate_duration_s(sentence, voice, rate)


def _fit_span(
    sentence: str,
    voice: VoiceSpec,
    *,
    start_s: float,
    length_s: float,
    lo: float,
    hi: float,
    extra_s: float,
    prefer: str,
) -> _Fit | None:
    """Place a segment of about `length_s` at `start_s` inside free time [lo, hi] so the sentence fits.

    `prefer="extend"` (by frame) lengthens the cut before speeding the voice up; `"rate"` (by
    clip) keeps the visual clip's boundaries and speeds up first. None when nothing fits.
    """
    room = hi - lo
    if room <= 0:
        return None
    length = min(length_s, room)
    start = min(max(start_s, lo), hi - length)
    speech = _speech_s(sentence, voice, 1.0)
    if speech + extra_s <= length + 1e-6:
        return _Fit(start, length, 1.0)
    if prefer == "rate":
        rate = speech / max(length - extra_s, 1e-6)
        fit = _verify(sentence, voice, start, length, rate, extra_s) if rate <= MAX_SPEECH_RATE else None
        if fit is not None:
            return fit
    # Lengthen: keep the retrieved start, grow the end, then grow backwards, inside free time.
    want = speech / (1.0 if prefer == "extend" else MAX_SPEECH_RATE) + extra_s
    want = min(want, room)
    end = min(hi, start + want)
    start = max(lo, end - want)
    length = end - start
    rate = max(1.0, speech / max(length - extra_s, 1e-6))
    if rate > MAX_SPEECH_RATE:
        return None
    return _verify(sentence, voice, start, length, rate, extra_s)


def _verify(sentence: str, voice: VoiceSpec, start: float, length: float, rate: float, extra_s: float) -> _Fit | None:
    """Check the fit with the voice actually synthesised at `rate` (speech is not exactly 1/rate)."""
    for _ in range(3):
        rate = min(max(rate, 1.0), MAX_SPEECH_RATE)
        actual = _speech_s(sentence, voice, round(rate, 3))
        if actual + extra_s <= length + 1e-6:
            return _Fit(start, length, round(rate, 3))
        if rate >= MAX_SPEECH_RATE:
            return None
        rate = rate * (actual + extra_s) / max(length, 1e-6) + 0.005
    return None


def _speech_rate_fn(voice: VoiceSpec, extra_s: float):
    def rate_needed(sentence: str, duration_s: float) -> float | None:
        """Speech rate (>= 1) at which `sentence` fits a segment of `duration_s`; None if above the max."""
        speech = _speech_s(sentence, voice, 1.0)
        room = duration_s - extra_s
        if speech <= room:
            return 1.0
        rate = speech / max(room, 1e-6)
        return rate if rate <= MAX_SPEECH_RATE else None

    return rate_needed


def _extra_s(request: PlanRequest, opts: PlanOptions) -> float:
    """Segment time the voice cannot use (`autocut.render.placement.voice_window_s`): lead and tail silence, half a
    crossfade on each side, and a frame lost to rounding segment boundaries to output frames."""
    trans = request.output.transition_duration_s if request.output.transition != "cut" else 0.0
    return VOICE_LEAD_S + VOICE_TAIL_S + trans + 1.0 / request.output.fps + opts.speech_margin_s


@dataclass
class _GroundingState:
    """What grounding one plan's segments shares: the searcher, the footage already taken, the voice."""

    grounder: PoolGrounder
    window: SourceWindow  # free time per source
    voice: VoiceSpec
    extra_s: float  # segment time the voice cannot use (`_extra_s`)
    mode: SegmentMode
    used_frames: set[int] = field(default_factory=set)
    used_clips: set[int] = field(default_factory=set)
    moved: list[int] = field(default_factory=list)  # 1-based clips grounded outside their candidate's source


@dataclass(frozen=True)
class _GroundingOption:
    """A place in the pool a segment could be cut from."""

    photo_id: int
    start_s: float
    length_s: float
    frame_id: int | None
    clip_id: int | None


def _assemble(
    task: PlanningTask,
    d: Decision,
    *,
    variant: int,
    planner_name: str,
    grounder: PoolGrounder,
    bgm: BgmGrounder,
    voice: VoiceSpec,
    opts: PlanOptions,
    outside_note: str | None = None,
) -> EditPlan:
    request, pool = task.request, grounder.pool  # the request's pool, widened when clips may come from outside
    extra = _extra_s(request, opts)
    state = _GroundingState(
        grounder=grounder,
        voice=voice,
        extra_s=extra,
        mode=opts.segment_mode,
        window=SourceWindow({pid: float(s.duration_s) for pid, s in pool.sources.items()}),
    )
    segments: list[PlanSegment] = []
    trimmed: list[int] = []
    for pos, (ci, sentence) in enumerate(zip(d.order, d.sentences)):
        cand = pool.candidates[ci]
        # Clips still to come keep their own footage: a segment grown to fit its sentence must not eat it.
        reserved = [(c.photo_id, c.start_s, c.end_s) for c in (pool.candidates[j] for j in d.order[pos + 1 :])]
        while True:
            try:
                seg = _ground_one(state, d, pos=pos, cand=cand, sentence=sentence, reserved=reserved)
                break
            except PlanError:
                # A footage-driven line is the planner's own (fitted to the candidate's length); the footage
                # grounding found may leave a little less room. Drop its last word rather than fail; a user's
                # script (script-driven) is never changed.
                shorter = _drop_last_word(sentence) if request.script is None else None
                if shorter is None:
                    raise
                trimmed.append(pos + 1)
                sentence = shorter
        if seg.mode == "by_frame" and any(s.clip_id == seg.clip_id for s in segments if s.clip_id is not None):
            # Two by-frame cuts starting inside one long visual clip are different footage; the shared
            # clip_id would read as reuse, so only the first keeps it.
            seg = seg.model_copy(update={"clip_id": None})
        segments.append(seg)
    segments = _trim_to_budget(segments, request, voice, extra, opts)
    bgm_choice, bgm_note = None, "no BGM (the library has none)"
    if d.bgm_query is not None and bgm.available:
        hits = bgm.search(d.bgm_query, 1, exclude_ids=request.exclude_audio_ids)
        if hits:
            h = hits[0]
            bgm_choice = BgmChoice(path=h.track.source_path, audio_id=h.audio_id, start_s=float(h.track.start_s))
            bgm_note = f"audio_id {h.audio_id} via {bgm.source} search (cosine {h.score:.3f})"
        else:
            bgm_note = "no BGM (every track is excluded)"
    shown = lambda idx: ",".join(str(i + 1) for i in idx)  # noqa: E731 - prompts show 1-based indices
    notes = {
        "variant": f"{variant + 1}",
        "selection": shown(d.selected),
        "order": shown(d.order),
        "grounding": f"{opts.segment_mode} (exact search over the pool's {len(pool.frame_ids)} frames / "
        f"{len(pool.clip_ids)} clips)",
        "bgm": bgm_note,
        **d.notes,
    }
    if state.moved:
        notes["grounding_moved"] = (
            f"clips {', '.join(str(p) for p in state.moved)} were grounded in another source than the chosen "
            "clip's" + (": its own source had no free footage long enough for the line" if d.same_source else "")
        )
    if trimmed:
        notes["grounding_trimmed"] = (
            f"clips {shown([p - 1 for p in sorted(set(trimmed))])} lost trailing words: "
            "their grounded footage was shorter than the line needs"
        )
    if request.allow_outside_pool and planner_name in ("heuristic", "random"):
        notes["outside_pool"] = "baseline planners choose pool clips only"
    elif outside_note is not None:
        notes["outside_pool"] = outside_note
    key = f"{request.model_dump_json()}|{planner_name}|{opts.segment_mode}|{variant}|{d.key()}"
    return EditPlan(
        plan_id=hashlib.sha256(key.encode()).hexdigest()[:16],
        product=request.product,
        scenario=request.scenario,
        language=request.language,
        segments=segments,
        bgm=bgm_choice,
        voice=voice,
        output=request.output,
        planner=planner_name,
        notes=notes,
    )


def _ground_one(
    state: _GroundingState,
    d: Decision,
    *,
    pos: int,
    cand: Candidate,
    sentence: str,
    reserved: list[tuple[int, float, float]],
) -> PlanSegment:
    """Ground the `pos`-th chosen candidate in free pool footage its sentence fits; take that footage."""
    grounder, window, voice, extra, mode = state.grounder, state.window, state.voice, state.extra_s, state.mode
    used_frames, used_clips = state.used_frames, state.used_clips
    pool = grounder.pool
    options: list[_GroundingOption] = []
    if mode == "by_frame":
        q = d.frame_queries[pos] if d.frame_queries is not None else cand.frame_vectors[0]
        skip = used_frames.union(*(grounder.frames_in(p, a, b).tolist() for p, a, b in reserved))
        for hit in grounder.frames(q, _GROUNDING_K, exclude_ids=skip)[0]:
            clip = _clip_at(pool, hit.photo_id, float(hit.frame_index))
            options.append(_GroundingOption(hit.photo_id, float(hit.frame_index), cand.duration_s, hit.frame_id, clip))
    else:
        q = d.clip_queries[pos] if d.clip_queries is not None else cand.vector
        skip = used_clips.union(*(grounder.clips_overlapping(p, a, b) for p, a, b in reserved))
        for clip_hit in grounder.clips(q, _GROUNDING_K, exclude_ids=skip)[0]:
            first = math.ceil(clip_hit.start_s - 1e-6)
            options.append(
                _GroundingOption(
                    clip_hit.photo_id,
                    clip_hit.start_s,
                    clip_hit.end_s - clip_hit.start_s,
                    frame_id(clip_hit.photo_id, first),
                    clip_hit.clip_id,
                )
            )
    if d.same_source:
        # The planner named this candidate: ground it there first (its own span, then retrieved places
        # inside it), then elsewhere in its source, and in another source only when none of those leaves
        # room for the line. (A retrieved frame late in the clip would carry the cut into the next shot.)
        own_len = cand.duration_s
        if d.durations_s is not None and pos < len(d.durations_s):
            own_len = max(0.5, min(cand.duration_s, float(d.durations_s[pos])))
        own = _GroundingOption(
            cand.photo_id,
            cand.start_s,
            own_len,
            frame_id(cand.photo_id, math.ceil(cand.start_s - 1e-6)),
            cand.clip_id,
        )
        inside = [o for o in options if o.photo_id == cand.photo_id and cand.start_s - 1e-6 <= o.start_s < cand.end_s]
        options = (
            [own]
            + inside
            + [o for o in options if o.photo_id == cand.photo_id and o not in inside]
            + [o for o in options if o.photo_id != cand.photo_id]
        )
    if not options:
        raise PlanError(f"clip {pos + 1}: nothing left in the pool to ground it to (pool too small for the plan)")
    for opt in options:
        photo, fid, cid = opt.photo_id, opt.frame_id, opt.clip_id
        lo, hi = window.free_span(photo, opt.start_s, reserved)
        fit = _fit_span(
            sentence,
            voice,
            start_s=opt.start_s,
            length_s=opt.length_s,
            lo=lo,
            hi=hi,
            extra_s=extra,
            prefer="extend" if mode == "by_frame" else "rate",
        )
        if fit is None:
            continue
        end = fit.start_s + fit.duration_s
        if photo != cand.photo_id:
            state.moved.append(pos + 1)
        window.take(photo, fit.start_s, end)
        used_frames.update(int(f) for f in grounder.frames_in(photo, fit.start_s, end))
        used_clips.update(grounder.clips_overlapping(photo, fit.start_s, end))
        src = pool.sources[photo]
        if mode == "by_frame":
            # Clamping may move the start off the retrieved frame (e.g. near the source's end): record
            # the frame the cut actually starts on, and the visual clip holding it.
            fid = frame_id(photo, min(math.ceil(fit.start_s - 1e-6), src.n_frames - 1))
            cid = _clip_at(pool, photo, fit.start_s)
        start_ms = round(fit.start_s, 3)
        # Floor to the millisecond so rounding never pushes a segment past its source's end.
        dur_ms = math.floor(min(fit.duration_s, src.duration_s - start_ms) * 1000) / 1000
        return PlanSegment(
            source_path=src.path,
            start_s=start_ms,
            duration_s=dur_ms,
            sentence=sentence,
            mode=mode,
            photo_id=photo,
            clip_id=cid,
            frame_id=fid,
            speech_rate=fit.rate,
        )
    speech = _speech_s(sentence, voice, 1.0)
    spans = [window.free_span(o.photo_id, o.start_s, reserved) for o in options]
    best_room = max(hi - lo for lo, hi in spans)
    raise PlanError(
        f"clip {pos + 1}: the sentence {sentence!r} needs {speech / MAX_SPEECH_RATE + extra:.1f} s even at "
        f"{MAX_SPEECH_RATE:.2f}x speech, but the best-matching footage offers at most {best_room:.1f} s: "
        "shorten the sentence or add longer footage"
    )


def _drop_last_word(sentence: str) -> str | None:
    """`sentence` without its last word (its last character for unspaced CJK text); None if one is left."""
    words = sentence.split()
    if len(words) > 1:
        return " ".join(words[:-1])
    return sentence[:-1] if len(sentence) > 1 and count_words(sentence) > 1 else None


def _clip_at(pool: CandidatePool, photo_id: int, t_s: float) -> int | None:
    for cid, r in pool.clip_rows.items():
        if r.photo_id == photo_id and r.start_s - 1e-6 <= t_s < r.end_s:
            return cid
    return None


def _trim_to_budget(
    segments: list[PlanSegment], request: PlanRequest, voice: VoiceSpec, extra: float, opts: PlanOptions
) -> list[PlanSegment]:
    """Shorten segment ends (never below their narration) until the plan fits `max_duration_s`."""
    trans = request.output.transition_duration_s if request.output.transition != "cut" else 0.0
    overlap = trans * (len(segments) - 1)
    total = sum(s.duration_s for s in segments) - overlap
    budget = request.max_duration_s
    if total <= budget + 1e-6:
        return segments
    floors = []
    for s in segments:
        speech = _speech_s(s.sentence, voice, s.speech_rate)
        floors.append(min(s.duration_s, max(opts.min_segment_s, speech + extra)))
    slack = [s.duration_s - f for s, f in zip(segments, floors)]
    excess = total - budget
    if sum(slack) + 1e-6 < excess:
        raise PlanError(
            f"the plan needs at least {sum(floors) - overlap:.1f} s for its narration but "
            f"max_duration_s is {budget:.1f} s: shorten the script or raise max_duration_s"
        )
    # Take the excess from each segment in proportion to its slack (long shots give the most).
    share = excess / sum(slack)
    return [
        s.model_copy(update={"duration_s": math.floor((s.duration_s - sl * share) * 1000) / 1000})
        for s, sl in zip(segments, slack)
    ]
