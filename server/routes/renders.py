"""POST /v1/renders: render a plan sent back by the client; GET the segment thumbnails of a planned job.

The review loop: `POST /v1/edits` with `"stop_after": "plan"` plans without rendering; the job's `plans`
hold each plan as a `RenderPlan` (ids, never paths) with a thumbnail per segment. The client edits a plan
(swap a clip, change a line, change or drop the music, reorder segments) and POSTs it here; it is
rendered as a new job (`kind: render`), at `quality` final or preview.

Nothing in a plan is trusted. Before anything is stored, every reference and figure is checked again,
in this order, and the first problem is answered with 422 naming its field (`segments[2].photo_id: ...`):
each segment's video (a library video, or an upload of this key once ingested: the same owner checks as
edits) and its span inside that video; no footage used twice; the music track; the voice; the duration
budget (`max_duration_s`); room for the transitions; the voice fit of each line in its segment (the
renderer's speech-rate check, +-15 %; for piper voices it is left to the worker, which fails the job
naming the segment). Paths are never taken from the client: the worker looks every id up in the library.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials

from autocut.errors import AutoCutError, CatalogError
from autocut.library.catalog import SourceRow
from autocut.render.outputs import thumbnail_name
from autocut.types import BgmChoice, EditPlan
from server.auth import api_key_header, bearer_scheme
from server.ids import new_id
from server.jobspec import RenderJobSpec, build_edit_plan
from server.routes.common import ERROR_RESPONSES, KeyDep, ServicesDep, api_error, signed_or_key, thumbnail_link
from server.routes.edits import IdempotencyKey, Resolver, accepted, admit, request_fingerprint
from server.schemas import JOB_ID_PATTERN, ErrorBody, JobAccepted, PlanSegmentIn, RenderRequest
from server.store import ACTIVE_STATES, JobState, NewJob

__all__ = ["router"]

router = APIRouter(tags=["edits"])

# A span may end this far past its video's end (container durations are rounded; half a frame at 30 fps).
_END_SLACK_S = 0.5 / 30


class _PlanChecker:
    """Checks one `RenderRequest` against the library and the caller's uploads (see the module doc)."""

    def __init__(self, res: Resolver) -> None:
        self.res = res
        self.s = res.s
        self.key = res.p.key_id

    def check(self, req: RenderRequest) -> RenderJobSpec:
        sources = [self._video(i, seg) for i, seg in enumerate(req.segments)]
        for i, (seg, src) in enumerate(zip(req.segments, sources)):
            self._span(i, seg, src)
        self._reuse(req, sources)
        bgm = self._music(req)
        self._voice(req)
        photo_ids = [src.photo_id for src in sources]
        try:
            plan = build_edit_plan(req, photo_ids, [src.path for src in sources], bgm, "check")
        except ValueError as exc:  # pydantic's ValidationError is one
            raise api_error(422, "invalid_plan", f"the plan is not valid: {exc}") from None
        self._budget(req, plan)
        self._transitions(plan)
        self._voice_fit(plan)
        return RenderJobSpec(request=req, photo_ids=photo_ids)

    def _video(self, i: int, seg: PlanSegmentIn) -> SourceRow:
        cat = self.res.catalog()
        if seg.clip_id is not None:
            field = f"segments[{i}].clip_id"
            clip = self.s.store.get_clip(seg.clip_id)
            if clip is None or clip.owner != self.key or clip.kind != "video":
                raise api_error(422, "unknown_clip", f"{field}: clip {seg.clip_id} does not exist")
            job = self.s.store.get_job(clip.job_id) if clip.job_id else None
            if job is not None and job.state in ACTIVE_STATES:
                raise api_error(
                    422,
                    "clip_not_ready",
                    f"{field}: clip {seg.clip_id} is still being ingested; "
                    f"send the plan again once GET /v1/clips/{seg.clip_id} says ready",
                )
            if job is not None and job.state in (JobState.FAILED, JobState.CANCELLED):
                raise api_error(
                    422, "clip_not_usable", f"{field}: clip {seg.clip_id} could not be ingested: {job.error_message}"
                )
            pid = cat.has_source(clip.sha256)
            if pid is None:
                raise api_error(422, "clip_not_usable", f"{field}: clip {seg.clip_id} is not in the library")
            return cat.source(pid)
        field = f"segments[{i}].photo_id"
        try:
            src = cat.source(int(seg.photo_id))  # type: ignore[arg-type]  # one of the two is set
        except CatalogError:
            raise api_error(422, "unknown_video", f"{field}: video {seg.photo_id} is not in the library") from None
        if self.s.layout.is_upload(src.path) and not self.s.store.owned_upload_hashes(self.key, [src.content_hash]):
            # Another key's upload: indistinguishable from a missing id.
            raise api_error(422, "unknown_video", f"{field}: video {seg.photo_id} is not in the library")
        return src

    @staticmethod
    def _span(i: int, seg: PlanSegmentIn, src: SourceRow) -> None:
        if seg.start_s >= src.duration_s:
            raise api_error(
                422,
                "span_outside_source",
                f"segments[{i}].start_s: {seg.start_s:.3f} s is past the end of video {src.photo_id} "
                f"({src.duration_s:.3f} s)",
            )
        end = seg.start_s + seg.duration_s
        if end > src.duration_s + _END_SLACK_S:
            raise api_error(
                422,
                "span_outside_source",
                f"segments[{i}].duration_s: the span {seg.start_s:.3f}-{end:.3f} s ends past the end of video "
                f"{src.photo_id} ({src.duration_s:.3f} s); from {seg.start_s:.3f} s it can last at most "
                f"{src.duration_s - seg.start_s:.3f} s",
            )

    @staticmethod
    def _reuse(req: RenderRequest, sources: list[SourceRow]) -> None:
        """No two segments share footage (as the renderer requires; a frame of overlap is tolerated)."""
        for j, b in enumerate(req.segments):
            for i in range(j):
                a = req.segments[i]
                if sources[i].photo_id != sources[j].photo_id:
                    continue
                overlap = min(a.start_s + a.duration_s, b.start_s + b.duration_s) - max(a.start_s, b.start_s)
                if overlap > 1.0 / 30:
                    raise api_error(
                        422,
                        "footage_reused",
                        f"segments[{j}].start_s: its span {b.start_s:.3f}-{b.start_s + b.duration_s:.3f} s of video "
                        f"{sources[j].photo_id} overlaps segments[{i}] ({a.start_s:.3f}-{a.start_s + a.duration_s:.3f}"
                        " s); each piece of footage is used once",
                    )

    def _music(self, req: RenderRequest) -> BgmChoice | None:
        m = req.music
        if m is None:
            return None
        try:
            track = self.res.catalog().bgm_track(m.audio_id)
        except CatalogError:
            track = None
        if track is None or not FilePath(track.source_path).is_file():
            raise api_error(422, "unknown_bgm", f"music.audio_id: track {m.audio_id} is not in the library")
        start = track.start_s if m.start_s is None else m.start_s
        end = track.start_s + track.duration_s
        if start >= end:
            raise api_error(
                422,
                "bad_music_start",
                f"music.start_s: {start:.3f} s is past the end of track {m.audio_id} ({end:.3f} s)",
            )
        return BgmChoice(path=track.source_path, audio_id=track.audio_id, start_s=start)

    @staticmethod
    def _voice(req: RenderRequest) -> None:
        v = req.voice
        if v.engine != "espeak" or v.name is None:
            return  # defaults always exist; piper voices are checked by the worker (loading one is heavy)
        from autocut.speech.tts import check_voice
        from autocut.types import VoiceSpec

        try:
            check_voice(VoiceSpec(engine="espeak", name=v.name, language=req.language))
        except AutoCutError as exc:
            raise api_error(422, "unknown_voice", f"voice.name: {exc}") from None

    @staticmethod
    def _budget(req: RenderRequest, plan: EditPlan) -> None:
        if plan.duration_s > req.max_duration_s + 1e-3:
            raise api_error(
                422,
                "over_budget",
                f"max_duration_s: the segments last {plan.duration_s:.3f} s, more than the budget of "
                f"{req.max_duration_s:.3f} s; shorten or drop segments (or raise max_duration_s, at most 120 s)",
            )

    @staticmethod
    def _transitions(plan: EditPlan) -> None:
        from autocut.render.placement import place_segments

        o = plan.output
        for k, pl in enumerate(place_segments(plan)):
            if pl.n_frames <= pl.overlap_in_frames + pl.overlap_out_frames:
                raise api_error(
                    422,
                    "segment_too_short",
                    f"segments[{k}].duration_s: {plan.segments[k].duration_s:.3f} s is too short for {o.transition} "
                    f"transitions of {o.transition_duration_s:.2f} s on both sides",
                )

    @staticmethod
    def _voice_fit(plan: EditPlan) -> None:
        """Each line's narration fits its segment's voice window at a speech rate within the renderer's band
        (`autocut.planning.voice_fit.fit_rate`, as `autocut.render.preparation` checks it)."""
        if plan.voice.engine != "espeak":
            return  # none: nothing to fit; piper: the worker checks (loading a piper voice here is heavy)
        from autocut.planning.voice_fit import MAX_SPEECH_RATE, fit_rate
        from autocut.render.placement import place_segments, voice_window_s

        for k, (seg, pl) in enumerate(zip(plan.segments, place_segments(plan))):
            w0, w1 = voice_window_s(plan, pl)
            avail = w1 - w0
            try:
                _rate, dur = fit_rate(seg.sentence, plan.voice, 1.0, avail)
            except AutoCutError as exc:
                raise api_error(422, "line_not_speakable", f"segments[{k}].line: {exc}") from None
            if dur > avail + 1e-6:
                need = seg.duration_s + (dur - avail)
                raise api_error(
                    422,
                    "line_too_long",
                    f"segments[{k}].line: {seg.sentence!r} takes {dur:.2f} s to say even at {MAX_SPEECH_RATE:.2f}x "
                    f"speed, but the segment leaves {max(avail, 0.0):.2f} s for the voice; shorten the line or "
                    f"lengthen the segment to at least {need:.2f} s",
                )


_RENDER_BODY = Body(
    openapi_examples={
        "preview": {
            "summary": "A plan from a stop_after=plan job, edited, rendered as a quick preview",
            "value": {
                "product": {"name": "Juicer Cup", "brand": "FreshCo", "selling_points": ["juice in 30 seconds"]},
                "voice": {"engine": "espeak"},
                "output": {"aspect": "9:16", "resolution": 1080, "subtitles": True},
                "max_duration_s": 30,
                "music": {"audio_id": 1},
                "segments": [
                    {"photo_id": 2, "start_s": 0.0, "duration_s": 3.0, "line": "No time for breakfast?"},
                    {"photo_id": 1, "start_s": 4.0, "duration_s": 3.5, "line": "Fresh juice in seconds."},
                ],
                "quality": "preview",
            },
        },
        "final-no-music": {
            "summary": "The same plan without music, final quality",
            "value": {
                "product": {"name": "Juicer Cup"},
                "music": None,
                "segments": [
                    {"photo_id": 2, "start_s": 0.0, "duration_s": 3.0, "line": "No time for breakfast?"},
                    {"clip_id": "clp_0123456789abcdef01234567", "start_s": 0.0, "duration_s": 3.5, "line": "Juice."},
                ],
            },
        },
    }
)


@router.post(
    "/v1/renders",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        **ERROR_RESPONSES,
        202: {
            "description": "Accepted; poll the Location",
            "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's status URL"}},
        },
        422: {
            "model": ErrorBody,
            "description": "The plan cannot be rendered; the message starts with the first bad field "
            "(e.g. `segments[2].photo_id: video 99 is not in the library`)",
        },
    },
    summary="Render a plan (from a stop_after=plan job, edited or not) as a new job",
)
def create_render(
    response: Response,
    req: Annotated[RenderRequest, _RENDER_BODY],
    principal: KeyDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    res = Resolver(services, principal)
    try:
        spec = _PlanChecker(res).check(req)
    finally:
        res.close()
    job = NewJob(job_id=new_id("job"), kind="render", spec=spec.model_dump(mode="json"))
    fp = request_fingerprint("renders", req.model_dump(mode="json"))
    st, ids, _ = admit(services, principal, [job], idem=idempotency_key, fingerprint=fp)
    return accepted(response, services, st, ids[0])


@router.get(
    "/v1/jobs/{job_id}/plans/{variant}/thumbnails/{segment}",
    response_class=FileResponse,
    responses={
        **ERROR_RESPONSES,
        200: {"description": "The JPEG", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        403: {"model": ErrorBody, "description": "Invalid or expired signed link"},
    },
    tags=["jobs"],
    summary="A segment thumbnail of a planned (stop_after=plan) job",
)
def get_thumbnail(
    request: Request,
    services: ServicesDep,
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, examples=["job_0123456789abcdef01234567"])],
    variant: Annotated[int, Path(ge=1, le=8)],
    segment: Annotated[int, Path(ge=0, le=49, description="Index in the plan's `segments`, from 0")],
    expires: Annotated[int | None, Query(ge=0, le=2**40, description="Signed links: expiry (Unix s)")] = None,
    signature: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{32}$", description="Signed links: the signature")
    ] = None,
    api_key: str | None = Depends(api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Response:
    link = thumbnail_link(job_id, variant, segment)
    principal = signed_or_key(request, services, job_id, link, expires, signature, api_key, bearer)
    job = services.store.get_job(job_id)
    if job is None or (principal is not None and job.owner != principal.key_id):
        raise api_error(404, "not_found", f"job {job_id} does not exist")
    if job.state != JobState.DONE:
        raise api_error(404, "not_ready", f"job {job_id} has no results (state {job.state})")
    found = next((r for r in job.results if r.get("type") == "plan" and r.get("variant") == variant), None)
    if found is None:
        raise api_error(404, "not_found", f"job {job_id} has no plan {variant}")
    if segment >= len(found["plan"]["segments"]):
        raise api_error(404, "not_found", f"plan {variant} of job {job_id} has no segment {segment}")
    path = services.layout.variant_dir(job_id, variant) / thumbnail_name(segment)
    if not path.is_file():
        raise api_error(404, "not_found", f"the thumbnail of segment {segment} of job {job_id} is missing")
    return FileResponse(
        path, media_type="image/jpeg", filename=f"{job_id}-v{variant}-{segment}.jpg", content_disposition_type="inline"
    )
