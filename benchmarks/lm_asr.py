"""Reference-edit recovery from finished ads: English and Mandarin, packaged whisper-base on CPU.

For each language a synthetic ad speaks a known 5-sentence script (espeak-ng) over a chord bed
(`autocut.lm.synthetic_ad`); `autocut.library.ads.sentences_from_audio` recovers the sentences. Reported:
word error rate (character error rate for Mandarin), sentences found vs spoken, worst boundary error,
ASR time vs audio length (real-time factor), and the same with whisper's language detection instead of
the known language. Baseline in the same run: the ASR-only boundaries (no VAD snapping).

Run: nice .venv/bin/python -m benchmarks.lm_asr [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import cache_dir, print_table

SCRIPTS = {
    "en": [
        "No time for breakfast?",
        "This juicer cup makes fresh juice in thirty seconds.",
        "The blade comes out, so cleaning takes one rinse.",
        "Charge it once and it lasts a whole week.",
        "Get yours today and start every morning right.",
    ],
    "zh": [
        "早上没时间吃早饭吗？",
        "这款榨汁杯三十秒就能做好新鲜果汁。",
        "刀头可以拆下来，冲一下就干净了。",
        "充一次电可以用一个星期。",
        "今天就下单，每天早上都元气满满。",
    ],
}


def _boundary_error(sentences, truth) -> float:
    if len(sentences) != len(truth):
        return float("nan")
    return max(max(abs(s.start_s - a), abs(s.end_s - b)) for s, (a, b) in zip(sentences, truth))


def main(quick: bool = False) -> dict:
    from autocut.library import ads as asr
    from autocut.library.media import load_audio_mono
    from autocut.lm.synthetic_ad import make_synthetic_ad

    model_dir = asr.whisper_model_dir(cache_dir() / "asr")
    figures: dict = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lang, script in SCRIPTS.items():
            ad = make_synthetic_ad(Path(tmp) / f"{lang}.mp4", script, language=lang)
            wave = load_audio_mono(ad.path, asr.ASR_SAMPLE_RATE_HZ)
            for hint in [lang] if quick else [lang, None]:
                t0 = time.perf_counter()
                tr, sentences = asr.sentences_from_audio(wave, model_dir=model_dir, language=hint)
                secs = time.perf_counter() - t0
                er = asr.error_rate(" ".join(script), " ".join(s.text for s in sentences))
                raw = asr.split_sentences(tr.words)  # ASR only: punctuation and pauses, no VAD
                key = f"{lang}/{'given' if hint else 'detected'}"
                figures[key] = {
                    "error_rate": round(er, 3),
                    "detected_language": tr.language,
                    "sentences": len(sentences),
                    "spoken": len(script),
                    "max_boundary_error_s": round(_boundary_error(sentences, ad.speech_s), 3),
                    "asr_only_sentences": len(raw),
                    "asr_only_max_boundary_error_s": round(_boundary_error(raw, ad.speech_s), 3),
                    "real_time_factor": round(secs / ad.duration_s, 2),
                    "transcript": " | ".join(s.text for s in sentences),
                }
                f = figures[key]
                rows.append(
                    (
                        key,
                        f"{'CER' if lang == 'zh' else 'WER'} {f['error_rate']:.1%}, language "
                        f"{f['detected_language']}, {f['sentences']}/{f['spoken']} sentences, max boundary "
                        f"error {f['max_boundary_error_s']} s (ASR only: {f['asr_only_sentences']} "
                        f"sentences, {f['asr_only_max_boundary_error_s']} s), RTF {f['real_time_factor']}",
                    )
                )
                rows.append(("", f["transcript"][:160]))
    print_table("Reference-edit ASR (whisper-base int8, CPU)", rows)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
