"""Procedural text-to-audio benchmark: captioned synthetic sound-event clips in AudioCraft's format.

Every clip holds one or two sound sources drawn from ten synthetic timbres (`SOURCES`). What a
caption controls, and what the sidecar records as ground truth:

- which sources occur (``sources``, in the caption's logical order: the counted source first),
- how many times the counted source occurs (``count``, 1 to 3),
- how two sources relate in time (``relation``): ``"single"`` (one source), ``"then"`` (the
  counted source, then one event of the second source) or ``"while"`` (the counted source over a
  sustained rendering of the second source, which starts first),
- the pitch register of the pitched sources (``register``: ``"low"``, ``"mid"``, ``"high"``, or
  None when no source in the clip is pitched).

The test split only uses the source pairs in `HELD_OUT_PAIRS`, which never co-occur in the train
or valid splits, so it measures compositional generalisation.

Everything is a pure function of the seed: `sample_spec` draws a clip's ground truth (a
`ClipSpec`), `describe` writes a caption for it, `synthesize_clip` renders it to a waveform, and
`generate_dataset` writes the whole benchmark (`load_clips` reads a split back)::

    OUT/{train,valid,test}/0000.wav   16 kHz mono PCM16
    OUT/{train,valid,test}/0000.json  sidecar: description + ground truth + MusicInfo keys
    OUT/egs/{train,valid,test}/data.jsonl   AudioCraft manifests (AudioMeta per line)
    OUT/benchmark.json                      what made it: generator version, seed, clips, duration, rate

The sidecars sit beside the audio with the same stem, which is where AudioCraft's `SoundDataset`
and `MusicDataset` look for them (``Path(meta.path).with_suffix('.json')``).

CLI::

    python -m rr_audiocraft.data.synth OUT [--num-clips 600] [--seed 0] [--duration 4.0] [--sample-rate 16000]
"""
import argparse
import dataclasses
import json
from pathlib import Path
import sys
import time
import typing as tp

import numpy as np
import scipy.signal
import soundfile


SOURCES: tp.Tuple[str, ...] = (
    'beep', 'whistle', 'noise', 'knock', 'bell', 'kick', 'hum', 'clap', 'chirp', 'pluck')
# Sources whose pitch follows the clip's register; the others have a fixed character pitch.
PITCHED_SOURCES = frozenset({'beep', 'whistle', 'bell', 'hum', 'pluck'})
# Sources that also have a sustained rendering, so they can be the background of a "while" clip.
SUSTAINED_SOURCES = frozenset({'hum', 'noise', 'whistle'})
RELATIONS: tp.Tuple[str, ...] = ('single', 'then', 'while')
REGISTERS: tp.Tuple[str, ...] = ('low', 'mid', 'high')
MAX_COUNT = 3
SPLITS: tp.Tuple[str, ...] = ('train', 'valid', 'test')
# Unordered source pairs reserved for the test split. Four of them contain a sustained source,
# so the test split has unseen pairs in both "then" and "while" relations.
HELD_OUT_PAIRS: tp.FrozenSet[tp.FrozenSet[str]] = frozenset(frozenset(pair) for pair in [
    ('knock', 'bell'), ('clap', 'whistle'), ('kick', 'noise'),
    ('chirp', 'hum'), ('beep', 'pluck'), ('bell', 'hum')])
RELATION_PROBS = {'single': 0.4, 'then': 0.3, 'while': 0.3}
SPLIT_FRACTIONS = {'train': 0.8, 'valid': 0.1, 'test': 0.1}
DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_DURATION = 4.0
# Bumped whenever what a seed renders changes: a benchmark folder records it (`check_benchmark`).
BENCHMARK_VERSION = 3  # 3: every source's energy under ~2.3 kHz, quieter backgrounds (what the 8 kHz codec carries)
STAMP_FILE = 'benchmark.json'
DEFAULT_NUM_CLIPS = 600  # 480 train clips: enough for the judge (`rr_audiocraft.metrics.judge`).
# Event lengths and gaps below are for a 4 s clip; shorter clips scale them down, and under 2 s
# three events plus a second source no longer fit with audible gaps.
REFERENCE_DURATION = 4.0
MIN_DURATION = 2.0
# Keys of AudioCraft's MusicInfo that MusicDataset(info_fields_required=True) expects in a sidecar.
MUSIC_INFO_KEYS: tp.Tuple[str, ...] = (
    'title', 'artist', 'key', 'bpm', 'genre', 'moods', 'keywords', 'description', 'name', 'instrument')

# Centre fundamental (Hz) per register for each pitched source; a clip jitters it by +-10%.
# Registers stay about an octave apart, and every fundamental (a whistle's glide included) stays
# under ~2.2 kHz: the shipped 8 kHz codec, whose LMs are measured, carries loud tones above ~2 kHz
# 15-30 dB too weak (version 2 had high beeps at 2.2 kHz and high whistles gliding to 3.6 kHz).
_REGISTER_F0 = {
    'beep': {'low': 300., 'mid': 650., 'high': 1400.},
    'whistle': {'low': 380., 'mid': 700., 'high': 1300.},
    'bell': {'low': 220., 'mid': 480., 'high': 1000.},
    'hum': {'low': 65., 'mid': 150., 'high': 300.},
    'pluck': {'low': 130., 'mid': 330., 'high': 780.},
}
# Event length range (s, for a 4 s clip). Decaying sounds are faded to silence at the end of their
# event, so an event's [onset, offset] bounds where it is audible.
_EVENT_LENGTH = {
    'beep': (0.20, 0.30), 'whistle': (0.35, 0.50), 'noise': (0.20, 0.30), 'knock': (0.09, 0.12),
    'bell': (0.50, 0.60), 'kick': (0.22, 0.28), 'hum': (0.40, 0.50), 'clap': (0.10, 0.14),
    'chirp': (0.10, 0.14), 'pluck': (0.40, 0.50),
}


@dataclasses.dataclass
class ClipSpec:
    """Ground truth of one clip; with `seed` it fully determines the audio.

    Attributes:
        sources: source names in logical order: the counted source first, then (for two-source
            clips) the source played after it ("then") or underneath it ("while").
        count: how many times the first source occurs (1 to `MAX_COUNT`).
        relation: "single", "then" or "while".
        register: "low", "mid" or "high" for clips with a pitched source, else None.
        seed: seed of the clip's rendering (event timings, pitches, noise).
    """
    sources: tp.List[str]
    count: int
    relation: str
    register: tp.Optional[str]
    seed: int

    def __post_init__(self):
        unknown = [source for source in self.sources if source not in SOURCES]
        if unknown:
            raise ValueError(f"Unknown sources {unknown}; expected names from {SOURCES}.")
        if self.relation not in RELATIONS:
            raise ValueError(f"Unknown relation {self.relation!r}; expected one of {RELATIONS}.")
        expected_sources = 1 if self.relation == 'single' else 2
        if len(self.sources) != expected_sources or len(set(self.sources)) != len(self.sources):
            raise ValueError(f"A {self.relation!r} clip needs {expected_sources} distinct source(s), "
                             f"got {self.sources}.")
        if self.relation == 'while' and self.sources[1] not in SUSTAINED_SOURCES:
            raise ValueError(f"The background of a 'while' clip must be one of {sorted(SUSTAINED_SOURCES)}, "
                             f"got {self.sources[1]!r}.")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be in [1, {MAX_COUNT}], got {self.count}.")
        is_pitched = any(source in PITCHED_SOURCES for source in self.sources)
        if is_pitched and self.register not in REGISTERS:
            raise ValueError(f"A clip with a pitched source needs a register in {REGISTERS}, "
                             f"got {self.register!r}.")
        if not is_pitched and self.register is not None:
            raise ValueError(f"Clip {self.sources} has no pitched source but register={self.register!r}.")

    @classmethod
    def from_dict(cls, dictionary: tp.Mapping[str, tp.Any]) -> 'ClipSpec':
        """Builds a spec from any mapping holding its fields, e.g. a sidecar (extra keys are ignored)."""
        return cls(**{field.name: dictionary[field.name] for field in dataclasses.fields(cls)})

    def to_dict(self) -> tp.Dict[str, tp.Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Event:
    """One rendered sound event: `source` is audible from `onset` to `offset` (seconds)."""
    source: str
    onset: float
    offset: float
    sustained: bool = False


# ---------------------------------------------------------------------------------------------
# Source renderers. Each takes (rng, num_samples, sample_rate, f0) and returns float64 [num_samples]
# peaking at 1; f0 is None for unpitched sources.
# ---------------------------------------------------------------------------------------------

def _fade_envelope(num_samples: int, sample_rate: int, attack: float, release: float) -> np.ndarray:
    """Linear attack / release envelope, flat in between. Returns [num_samples]."""
    envelope = np.ones(num_samples)
    num_attack = min(num_samples, max(1, int(attack * sample_rate)))
    num_release = min(num_samples, max(1, int(release * sample_rate)))
    envelope[:num_attack] *= np.linspace(0., 1., num_attack)
    envelope[num_samples - num_release:] *= np.linspace(1., 0., num_release)
    return envelope


def _decay_envelope(num_samples: int, sample_rate: int, tau: float) -> np.ndarray:
    """Exponential decay with time constant `tau`, faded to exactly 0 over the last 10 ms."""
    time_s = np.arange(num_samples) / sample_rate
    return np.exp(-time_s / tau) * _fade_envelope(num_samples, sample_rate, 0.001, 0.01)


def _bandpass(signal: np.ndarray, sample_rate: int, low: float, high: float, order: int = 2) -> np.ndarray:
    nyquist = sample_rate / 2
    sos = scipy.signal.butter(order, [low / nyquist, min(high / nyquist, 0.99)], btype='band', output='sos')
    return scipy.signal.sosfilt(sos, signal)


def _peak_normalize(signal: np.ndarray) -> np.ndarray:
    return signal / (np.abs(signal).max() + 1e-9)


def _render_beep(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: float) -> np.ndarray:
    """Pure sine tone with short ramps: the plainest timbre of the set."""
    time_s = np.arange(num_samples) / sample_rate
    return np.sin(2 * np.pi * f0 * time_s) * _fade_envelope(num_samples, sample_rate, 0.005, 0.01)


def _render_whistle(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: float,
                    sustained: bool = False) -> np.ndarray:
    """Rising pitch glide with vibrato and a little breath noise; sustained: a slow waver instead."""
    time_s = np.arange(num_samples) / sample_rate
    progress = time_s / time_s[-1]
    if sustained:
        frequency = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.0) * time_s))
    else:
        frequency = f0 * (1 + 0.5 * progress)
    frequency = frequency * (1 + 0.015 * np.sin(2 * np.pi * 6.0 * time_s))
    phase = 2 * np.pi * np.cumsum(frequency) / sample_rate
    tone = np.sin(phase) + 0.15 * np.sin(2 * phase)
    breath = _bandpass(rng.standard_normal(num_samples), sample_rate, 0.8 * f0, 2.5 * f0)
    signal = tone + 0.15 * _peak_normalize(breath)
    return signal * _fade_envelope(num_samples, sample_rate, 0.03, 0.05)


def _render_noise(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: None,
                  sustained: bool = False) -> np.ndarray:
    """White noise burst; sustained: a long hiss with a slow amplitude drift."""
    signal = rng.standard_normal(num_samples)
    if sustained:
        time_s = np.arange(num_samples) / sample_rate
        signal = signal * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * time_s))
        return signal * _fade_envelope(num_samples, sample_rate, 0.05, 0.1)
    return signal * _fade_envelope(num_samples, sample_rate, 0.005, 0.03)


def _render_knock(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: None) -> np.ndarray:
    """Wooden knock: a click exciting a few fast-decaying low resonances."""
    time_s = np.arange(num_samples) / sample_rate
    modes = np.array([190., 430., 870.]) * rng.uniform(0.95, 1.05, size=3)
    signal = sum(amp * np.sin(2 * np.pi * freq * time_s) * np.exp(-time_s / tau)
                 for amp, freq, tau in zip([1.0, 0.6, 0.3], modes, [0.025, 0.018, 0.012], strict=True))
    click_length = int(0.003 * sample_rate)
    signal[:click_length] += 0.5 * rng.standard_normal(click_length)
    return signal * _fade_envelope(num_samples, sample_rate, 0.0005, 0.01)


def _render_bell(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: float) -> np.ndarray:
    """Bell strike: inharmonic partials, higher ones decaying faster."""
    time_s = np.arange(num_samples) / sample_rate
    ratios, amplitudes = [1.0, 2.76, 5.40, 8.93], [1.0, 0.6, 0.4, 0.25]
    signal = np.zeros(num_samples)
    for ratio, amplitude in zip(ratios, amplitudes, strict=True):
        frequency = f0 * ratio
        if frequency < 0.45 * sample_rate:
            signal += amplitude * np.sin(2 * np.pi * frequency * time_s) * np.exp(-time_s * ratio / 0.8)
    return signal * _decay_envelope(num_samples, sample_rate, tau=0.35)


def _render_kick(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: None) -> np.ndarray:
    """Kick drum: sine whose pitch drops from ~150 Hz to ~45 Hz, with a beater click."""
    time_s = np.arange(num_samples) / sample_rate
    start, end = rng.uniform(130., 170.), rng.uniform(40., 50.)
    frequency = end + (start - end) * np.exp(-time_s / 0.04)
    signal = np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate)
    click_length = int(0.002 * sample_rate)
    signal[:click_length] += 0.3 * rng.standard_normal(click_length)
    return signal * _decay_envelope(num_samples, sample_rate, tau=0.08)


def _render_hum(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: float,
                sustained: bool = False) -> np.ndarray:
    """Buzzy hum: sawtooth-like harmonic stack with a slight 'mains' flutter."""
    time_s = np.arange(num_samples) / sample_rate
    signal = np.zeros(num_samples)
    for harmonic in range(1, 16):
        frequency = f0 * harmonic
        if frequency >= 0.45 * sample_rate:
            break
        signal += np.sin(2 * np.pi * frequency * time_s) / harmonic
    signal *= 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(4., 8.) * time_s)
    attack, release = (0.1, 0.1) if sustained else (0.03, 0.05)
    return signal * _fade_envelope(num_samples, sample_rate, attack, release)


def _render_clap(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: None) -> np.ndarray:
    """Hand clap: a few noise flams 8-10 ms apart, then a band-passed noise tail."""
    time_s = np.arange(num_samples) / sample_rate
    envelope = np.exp(-time_s / 0.03)
    for flam in range(1, 4):
        flam_start = flam * rng.uniform(0.008, 0.010)
        envelope += 0.8 * np.exp(-np.clip(time_s - flam_start, 0, None) / 0.004) * (time_s >= flam_start)
    noise = _bandpass(rng.standard_normal(num_samples), sample_rate, 500., 2200.)
    return noise * envelope * _fade_envelope(num_samples, sample_rate, 0.0005, 0.01)


def _render_chirp(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: None) -> np.ndarray:
    """Bird-like chirp: a fast exponential upward sweep from ~0.9 kHz to ~2.1 kHz in ~0.12 s
    (a whistle glides by half as much, four times slower, with vibrato)."""
    time_s = np.arange(num_samples) / sample_rate
    progress = time_s / time_s[-1]
    start, end = rng.uniform(800., 1000.), rng.uniform(1900., 2300.)
    frequency = start * (end / start) ** progress
    signal = np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate)
    return signal * np.hanning(num_samples)


def _render_pluck(rng: np.random.Generator, num_samples: int, sample_rate: int, f0: float) -> np.ndarray:
    """Plucked string (Karplus-Strong): a noise burst recirculated through a damped delay line."""
    period = max(2, int(round(sample_rate / f0)))
    excitation = np.zeros(num_samples)
    excitation[:period] = rng.uniform(-1., 1., size=min(period, num_samples))
    feedback = np.zeros(period + 2)
    feedback[0] = 1.
    feedback[period] = feedback[period + 1] = -0.5 * 0.996
    signal = scipy.signal.lfilter([1.], feedback, excitation)
    return signal * _decay_envelope(num_samples, sample_rate, tau=0.2)


_RENDERERS: tp.Dict[str, tp.Callable[..., np.ndarray]] = {
    'beep': _render_beep, 'whistle': _render_whistle, 'noise': _render_noise, 'knock': _render_knock,
    'bell': _render_bell, 'kick': _render_kick, 'hum': _render_hum, 'clap': _render_clap,
    'chirp': _render_chirp, 'pluck': _render_pluck,
}


# ---------------------------------------------------------------------------------------------
# Clip rendering.
# ---------------------------------------------------------------------------------------------

def _layout_events(spec: ClipSpec, rng: np.random.Generator, duration: float) -> tp.List[Event]:
    """Places the clip's events in time, spreading the free time randomly over the gaps."""
    scale = min(1., duration / REFERENCE_DURATION)
    margin = 0.05 * scale
    counted, other = spec.sources[0], (spec.sources[1] if len(spec.sources) > 1 else None)

    def event_length(source: str) -> float:
        return scale * rng.uniform(*_EVENT_LENGTH[source])

    lengths = [event_length(counted) for _ in range(spec.count)]
    # Minimal gaps keep repeated events separable by an onset detector even at 2 s.
    min_gaps = [0.15 * scale] * (spec.count - 1)
    if spec.relation == 'then':
        lengths.append(event_length(other))
        min_gaps.append(0.2 * scale)
    # A "while" background starts before the first counted event and ends after the last one.
    background_lead = 0.3 * scale if spec.relation == 'while' else 0.
    background_tail = 0.2 * scale if spec.relation == 'while' else 0.
    needed = sum(lengths) + sum(min_gaps) + background_lead + background_tail + 2 * margin
    free_time = duration - needed
    if free_time < 0:
        raise ValueError(f"Clip {spec} does not fit in {duration:.2f} s; use a longer duration.")
    # Free time goes to the gaps (a random share each) and to the start/end silences.
    shares = rng.dirichlet(np.ones(len(min_gaps) + 2))
    start = margin + background_lead + shares[0] * free_time

    events: tp.List[Event] = []
    cursor = start
    for index, length in enumerate(lengths):
        source = counted if index < spec.count else tp.cast(str, other)
        events.append(Event(source, cursor, cursor + length))
        if index < len(min_gaps):
            cursor += length + min_gaps[index] + shares[1 + index] * free_time
    if spec.relation == 'while':
        background_start = start - background_lead - rng.uniform(0., shares[0] * free_time)
        background_end = events[-1].offset + background_tail + rng.uniform(0., shares[-1] * free_time)
        events.insert(0, Event(tp.cast(str, other), max(0., background_start), min(duration, background_end),
                               sustained=True))
    return events


def synthesize_clip(spec: tp.Union[ClipSpec, tp.Mapping[str, tp.Any]],
                    sample_rate: int = DEFAULT_SAMPLE_RATE,
                    duration: float = DEFAULT_DURATION) -> tp.Tuple[np.ndarray, tp.List[Event]]:
    """Renders one clip; a pure function of (spec, sample_rate, duration).

    Args:
        spec: the clip's ground truth, a `ClipSpec` or a mapping with its fields (e.g. a sidecar).
        sample_rate: output sample rate in Hz.
        duration: clip length in seconds (at least `MIN_DURATION`).
    Returns:
        tuple of np.ndarray and list of Event: the mono waveform, float32 [T] with
        T = round(duration * sample_rate) and peak below 1, and the rendered events sorted by onset.
    """
    if not isinstance(spec, ClipSpec):
        spec = ClipSpec.from_dict(spec)
    if duration < MIN_DURATION:
        raise ValueError(f"duration must be at least {MIN_DURATION} s, got {duration}.")
    if sample_rate < DEFAULT_SAMPLE_RATE:
        # The noise burst is white and the clap's and whistle's noise reach ~3-5 kHz: lower rates
        # would alias them (and the judge listens at 16 kHz).
        raise ValueError(f"sample_rate must be at least {DEFAULT_SAMPLE_RATE} Hz, got {sample_rate}.")
    rng = np.random.default_rng(spec.seed)
    num_samples = int(round(duration * sample_rate))
    events = _layout_events(spec, rng, duration)
    f0 = {source: _REGISTER_F0[source][tp.cast(str, spec.register)] * rng.uniform(0.9, 1.1)
          for source in spec.sources if source in PITCHED_SOURCES}

    wav = np.zeros(num_samples)
    for event in events:
        begin = int(round(event.onset * sample_rate))
        length = min(int(round(event.offset * sample_rate)) - begin, num_samples - begin)
        renderer = _RENDERERS[event.source]
        extra = {'sustained': True} if event.sustained else {}
        # Repeats of the same source differ slightly in pitch and level, like real recordings.
        pitch = f0[event.source] * rng.uniform(0.99, 1.01) if event.source in f0 else None
        sound = _peak_normalize(renderer(rng, length, sample_rate, pitch, **extra))
        # Backgrounds sit 12-23 dB under the counted events so that those stay clearly audible, also
        # after the codec (at 10-18 dB, version 2, it dropped chirps and claps over a hum or a whistle).
        level = rng.uniform(0.06, 0.12) if event.sustained else rng.uniform(0.5, 0.8)
        wav[begin:begin + length] += level * sound
    # A faint noise floor, so that silence between events is not digital zero.
    wav += rng.uniform(0.001, 0.004) * rng.standard_normal(num_samples)
    wav /= max(1., np.abs(wav).max() / 0.95)
    events.sort(key=lambda event: event.onset)
    return wav.astype(np.float32), events


# ---------------------------------------------------------------------------------------------
# Captions.
# ---------------------------------------------------------------------------------------------

# Per source: (singular, plural, verb) noun phrases, without article.
_NOUNS: tp.Dict[str, tp.List[tp.Tuple[str, str, str]]] = {
    'beep': [('beep', 'beeps', 'sounds'), ('bleep', 'bleeps', 'sounds'),
             ('electronic beep', 'electronic beeps', 'goes off'), ('short tone', 'short tones', 'plays')],
    'whistle': [('whistle', 'whistles', 'blows'), ('sliding whistle', 'sliding whistles', 'sounds'),
                ('rising whistle', 'rising whistles', 'sounds')],
    'noise': [('burst of noise', 'bursts of noise', 'hisses'), ('noise burst', 'noise bursts', 'sounds'),
              ('burst of static', 'bursts of static', 'crackles'), ('short hiss', 'short hisses', 'sounds')],
    'knock': [('knock', 'knocks', 'sounds'), ('wooden knock', 'wooden knocks', 'sounds'),
              ('knock on wood', 'knocks on wood', 'is heard'),
              ('tap on a wood block', 'taps on a wood block', 'is heard')],
    'bell': [('bell', 'bells', 'rings'), ('bell chime', 'bell chimes', 'rings out'),
             ('chime', 'chimes', 'sounds'), ('bell strike', 'bell strikes', 'rings')],
    'kick': [('kick drum hit', 'kick drum hits', 'thumps'), ('bass drum kick', 'bass drum kicks', 'booms'),
             ('kick', 'kicks', 'thumps'), ('thump of a kick drum', 'thumps of a kick drum', 'sounds')],
    'hum': [('hum', 'hums', 'drones'), ('buzz', 'buzzes', 'sounds'), ('electric hum', 'electric hums', 'buzzes'),
            ('droning buzz', 'droning buzzes', 'sounds')],
    'clap': [('clap', 'claps', 'rings out'), ('hand clap', 'hand claps', 'sounds'),
             ('handclap', 'handclaps', 'is heard')],
    'chirp': [('chirp', 'chirps', 'sounds'), ('bird-like chirp', 'bird-like chirps', 'sounds'),
              ('tweet', 'tweets', 'rings out'), ('quick chirp', 'quick chirps', 'sounds')],
    'pluck': [('plucked string', 'plucked strings', 'twangs'), ('string pluck', 'string plucks', 'sounds'),
              ('twang', 'twangs', 'rings'), ('guitar-like pluck', 'guitar-like plucks', 'sounds')],
}
# Sustained renderings as backgrounds: (noun phrase with article and a {reg} slot, verb).
_BACKGROUNDS: tp.Dict[str, tp.List[tp.Tuple[str, str]]] = {
    'hum': [('a steady {reg}hum', 'drones'), ('a constant {reg}buzz', 'hums'),
            ('a droning {reg}hum', 'continues'), ('an electric {reg}hum', 'buzzes')],
    'noise': [('a steady hiss', 'hisses'), ('constant static', 'crackles'),
              ('background white noise', 'plays'), ('a continuous hiss', 'goes on')],
    'whistle': [('a long {reg}whistle', 'plays'), ('a wavering {reg}whistle', 'goes on'),
                ('continuous {reg}whistling', 'continues'), ('a sustained {reg}whistle', 'sounds')],
}
_REGISTER_WORDS = {'low': ['low', 'low-pitched', 'deep'],
                   'mid': ['mid-pitched', 'medium-pitched', 'mid-range'],
                   'high': ['high', 'high-pitched', 'shrill']}
_COUNT_ADVERBS = {1: ['once', 'one time', 'a single time'], 2: ['twice', 'two times'],
                  3: ['three times', 'thrice']}
_COUNT_WORDS = {1: ['one', 'a single'], 2: ['two', 'a pair of'], 3: ['three']}
_SINGLE_TEMPLATES = ['{counted}', '{clause}', 'the sound of {counted}', 'you hear {counted}',
                     '{counted} in a quiet room']
_THEN_TEMPLATES = ['{counted}, then {other}', '{counted} followed by {other}', 'first {counted}, then {other}',
                   '{clause}, and then {other_clause}', '{other} after {numbered}', '{numbered} before {other}']
_WHILE_TEMPLATES = ['{counted} while {background} {background_verb}', '{counted} over {background}',
                    '{background} with {counted} on top',
                    '{clause} while {background} {background_verb} in the background',
                    '{counted} as {background} {background_verb}']


def _with_article(phrase: str) -> str:
    return ('an ' if phrase[0] in 'aeiou' else 'a ') + phrase


def _choice(rng: np.random.Generator, options: tp.Sequence[tp.Any]) -> tp.Any:
    return options[int(rng.integers(len(options)))]


def describe(spec: ClipSpec, rng: np.random.Generator, phrase_count: tp.Optional[int] = None) -> str:
    """Writes one natural-language caption for `spec`, choosing templates and synonyms with `rng`.

    `phrase_count` writes the count phrases of that count instead of `spec.count`, from the same random
    draws (`count_variants`): the caption differs only in its count phrase.

    Returns:
        str: e.g. "Two low beeps followed by a chime" or "A clap twice over a steady hiss".
    """
    register = ''
    if spec.register is not None:
        register = _choice(rng, _REGISTER_WORDS[spec.register]) + ' '

    def adjective(source: str) -> str:
        return register if source in PITCHED_SOURCES else ''

    counted = spec.sources[0]
    singular, plural, verb = _choice(rng, _NOUNS[counted])
    noun_phrase = _with_article(adjective(counted) + singular)
    shown = spec.count if phrase_count is None else phrase_count

    def count_phrase(options: tp.Mapping[int, tp.Sequence[str]]) -> str:
        # Drawn over spec.count's synonyms whatever is shown, so that the later draws stay the same.
        index = int(rng.integers(len(options[spec.count])))
        return options[shown][min(index, len(options[shown]) - 1)]

    adverb = count_phrase(_COUNT_ADVERBS)
    counted_forms = [f'{noun_phrase} {adverb}', f'{noun_phrase} that {verb} {adverb}']
    count_word = count_phrase(_COUNT_WORDS)
    # The count-word form ("two beeps") is the only one that stays unambiguous after "after"/"before".
    numbered = f'{count_word} {adjective(counted)}{singular if shown == 1 else plural}'
    counted_forms.append(numbered)
    slots = {'counted': _choice(rng, counted_forms), 'numbered': numbered,
             'clause': f'{noun_phrase} {verb} {adverb}'}

    if spec.relation == 'single':
        template = _choice(rng, _SINGLE_TEMPLATES)
    elif spec.relation == 'then':
        other = spec.sources[1]
        other_singular, _, other_verb = _choice(rng, _NOUNS[other])
        slots['other'] = _with_article(adjective(other) + other_singular)
        slots['other_clause'] = f"{slots['other']} {other_verb}"
        template = _choice(rng, _THEN_TEMPLATES)
    else:
        background, background_verb = _choice(rng, _BACKGROUNDS[spec.sources[1]])
        slots['background'] = background.format(reg=adjective(spec.sources[1]))
        slots['background_verb'] = background_verb
        template = _choice(rng, _WHILE_TEMPLATES)
    caption = template.format(**slots)
    caption = caption[0].upper() + caption[1:]
    return caption + ('.' if rng.random() < 0.5 else '')


# ---------------------------------------------------------------------------------------------
# Dataset sampling and writing.
# ---------------------------------------------------------------------------------------------

def allowed_pairs(split: str) -> tp.List[tp.Tuple[str, str]]:
    """Ordered (counted, other) source pairs a split may use: test only the held-out pairs."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    pairs = [(a, b) for a in SOURCES for b in SOURCES if a != b]
    is_held_out = [frozenset(pair) in HELD_OUT_PAIRS for pair in pairs]
    return [pair for pair, held_out in zip(pairs, is_held_out, strict=True) if held_out == (split == 'test')]


def sample_spec(rng: np.random.Generator, split: str) -> ClipSpec:
    """Draws one clip's ground truth for `split` (test: two-source clips use held-out pairs only)."""
    relation = str(rng.choice(RELATIONS, p=[RELATION_PROBS[relation] for relation in RELATIONS]))
    if relation == 'single':
        sources = [str(_choice(rng, SOURCES))]
    else:
        pairs = allowed_pairs(split)
        if relation == 'while':
            pairs = [pair for pair in pairs if pair[1] in SUSTAINED_SOURCES]
        sources = list(_choice(rng, pairs))
    register = None
    if any(source in PITCHED_SOURCES for source in sources):
        register = str(_choice(rng, REGISTERS))
    return ClipSpec(sources=sources, count=int(rng.integers(1, MAX_COUNT + 1)), relation=relation,
                    register=register, seed=int(rng.integers(2**31)))


def split_sizes(num_clips: int) -> tp.Dict[str, int]:
    """Clips per split, `SPLIT_FRACTIONS` rounded; valid and test get at least one clip from 3 clips on."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be at least 1, got {num_clips}.")
    sizes = {split: int(round(SPLIT_FRACTIONS[split] * num_clips)) for split in ('valid', 'test')}
    if num_clips >= 3:
        sizes = {split: max(1, size) for split, size in sizes.items()}
    sizes['train'] = num_clips - sizes['valid'] - sizes['test']
    return {split: sizes[split] for split in SPLITS}


def sidecar(spec: ClipSpec, caption: str, events: tp.Sequence[Event], name: str, split: str) -> tp.Dict[str, tp.Any]:
    """The JSON written beside a clip: caption, ground truth and AudioCraft's MusicInfo keys."""
    first_onsets: tp.Dict[str, float] = {}
    for event in events:
        first_onsets.setdefault(event.source, event.onset)
    info: tp.Dict[str, tp.Any] = {key: None for key in MUSIC_INFO_KEYS}
    info.update({
        'description': caption,
        'name': name,
        'keywords': list(spec.sources),
        **spec.to_dict(),
        # Sources in order of first onset: for "while" clips the background comes first.
        'order': sorted(first_onsets, key=first_onsets.__getitem__),
        'events': [{key: (round(value, 4) if isinstance(value, float) else value)
                    for key, value in dataclasses.asdict(event).items()} for event in events],
        'split': split,
    })
    return info


def datasource_overrides(root: tp.Union[str, Path]) -> tp.List[str]:
    """Hydra overrides pointing AudioCraft's datasource at a benchmark written by `generate_dataset`
    (valid for validation; the held-out test split for evaluation and generation)."""
    egs = Path(root) / 'egs'
    return [f'datasource.train={egs}/train', f'datasource.valid={egs}/valid',
            f'datasource.evaluate={egs}/test', f'datasource.generate={egs}/test']


def generate_dataset(out_dir: tp.Union[str, Path], num_clips: int, seed: int,
                     duration: float = DEFAULT_DURATION,
                     sample_rate: int = DEFAULT_SAMPLE_RATE) -> tp.Dict[str, tp.List[Path]]:
    """Writes the benchmark (audio, sidecars, manifests) under `out_dir`.

    Args:
        out_dir: output root; existing files with the same names are overwritten.
        num_clips: total number of clips over the three splits (at least 1).
        seed: the dataset seed; the same seed gives byte-identical audio and sidecars.
        duration: clip length in seconds (at least `MIN_DURATION`).
        sample_rate: sample rate in Hz of the written files.
    Returns:
        dict: split name -> list of the absolute paths of its wav files.
    """
    sizes = split_sizes(num_clips)
    if duration < MIN_DURATION:
        raise ValueError(f"duration must be at least {MIN_DURATION} s, got {duration}.")
    if sample_rate < DEFAULT_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be at least {DEFAULT_SAMPLE_RATE} Hz, got {sample_rate}.")
    out_dir = Path(out_dir).absolute()
    paths: tp.Dict[str, tp.List[Path]] = {}
    for split_index, split in enumerate(SPLITS):
        # One generator per split, so changing num_clips does not reshuffle the other splits' clips.
        rng = np.random.default_rng([seed, split_index])
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        manifest_lines = []
        paths[split] = []
        for index in range(sizes[split]):
            spec = sample_spec(rng, split)
            caption = describe(spec, rng)
            wav, events = synthesize_clip(spec, sample_rate, duration)
            wav_path = split_dir / f'{index:04d}.wav'
            soundfile.write(wav_path, wav, sample_rate, subtype='PCM_16')
            info = sidecar(spec, caption, events, name=wav_path.stem, split=split)
            wav_path.with_suffix('.json').write_text(json.dumps(info, indent=1) + '\n')
            # Fields of audiocraft.data.audio_dataset.AudioMeta, as its save_audio_meta writes them.
            meta = {'path': str(wav_path), 'duration': len(wav) / sample_rate, 'sample_rate': sample_rate,
                    'amplitude': None, 'weight': None, 'info_path': None}
            manifest_lines.append(json.dumps(meta) + '\n')
            paths[split].append(wav_path)
        manifest = out_dir / 'egs' / split / 'data.jsonl'
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(''.join(manifest_lines))
    # Written last: a folder whose generation was interrupted has no stamp, and is regenerated.
    (out_dir / STAMP_FILE).write_text(json.dumps(benchmark_stamp(num_clips, seed, duration, sample_rate)) + '\n')
    return paths


def benchmark_stamp(num_clips: int, seed: int, duration: float = DEFAULT_DURATION,
                    sample_rate: int = DEFAULT_SAMPLE_RATE) -> tp.Dict[str, tp.Any]:
    """What `generate_dataset` records in `OUT/benchmark.json`."""
    return {'generator': 'rr_audiocraft.data.synth', 'version': BENCHMARK_VERSION, 'seed': seed,
            'num_clips': num_clips, 'duration': duration, 'sample_rate': sample_rate}


class BenchmarkError(ValueError):
    """A benchmark folder holds another benchmark than the one asked for."""


def check_benchmark(root: tp.Union[str, Path], num_clips: int, seed: int, duration: float = DEFAULT_DURATION,
                    sample_rate: int = DEFAULT_SAMPLE_RATE) -> tp.Dict[str, tp.Any]:
    """Checks that `root` holds the benchmark these settings generate (same generator version).

    Returns:
        dict: its stamp.
    Raises:
        BenchmarkError: it is another seed, size or version, or was not (completely) written by
            `generate_dataset`; the message names the file and the command that fixes it.
    """
    root = Path(root)
    wanted = benchmark_stamp(num_clips, seed, duration, sample_rate)
    stamp_path = root / STAMP_FILE
    fix = (f"delete {root} and regenerate it (`python -m rr_audiocraft.data.synth {root} --num-clips {num_clips} "
           f"--seed {seed}`; the demo does that itself when the folder does not exist), or point --data elsewhere")
    if not stamp_path.is_file():
        raise BenchmarkError(f"{root} holds no {STAMP_FILE}: it was written by an older rr_audiocraft.data.synth, "
                             f"by something else, or its generation was interrupted; {fix}.")
    try:
        found = json.loads(stamp_path.read_text())
    except ValueError:
        raise BenchmarkError(f"{stamp_path} is not JSON; {fix}.") from None
    different = {key: (found.get(key), value) for key, value in wanted.items() if found.get(key) != value}
    if different:
        what = ', '.join(f"{key} {have!r} (wanted {want!r})" for key, (have, want) in different.items())
        raise BenchmarkError(f"{stamp_path} records another benchmark: {what}; {fix}.")
    return found


def count_variants(root: tp.Union[str, Path], split: str,
                   num_clips: tp.Optional[int] = None) -> tp.List[tp.Dict[int, str]]:
    """The caption each clip of a split would have had for every count 1..`MAX_COUNT`.

    Replays the split's generator from the seed in ``benchmark.json``: each variant keeps the clip's
    template, nouns and register words and changes only the count phrase ("a bell twice" / "a bell three
    times"), so the variant of the clip's own count is its caption.

    Args:
        root: a benchmark folder written by `generate_dataset` (this generator version).
        split: 'train', 'valid' or 'test'.
        num_clips: the split's first clips (default: all of them).
    Returns:
        list (one per clip, in manifest order) of dict count -> caption.
    Raises:
        BenchmarkError: the folder has no stamp of this generator version, or a replayed caption differs
            from the clip's sidecar (the folder was edited or written by another generator).
    """
    root = Path(root)
    stamp_path = root / STAMP_FILE
    if not stamp_path.is_file():
        raise BenchmarkError(f"{root} holds no {STAMP_FILE}, so its captions cannot be replayed; "
                             f"point at a folder written by `python -m rr_audiocraft.data.synth`.")
    stamp = json.loads(stamp_path.read_text())
    if stamp.get('version') != BENCHMARK_VERSION:
        raise BenchmarkError(f"{stamp_path} records generator version {stamp.get('version')!r}, this is version "
                             f"{BENCHMARK_VERSION}: its captions cannot be replayed; regenerate the benchmark.")
    available = split_sizes(int(stamp['num_clips']))[split]
    num_clips = available if num_clips is None else num_clips
    if not 1 <= num_clips <= available:
        raise ValueError(f"The {split} split of {root} has {available} clips; asked for {num_clips}.")
    rng = np.random.default_rng([int(stamp['seed']), SPLITS.index(split)])
    variants = []
    for index in range(num_clips):
        spec = sample_spec(rng, split)
        state = rng.bit_generator.state
        caption = describe(spec, rng)
        clip_variants = {}
        for count in range(1, MAX_COUNT + 1):
            replay = np.random.default_rng()
            replay.bit_generator.state = state
            clip_variants[count] = describe(spec, replay, phrase_count=count)
        sidecar_path = root / split / f'{index:04d}.json'
        recorded = json.loads(sidecar_path.read_text()).get('description') if sidecar_path.is_file() else None
        if recorded != caption or clip_variants[spec.count] != caption:
            raise BenchmarkError(f"{sidecar_path} does not hold the caption its seed replays ({caption!r}, found "
                                 f"{recorded!r}): the benchmark was edited or written by another generator.")
        variants.append(clip_variants)
    return variants


def load_clips(source: tp.Union[str, Path]) -> tp.Tuple[tp.List[np.ndarray], tp.List[tp.Dict[str, tp.Any]], int]:
    """Reads clips and their sidecars from a manifest, a manifest folder, a split folder or a dataset root.

    Args:
        source: an ``egs/<split>/data.jsonl`` file or its folder, a folder of wavs with ``.json``
            sidecars, or a dataset root written by `generate_dataset` (its train split is read).
    Returns:
        tuple: waveforms (float32 [T] each), sidecar dicts (same order), sample rate.
    """
    source = Path(source)
    if source.is_dir() and (source / 'data.jsonl').exists():
        source = source / 'data.jsonl'
    elif source.is_dir() and (source / 'egs' / 'train' / 'data.jsonl').exists():
        source = source / 'egs' / 'train' / 'data.jsonl'
    if source.is_file():
        wav_paths = [Path(json.loads(line)['path']) for line in source.read_text().splitlines() if line.strip()]
    elif source.is_dir():
        wav_paths = sorted(source.glob('*.wav'))
    else:
        raise FileNotFoundError(f"No manifest, wav folder or dataset root at {source}.")
    if not wav_paths:
        raise ValueError(f"No clips found in {source}.")
    wavs, infos, sample_rates = [], [], set()
    for wav_path in wav_paths:
        wav, sample_rate = soundfile.read(wav_path, dtype='float32', always_2d=True)
        wavs.append(wav.mean(axis=1))
        sample_rates.add(sample_rate)
        sidecar_path = wav_path.with_suffix('.json')
        if not sidecar_path.exists():
            raise FileNotFoundError(f"Missing sidecar {sidecar_path} for {wav_path}.")
        infos.append(json.loads(sidecar_path.read_text()))
    if len(sample_rates) != 1:
        raise ValueError(f"Clips in {source} mix sample rates {sorted(sample_rates)}.")
    return wavs, infos, sample_rates.pop()


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.data.synth', description=__doc__.split('\n')[0])
    parser.add_argument('out', type=Path, help="output dataset root")
    parser.add_argument('--num-clips', type=int, default=DEFAULT_NUM_CLIPS,
                        help=f"total clips over train/valid/test (default: {DEFAULT_NUM_CLIPS})")
    parser.add_argument('--seed', type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument('--duration', type=float, default=DEFAULT_DURATION, help="clip length in seconds")
    parser.add_argument('--sample-rate', type=int, default=DEFAULT_SAMPLE_RATE)
    args = parser.parse_args(argv)
    begin = time.time()
    try:
        paths = generate_dataset(args.out, args.num_clips, args.seed, args.duration, args.sample_rate)
    except ValueError as error:
        parser.error(str(error))
    counts = ', '.join(f'{split} {len(split_paths)}' for split, split_paths in paths.items())
    print(f"Wrote {counts} clips to {args.out} in {time.time() - begin:.1f} s "
          f"(manifests in {args.out / 'egs'}).")
    return 0


if __name__ == '__main__':
    sys.exit(main())
