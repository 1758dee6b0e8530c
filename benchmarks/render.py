"""Render benchmark: a 30 s 1080x1920 ad from six 1080p clips, with subtitles, voice-over and BGM.

Prints, all measured in the same run on the same plan:
- AutoCut's one-pass render: wall time and peak memory (Python process + ffmpeg children, RSS);
- the physical floor: decoding the used ranges of the inputs, plus re-encoding the output's own frames
  (decoded to raw beforehand, untimed) with the same encoder settings; target: render <= 1.15x floor;
- MoneyPrinterTurbo's approach: ffmpeg cuts and concatenates the clips, then MoviePy composites the
  subtitles and mixes voice and music in a second full encode; target: AutoCut >= 5x faster.

Inputs are generated once from packaged real footage (scaled to 1080p, light grain, H.264 like phone
footage) into benchmarks/.cache. Run with `nice`; the machine is shared.

    .venv/bin/python -m benchmarks.render [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from autocut.files import atomic_path
from benchmarks.common import cache_dir

log = logging.getLogger(__name__)

# Used when fewer than six packaged sample videos are installed.
LAVFI_SOURCES = [
    "testsrc2=size={s}:rate=30",
    "gradients=size={s}:rate=30:speed=0.02",
    "smptehdbars=size={s}:rate=30",
    "cellauto=rule=110:size={s}:rate=30",
    "rgbtestsrc=size={s}:rate=30",
    "life=size={s}:rate=30:mold=10:ratio=0.1",
]
SENTENCES = [
    "No time for breakfast?",
    "The FreshCo cup blends fruit in thirty seconds.",
    "Fresh juice at home, at work, anywhere.",
    "One button, and the blade rinses itself.",
    "Light enough for any bag.",
    "FreshCo Juicer Cup. Get yours today.",
]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_inputs(cache: Path, *, size: str, duration_s: float) -> list[Path]:
    """Six H.264 clips of real packaged footage scaled to `size` (generated once into `cache`)."""
    from autocut.library.samples import sample_videos

    w, h = size.split("x")
    videos = sample_videos()
    out = []
    for i in range(6):
        p = cache / f"render_clip{i}_{size}_{duration_s:g}s.mp4"
        if not p.exists():
            log.info("generating %s", p)
            if i < len(videos):
                src = ["-stream_loop", "-1", "-t", f"{duration_s}", "-i", str(videos[i])]
                scale = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},fps=30,"
            else:
                src = ["-f", "lavfi", "-i", LAVFI_SOURCES[i].format(s=size) + f",trim=duration={duration_s}"]
                scale = ""
            # Light temporal grain: upscaled sample footage would otherwise be unrealistically cheap to decode.
            with atomic_path(p, suffix=".tmp.mp4") as tmp:
                _ffmpeg(
                    *src,
                    "-f",
                    "lavfi",
                    "-i",
                    f"anoisesrc=color=pink:amplitude=0.02:duration={duration_s}",
                    "-map",
                    "0:v:0",
                    "-map",
                    "1:a:0",
                    "-vf",
                    f"{scale}format=yuv420p,noise=alls=3:allf=t,setsar=1",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-crf",
                    "20",
                    "-g",
                    "60",
                    "-c:a",
                    "aac",
                    "-t",
                    f"{duration_s}",
                    str(tmp),
                )
        out.append(p)
    return out


def music_file() -> Path:
    from autocut.library.samples import sample_music

    music = sample_music()
    if not music:
        raise SystemExit("no packaged music found (install wesnoth-1.16-music or asc-music)")
    return music[0]


def make_plan(inputs: list[Path], *, width: int, height: int, segment_s: float, transition: str):
    from autocut.types import BgmChoice, EditPlan, OutputSpec, PlanSegment, ProductInfo

    segs = [
        PlanSegment(source_path=str(p), start_s=1.0, duration_s=segment_s, sentence=s, clip_id=i + 1)
        for i, (p, s) in enumerate(zip(inputs, SENTENCES))
    ]
    return EditPlan(
        product=ProductInfo(name="Juicer Cup", brand="FreshCo"),
        segments=segs,
        bgm=BgmChoice(path=str(music_file()), start_s=20.0),
        output=OutputSpec(
            width=width,
            height=height,
            transition=transition,
            transition_duration_s=0.3,
            x264_preset="veryfast",
            video_crf=23,
        ),
    )


class PeakRss:
    """Peak resident memory (MB) of this process plus all its children, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, self._sample())

    def __enter__(self) -> PeakRss:
        self.peak_mb = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Cost:
    """Wall time and CPU time (this process + waited-for children) of a block.

    On a shared, loaded machine CPU time is the steadier figure; both are reported.
    """

    def __enter__(self) -> Cost:
        self._t = time.perf_counter()
        self._cpu = self._cpu_now()
        return self

    @staticmethod
    def _cpu_now() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t
        self.cpu_s = self._cpu_now() - self._cpu


def run_autocut(plan, out: Path) -> dict:
    from autocut.render import render

    with PeakRss() as mem, Cost() as cost:
        res = render(plan, out)
    return {
        "wall_s": cost.wall_s,
        "cpu_s": cost.cpu_s,
        "peak_rss_mb": mem.peak_mb,
        "duration_s": res.duration_s,
        "n_frames": res.n_frames,
        "phases_wall_s": res.phase_wall_s,
    }


def run_floor(plan, out: Path, work: Path) -> dict:
    """Decode the used input ranges; re-encode the output's frames from raw with the same settings."""
    from autocut.render import output_fps, place_segments

    fps = output_fps(plan)
    args: list[str] = []
    maps: list[str] = []
    for k, (seg, pl) in enumerate(zip(plan.segments, place_segments(plan))):
        args += ["-ss", f"{seg.start_s}", "-t", f"{float((pl.n_frames + 2) / fps)}", "-i", seg.source_path]
        maps += ["-map", f"{k}:v:0"]
    with Cost() as dec:
        _ffmpeg(*args, *maps, "-f", "null", "-")
    raw = work / "frames.yuv"
    o = plan.output
    _ffmpeg("-i", str(out), "-f", "rawvideo", "-pix_fmt", "yuv420p", str(raw))
    with Cost() as enc:
        _ffmpeg(
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            f"{o.width}x{o.height}",
            "-framerate",
            f"{fps.numerator}/{fps.denominator}",
            "-i",
            str(raw),
            "-c:v",
            "libx264",
            "-preset",
            o.x264_preset,
            "-crf",
            str(o.video_crf),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "mp4",
            str(work / "floor.mp4"),
        )
    raw.unlink()
    return {
        "decode_s": dec.wall_s,
        "encode_s": enc.wall_s,
        "wall_s": dec.wall_s + enc.wall_s,
        "decode_cpu_s": dec.cpu_s,
        "encode_cpu_s": enc.cpu_s,
        "cpu_s": dec.cpu_s + enc.cpu_s,
    }


def run_moneyprinter(plan, work: Path) -> dict:
    """MoneyPrinterTurbo's pipeline on the same plan: ffmpeg cut + concat, then a MoviePy composite."""
    os.environ.setdefault("FFMPEG_BINARY", "/usr/bin/ffmpeg")  # same ffmpeg as everyone else
    from moviepy import AudioFileClip, CompositeAudioClip, CompositeVideoClip, TextClip, VideoFileClip, afx

    from autocut.render import crop_to_aspect, prepare
    from autocut.render import subtitles as subs

    o = plan.output
    with PeakRss() as mem, Cost() as cost:
        t0 = time.perf_counter()
        # The same voice stem and subtitle timing AutoCut uses (TTS is not what is compared).
        p = prepare(plan, work_dir=work)
        parts = []
        for k, s in enumerate(p.segments):
            cw, ch = crop_to_aspect(s.info.width, s.info.height, o.width, o.height)
            part = work / f"part{k}.mp4"
            _ffmpeg(
                "-ss",
                f"{s.segment.start_s}",
                "-t",
                f"{s.segment.duration_s}",
                "-i",
                str(s.source),
                "-vf",
                f"crop={cw}:{ch},scale={o.width}:{o.height},fps={o.fps}",
                "-an",
                "-c:v",
                "libx264",
                "-preset",
                o.x264_preset,
                "-crf",
                str(o.video_crf),
                "-pix_fmt",
                "yuv420p",
                str(part),
            )
            parts.append(part)
        listing = work / "concat.txt"
        listing.write_text("".join(f"file '{x}'\n" for x in parts))
        concat = work / "concat.mp4"
        _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(concat))
        cut_s = time.perf_counter() - t0

        video = VideoFileClip(str(concat))
        font = subs.font_file(plan.subtitles.font)[0]
        size = subs.font_size_px(plan.subtitles, o.width, o.height)
        texts = [
            TextClip(
                font=font,
                text=c.text,
                font_size=size,
                color="white",
                stroke_color="black",
                stroke_width=3,
                method="label",
            )
            .with_start(c.start_s)
            .with_duration(c.end_s - c.start_s)
            .with_position(("center", int(o.height * (1 - plan.subtitles.margin_v_frac)) - size * 2))
            for c in p.cues
        ]
        voice = AudioFileClip(str(p.voice_wav))
        bgm = (
            AudioFileClip(str(p.bgm.path))
            .subclipped(p.bgm.start_s)
            .with_effects([afx.AudioLoop(duration=video.duration), afx.MultiplyVolume(0.2)])
        )
        final = (
            CompositeVideoClip([video, *texts])
            .with_audio(CompositeAudioClip([voice, bgm]))
            .with_duration(video.duration)
        )
        out = work / "moneyprinter.mp4"
        final.write_videofile(
            str(out),
            codec="libx264",
            audio_codec="aac",
            preset=o.x264_preset,
            fps=o.fps,
            threads=os.cpu_count(),
            ffmpeg_params=["-crf", str(o.video_crf), "-pix_fmt", "yuv420p"],
            logger=None,
        )
        final.close()
        video.close()
    return {
        "wall_s": cost.wall_s,
        "cpu_s": cost.cpu_s,
        "cut_concat_s": cut_s,
        "moviepy_s": cost.wall_s - cut_s,
        "peak_rss_mb": mem.peak_mb,
    }


def main(quick: bool = False) -> dict:
    """Run the benchmark; return the figures (quick: 360x640 from 640x360 clips, 2 s segments)."""
    cache = cache_dir()
    if quick:
        inputs = make_inputs(cache, size="640x360", duration_s=5.0)
        plan = make_plan(inputs, width=360, height=640, segment_s=3.25, transition="fade")
    else:
        inputs = make_inputs(cache, size="1920x1080", duration_s=8.0)
        # 6 x 5.25 s with five 0.3 s crossfades = 30.0 s.
        plan = make_plan(inputs, width=1080, height=1920, segment_s=5.25, transition="fade")
    figures: dict = {
        "benchmark": "render",
        "quick": quick,
        "plan_duration_s": plan.duration_s,
        "output": f"{plan.output.width}x{plan.output.height}",
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="autocut-bench-render-") as wd:
        work = Path(wd)
        out = work / "autocut.mp4"
        figures["autocut"] = run_autocut(plan, out)
        figures["floor"] = run_floor(plan, out, work)
        try:
            (work / "mpt").mkdir()
            figures["moneyprinter"] = run_moneyprinter(plan, work / "mpt")
        except ImportError as exc:
            figures["moneyprinter"] = {"skipped": f"moviepy not installed ({exc})"}
    a, fl, m = figures["autocut"], figures["floor"], figures["moneyprinter"]
    # The floor decodes the inputs and encodes the output once; the self-check (a decode of the finished file)
    # is extra work the floor does not do, so the ratio is taken without it and its share is printed beside.
    check_s = float(a["phases_wall_s"].get("selfcheck", 0.0))
    figures["ratio_to_floor"] = (a["wall_s"] - check_s) / fl["wall_s"]
    figures["ratio_to_floor_cpu"] = a["cpu_s"] / fl["cpu_s"]
    figures["selfcheck_share"] = check_s / max(a["wall_s"] - check_s, 1e-9)
    if "wall_s" in m:
        figures["speedup_vs_moneyprinter"] = m["wall_s"] / a["wall_s"]
        figures["speedup_vs_moneyprinter_cpu"] = m["cpu_s"] / a["cpu_s"]
        # No renderer with the same encoder settings can beat the floor, so this bounds the speedup.
        figures["speedup_bound_cpu"] = m["cpu_s"] / fl["cpu_s"]
    return figures


def _print(f: dict) -> None:
    a, fl, m = f["autocut"], f["floor"], f["moneyprinter"]
    print(
        f"render benchmark: {f['plan_duration_s']:.1f} s ad at {f['output']}, 6 clips, voice + subtitles + BGM "
        f"({f['cpus']} CPUs, quick={f['quick']})"
    )
    print(f"  {'':24s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s}")
    print(
        f"  {'autocut one pass':24s} {a['wall_s']:8.1f} {a['cpu_s']:8.1f} {a['peak_rss_mb']:12.0f}   "
        + ", ".join(f"{k} {v:.1f}" for k, v in a["phases_wall_s"].items())
    )
    print(f"  {'floor: decode inputs':24s} {fl['decode_s']:8.1f} {fl['decode_cpu_s']:8.1f}")
    print(f"  {'floor: encode output':24s} {fl['encode_s']:8.1f} {fl['encode_cpu_s']:8.1f}")
    print(
        f"  ratio to floor: {f['ratio_to_floor']:.2f}x wall without the self-check, {f['ratio_to_floor_cpu']:.2f}x cpu "
        f"with it  (target <= 1.15); the self-check adds {100 * f.get('selfcheck_share', 0.0):.0f} % wall"
    )
    if "wall_s" in m:
        print(
            f"  {'moneyprinter approach':24s} {m['wall_s']:8.1f} {m['cpu_s']:8.1f} {m['peak_rss_mb']:12.0f}   "
            f"cut+concat {m['cut_concat_s']:.1f}, moviepy {m['moviepy_s']:.1f}"
        )
        print(
            f"  speedup vs moneyprinter: {f['speedup_vs_moneyprinter']:.1f}x wall, "
            f"{f['speedup_vs_moneyprinter_cpu']:.1f}x cpu  (target >= 5; a zero-overhead renderer would reach "
            f"{f['speedup_bound_cpu']:.1f}x cpu)"
        )
    else:
        print(f"  moneyprinter approach skipped: {m['skipped']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ns = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    figs = main(quick=ns.quick)
    _print(figs)
    if ns.json:
        print(json.dumps(figs, indent=2))
