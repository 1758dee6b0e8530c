"""OpenTimelineIO export of a rendered edit, so an editor can open the cut in their NLE.

Times are frames at the output rate. A crossfade of T frames between two segments is written the
OTIO way: each clip's source range is trimmed to the cut point in the middle of the overlap and the
`Transition` takes its in/out offsets from the clips' media handles (which exist: the renderer used
that media for the crossfade).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import opentimelineio as otio

from autocut.files import atomic_path

__all__ = ["TimelineAudio", "TimelineItem", "build_timeline", "read_cuts", "write_otio"]

OTIO_METADATA_KEY = "autocut"


@dataclass(frozen=True)
class TimelineItem:
    """One segment as placed in the output."""

    name: str
    source_path: Path
    source_duration_s: float
    start_s: float  # media in-point of the whole segment (including transition overlaps)
    n_frames: int  # output frames the segment occupies, overlaps included
    transition_in_frames: int = 0  # overlap with the previous segment
    transition_out_frames: int = 0  # overlap with the next segment
    sentence: str = ""
    # Narration inside the segment, seconds from the segment's first output frame (None = no voice).
    voice_offset_s: float | None = None
    voice_duration_s: float = 0.0
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineAudio:
    """An audio file laid from output time 0 (BGM or the voice stem)."""

    name: str
    path: Path
    start_s: float  # media in-point
    duration_s: float  # output duration covered
    media_duration_s: float  # length of the file (looped when shorter than needed)


def _rt(frames: float, fps: float) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(frames, fps)


def _range(start_frames: float, dur_frames: float, fps: float) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(_rt(start_frames, fps), _rt(dur_frames, fps))


def _media(path: Path, duration_s: float, fps: float) -> otio.schema.ExternalReference:
    return otio.schema.ExternalReference(
        target_url=Path(path).resolve().as_uri(), available_range=_range(0, duration_s * fps, fps)
    )


def build_timeline(
    name: str,
    items: Sequence[TimelineItem],
    *,
    fps: float,
    transition_name: str = "cut",
    audio: Sequence[TimelineAudio] = (),
) -> otio.schema.Timeline:
    """A timeline with one video track (clips + transitions) and one track per audio stem."""
    tl = otio.schema.Timeline(name=name)
    tl.global_start_time = _rt(0, fps)
    video = otio.schema.Track(name="Video", kind=otio.schema.TrackKind.Video)
    for k, it in enumerate(items):
        cut_in = it.transition_in_frames // 2 if k > 0 else 0
        cut_out = it.transition_out_frames - it.transition_out_frames // 2 if k + 1 < len(items) else 0
        if k > 0 and it.transition_in_frames > 0:
            t = it.transition_in_frames
            video.append(
                otio.schema.Transition(
                    name=transition_name,
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve
                    if transition_name in ("fade", "dissolve")
                    else otio.schema.TransitionTypes.Custom,
                    in_offset=_rt(t // 2, fps),
                    out_offset=_rt(t - t // 2, fps),
                    metadata={OTIO_METADATA_KEY: {"xfade": transition_name}},
                )
            )
        media_in = it.start_s * fps + cut_in
        clip = otio.schema.Clip(
            name=it.name,
            media_reference=_media(it.source_path, it.source_duration_s, fps),
            source_range=_range(media_in, it.n_frames - cut_in - cut_out, fps),
            metadata={
                OTIO_METADATA_KEY: {
                    "sentence": it.sentence,
                    "segment_index": k,
                    "start_s": it.start_s,
                    "n_frames": it.n_frames,
                    **it.metadata,
                }
            },
        )
        if it.voice_offset_s is not None and it.sentence:
            # Markers live in the clip's media time.
            clip.markers.append(
                otio.schema.Marker(
                    name=it.sentence,
                    color=otio.schema.MarkerColor.YELLOW,
                    marked_range=_range(it.start_s * fps + it.voice_offset_s * fps, it.voice_duration_s * fps, fps),
                )
            )
        video.append(clip)
    tl.tracks.append(video)
    for a in audio:
        track = otio.schema.Track(name=a.name, kind=otio.schema.TrackKind.Audio)
        remaining = a.duration_s
        pos = a.start_s
        while remaining > 1e-6:
            # Loop the file when it is shorter than the edit, as the renderer does.
            take = min(remaining, a.media_duration_s - pos)
            if take <= 1e-6:
                pos = 0.0
                continue
            track.append(
                otio.schema.Clip(
                    name=a.name,
                    media_reference=_media(a.path, a.media_duration_s, fps),
                    source_range=_range(pos * fps, take * fps, fps),
                )
            )
            remaining -= take
            pos = 0.0
        tl.tracks.append(track)
    return tl


def write_otio(timeline: otio.schema.Timeline, path: Path) -> Path:
    """Write `timeline` as .otio JSON atomically."""
    # The adapter picks the format by the file's extension, so the temporary name keeps ".otio".
    with atomic_path(path, suffix=".tmp.otio") as tmp:
        otio.adapters.write_to_file(timeline, str(tmp))
    return path


def read_cuts(path: Path) -> list[tuple[str, float, float]]:
    """(source path, media in-point s, duration s) of each video clip in an .otio file, untrimmed.

    Transitions' handles are added back, so the result equals the plan's segments.
    """
    tl = otio.adapters.read_from_file(str(path))
    out: list[tuple[str, float, float]] = []
    track = tl.video_tracks()[0]
    children = list(track)
    for k, item in enumerate(children):
        if not isinstance(item, otio.schema.Clip):
            continue
        before = children[k - 1] if k > 0 else None
        after = children[k + 1] if k + 1 < len(children) else None
        head = before.in_offset.to_seconds() if isinstance(before, otio.schema.Transition) else 0.0
        tail = after.out_offset.to_seconds() if isinstance(after, otio.schema.Transition) else 0.0
        sr = item.source_range
        url = item.media_reference.target_url
        src = otio.url_utils.filepath_from_url(url) if url.startswith("file:") else url
        out.append((src, sr.start_time.to_seconds() - head, sr.duration.to_seconds() + head + tail))
    return out
