"""Running ffmpeg: one command as data (`FfmpegCommand`), run with progress and cancellation.

`run_ffmpeg` is the only place the renderer starts ffmpeg. It reads `-progress pipe:1` output for
progress, stops ffmpeg when the caller's `threading.Event` is set (`RenderCancelled`), and turns a
failure into a `RenderError` quoting the end of ffmpeg's stderr.

The renderer's inputs are footage and music from the library (uploads, in the service), so every
file input is opened as `autocut.library.media` opens media: local files only, through an allow-listed
demuxer (`guard_inputs`), and ffmpeg runs under the configured per-child resource limits.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autocut.errors import RenderError
from autocut.library.media import input_guard_args, limit_prefix

__all__ = ["FfmpegCommand", "RenderCancelled", "guard_inputs", "run_ffmpeg"]

log = logging.getLogger(__name__)


class RenderCancelled(RenderError):
    """The caller asked to stop (its `threading.Event` was set); no output was left behind."""


@dataclass(frozen=True)
class FfmpegCommand:
    """An ffmpeg invocation as data. `cwd` is where relative filter paths (the ASS file) resolve."""

    args: list[str]
    cwd: Path
    duration_s: float  # output duration, for progress


def guard_inputs(args: list[str]) -> list[str]:
    """`args` with the media input guard (`input_guard_args`) before every file input (`-i`); inputs
    given a format of their own (`-f lavfi`, ...) are left as they are."""
    out: list[str] = []
    start = 0  # where the current input's options begin (after the previous `-i <input>`)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-i" and i + 1 < len(args):
            opts = args[start:i]
            forced = any(opts[k] == "-f" for k in range(len(opts) - 1))
            if not forced:
                out.extend(input_guard_args(max_pixels=False))
            out.extend((a, args[i + 1]))
            i += 2
            start = i
            continue
        out.append(a)
        i += 1
    return out


def run_ffmpeg(
    cmd: FfmpegCommand,
    *,
    on_progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
) -> str:
    """Run one ffmpeg command; report progress 0..1; stop it when `cancel` is set. Returns stderr."""
    args = guard_inputs(cmd.args)
    log.debug("ffmpeg: %s", subprocess.list2cmdline(args))
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
        proc = subprocess.Popen(
            [*limit_prefix(), *args],
            cwd=cmd.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            bufsize=1,
        )
        if on_start is not None:
            on_start(proc)
        stopper = _stop_on_cancel(proc, cancel) if cancel is not None else None
        assert proc.stdout is not None
        total_us = max(cmd.duration_s, 1e-3) * 1e6
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if on_progress is None:
                continue
            if key == "out_time_us" and value.lstrip("-").isdigit():
                on_progress(min(1.0, max(0.0, int(value) / total_us)))
            elif key == "progress" and value == "end":
                on_progress(1.0)
        rc = proc.wait()
        if stopper is not None:
            stopper.join(timeout=10)
        err.seek(0)
        stderr = err.read()
    if cancel is not None and cancel.is_set():
        raise RenderCancelled("render cancelled; ffmpeg stopped")
    if rc != 0:
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise RenderError(f"ffmpeg failed (exit code {rc}): {tail or 'no message'}")
    return stderr


def _stop_on_cancel(proc: subprocess.Popen[str], cancel: threading.Event) -> threading.Thread:
    """A started daemon thread that terminates `proc` (then kills it after 5 s) once `cancel` is set."""

    def _watch() -> None:
        while proc.poll() is None:
            if cancel.wait(0.1):
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                return

    stopper = threading.Thread(target=_watch, name="ffmpeg-cancel", daemon=True)
    stopper.start()
    return stopper
