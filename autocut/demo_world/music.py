"""BGM for the demo world: packaged music tracks, cut into excerpts by ingest, labelled with a mood.

The tracks are real music from registry packages (wesnoth-1.16-music, asc-music). They are copied
into the library's `world/music/` (so the library is self-contained), ingested as BGM (ingest cuts
them into 20-30 s excerpts), and each excerpt gets a mood from measured audio features: loudness,
onset rate, tempo and spectral centroid combine into one "arousal" score whose quartiles are the
moods calm < warm < playful < energetic. Categories map to moods (`products.Category.mood`),
so an ad's BGM is drawn from excerpts whose mood matches its category.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.demo_world.media import probe_duration
from autocut.errors import MediaError

__all__ = ["MOODS", "MoodFeatures", "assign_moods", "excerpt_features", "prepare_tracks", "track_waveform"]

log = logging.getLogger(__name__)

# Ordered by arousal (quartiles of the score).
MOODS = ("calm", "warm", "playful", "energetic")
ANALYSIS_RATE_HZ = 8000  # features below 4 kHz are enough for loudness/onsets/tempo, and decode is cheap


@dataclass(frozen=True)
class MoodFeatures:
    tempo_bpm: float
    loudness_db: float  # mean RMS in dBFS
    onset_rate_hz: float  # detected onsets per second
    centroid_hz: float


def prepare_tracks(
    music_dir: Path,
    *,
    max_tracks: int | None = None,
    max_track_s: float | None = None,
    max_total_s: float | None = None,
    min_track_s: float = 20.0,
) -> list[Path]:
    """Copy packaged music into `music_dir` (or cut the first `max_track_s` seconds); cached by file name.

    Tracks shorter than `min_track_s` (jingles) are left out: an excerpt needs 20-30 s. Tracks are
    taken spread over the packages until `max_tracks` tracks or `max_total_s` seconds are reached.
    """
    from autocut.library.samples import sample_music

    candidates = sample_music()
    if candidates and (max_tracks is not None or max_total_s is not None):
        # Spread the pick over the list (both packages, several moods) rather than the first few:
        # every other track first, then the rest.
        step = max(1, len(candidates) // max_tracks) if max_tracks is not None else 2
        candidates = candidates[::step] + [c for i, c in enumerate(candidates) if i % step]
    tracks = []
    total_s = 0.0
    for p in candidates:  # probed lazily: the small world needs only a couple
        d = probe_duration(p)
        if d >= min_track_s:
            tracks.append((p, d))
            total_s += min(d, max_track_s or d)
        if max_tracks is not None and len(tracks) >= max_tracks:
            break
        if max_total_s is not None and total_s >= max_total_s:
            break
    if not tracks:
        raise MediaError("packaged music", "no music tracks found; install wesnoth-1.16-music / asc-music (make setup)")
    music_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for p, d in tracks:
        if max_track_s is not None and d > max_track_s:
            dst = music_dir / f"{p.stem}-first{int(max_track_s)}s{p.suffix}"
            if not dst.exists():
                tmp = dst.with_name(dst.name + ".tmp")
                fmt = {".ogg": "ogg", ".mp3": "mp3"}.get(p.suffix.lower(), "ogg")
                res = subprocess.run(
                    [
                        "ffmpeg",
                        "-nostdin",
                        "-hide_banner",
                        "-loglevel",
                        "error",
                        "-y",
                        "-i",
                        str(p),
                        "-t",
                        f"{max_track_s}",
                        "-map",
                        "0:a:0",
                        "-c",
                        "copy",
                        "-f",
                        fmt,
                        str(tmp),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if res.returncode != 0:
                    raise MediaError(p, f"ffmpeg could not cut the track: {res.stderr.strip()[-300:]}")
                os.replace(tmp, dst)
        else:
            dst = music_dir / p.name
            if not dst.exists() or dst.stat().st_size != p.stat().st_size:
                tmp = dst.with_name(dst.name + ".tmp")
                shutil.copyfile(p, tmp)
                os.replace(tmp, dst)
        out.append(dst)
    return out


def track_waveform(path: str | os.PathLike[str], sample_rate_hz: int = ANALYSIS_RATE_HZ) -> np.ndarray:
    """Whole file decoded by ffmpeg to mono float32 at `sample_rate_hz` (fast; one process per track)."""
    res = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(sample_rate_hz),
            "-f",
            "s16le",
            "pipe:1",
        ],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        raise MediaError(path, f"ffmpeg could not decode audio: {res.stderr.decode(errors='replace')[-300:]}")
    return np.frombuffer(res.stdout, np.int16).astype(np.float32) / 32768.0


def excerpt_features(wave: np.ndarray, sample_rate_hz: int = ANALYSIS_RATE_HZ) -> MoodFeatures:
    """Loudness, onset rate, tempo and brightness of one excerpt (librosa)."""
    import librosa

    if len(wave) < sample_rate_hz:
        raise MediaError("excerpt", f"too short for mood analysis ({len(wave) / sample_rate_hz:.2f} s)")
    hop = 256
    env = librosa.onset.onset_strength(y=wave, sr=sample_rate_hz, hop_length=hop)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=env, sr=sample_rate_hz, hop_length=hop))[0])
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=sample_rate_hz, hop_length=hop)
    rms = librosa.feature.rms(y=wave, hop_length=hop)[0]
    centroid = librosa.feature.spectral_centroid(y=wave, sr=sample_rate_hz, hop_length=hop)[0]
    duration_s = len(wave) / sample_rate_hz
    return MoodFeatures(
        tempo_bpm=round(tempo, 1),
        loudness_db=round(float(20 * np.log10(rms.mean() + 1e-9)), 2),
        onset_rate_hz=round(len(onsets) / duration_s, 3),
        centroid_hz=round(float(centroid.mean()), 1),
    )


def assign_moods(features: Sequence[MoodFeatures]) -> list[str]:
    """Moods by quartile of an arousal score (z-scored loudness + onset rate + half tempo + half centroid)."""
    if not features:
        return []
    f = np.array([[x.loudness_db, x.onset_rate_hz, x.tempo_bpm, x.centroid_hz] for x in features], np.float64)
    z = (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), 1e-9)
    score = z[:, 0] + z[:, 1] + 0.5 * z[:, 2] + 0.5 * z[:, 3]
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    q = np.minimum((ranks * len(MOODS)) // len(features), len(MOODS) - 1)
    return [MOODS[int(i)] for i in q]
