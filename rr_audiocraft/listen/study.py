"""Study preparation: two or more systems' clips for the same prompts become a blind pairwise study.

A study is a folder:

    study.json      the systems, prompts, trials and the token of every clip (never served)
    audio/TOKEN.wav every clip, re-encoded (16-bit PCM, no metadata) under a random token
    generated/NAME/ the clips `prepare --from-models` generated (absent otherwise)
    answers.sqlite  the answers, created by `serve` (see `storage.py`)
    results/        what `tally` writes

Clips of different systems are matched by file name (stem). A clip's caption comes from, in order: the
`captions` given to `prepare_study` (the `--prompts` file on the command line), the folder's
`generations.json` (what `python -m rr_audiocraft.generate` writes), or a `<stem>.json` sidecar's
`description` (AudioCraft's and the benchmark's convention). Every input is checked before anything is
written: a problem raises `StudyError`, whose message names the file.
"""
import json
import random
import re
import secrets
import shutil
import time
import typing as tp
from pathlib import Path

STUDY_FILE = 'study.json'
AUDIO_DIR = 'audio'
ANSWERS_FILE = 'answers.sqlite'
RESULTS_DIR = 'results'
GENERATED_DIR = 'generated'  # clips that `prepare --from-models` generated, kept with the study they feed
STUDY_VERSION = 1
AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg')  # what soundfile reads without ffmpeg
# The paper's raters chose the clip of better quality and better alignment with the prompt (one choice).
DEFAULT_QUESTION = "Which clip matches the description better and sounds better?"
TOKEN_PATTERN = re.compile(r'^[A-Za-z0-9_-]{16,64}$')


class StudyError(ValueError):
    """Bad input to `prepare` or a broken study folder; the message names the file."""


def read_prompts_file(path: Path) -> tp.List[str]:
    """One caption per non-blank line."""
    if not path.is_file():
        raise StudyError(f"prompts file {path}: no such file")
    try:
        lines = path.read_text(encoding='utf-8').splitlines()
    except UnicodeDecodeError:
        raise StudyError(f"prompts file {path}: not UTF-8 text (one caption per line)") from None
    captions = [line.strip() for line in lines if line.strip()]
    if not captions:
        raise StudyError(f"prompts file {path}: no caption in it (one caption per line)")
    return captions


def captions_from_prompts_file(path: Path, stems: tp.Iterable[str]) -> tp.Dict[str, str]:
    """Captions of a `--prompts` file keyed by the clip stems they belong to.

    Line i (0-based, blank lines skipped) is the caption of the clip named as `rr_audiocraft.generate`
    names it (`file_stem(i, caption)`, e.g. `03_a_dog_barks`) or named by the number i (`003`, the demo's
    naming). Stems matching neither are left out (their caption must come from elsewhere).
    """
    from ..generate import file_stem
    captions = read_prompts_file(path)
    by_stem = {}
    for stem in stems:
        for index, caption in enumerate(captions):
            if stem == file_stem(index, caption) or (stem.isdigit() and int(stem) == index):
                by_stem[stem] = caption
                break
    return by_stem


def _clip_caption(folder: Path, stem: str, generations: tp.Dict[str, str]) -> tp.Tuple[tp.Optional[str], Path]:
    """A clip's caption from the folder's generations.json or its sidecar, and the file it came from."""
    if stem in generations:
        return generations[stem], folder / 'generations.json'
    sidecar = folder / f'{stem}.json'
    if sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
        except (ValueError, UnicodeDecodeError):
            raise StudyError(f"sidecar {sidecar}: not valid JSON") from None
        if isinstance(info, dict) and isinstance(info.get('description'), str) and info['description'].strip():
            return info['description'].strip(), sidecar
    return None, sidecar


def _generations_captions(folder: Path) -> tp.Dict[str, str]:
    """stem -> caption from the `generations.json` that `rr_audiocraft.generate` leaves in its output folder."""
    path = folder / 'generations.json'
    if not path.is_file():
        return {}
    try:
        samples = json.loads(path.read_text())['samples']
        return {Path(s['wav']).stem: s['caption'] for s in samples if s.get('caption', '').strip()}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise StudyError(f"{path}: not the generations.json that `python -m rr_audiocraft.generate` writes") from None


def _system_clips(name: str, folder: Path) -> tp.Dict[str, Path]:
    if not folder.is_dir():
        raise StudyError(f"system {name!r}: {folder} is not a folder")
    clips = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            if path.stem in clips:
                raise StudyError(f"system {name!r}: {path} and {clips[path.stem]} have the same name")
            clips[path.stem] = path
    if not clips:
        raise StudyError(f"system {name!r}: no audio file ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
    return clips


def _check_audio(path: Path) -> float:
    """Duration in seconds of a readable, non-empty audio file."""
    import soundfile as sf
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError on a non-audio file
        first_line = (str(exc).strip().splitlines() or [''])[0]
        raise StudyError(f"{path}: not a readable audio file ({first_line})") from None
    if info.frames == 0:
        raise StudyError(f"{path}: holds no samples")
    return info.frames / info.samplerate


def collect_clips(systems: tp.Mapping[str, tp.Union[str, Path]],
                  captions: tp.Optional[tp.Mapping[str, str]] = None,
                  prompts_file: tp.Optional[Path] = None
                  ) -> tp.Tuple[tp.Dict[str, tp.Dict[str, Path]], tp.Dict[str, str]]:
    """Check the systems' folders against each other and find every prompt's caption.

    Returns:
        tuple: {system: {stem: clip path}} and {stem: caption}, the same stems for every system.
    Raises:
        StudyError: fewer than 2 systems, a bad system name or folder, a clip one system lacks, captions
            that differ between systems, a clip without caption, a file that is not audio.
    """
    if len(systems) < 2:
        raise StudyError(f"a study compares at least 2 systems, got {len(systems)}: "
                         "pass --system NAME=DIR twice or more")
    for name in systems:
        if not (re.match(r'^[^\s/][^/]{0,63}$', name) and name.isprintable()):
            raise StudyError(f"system name {name!r}: 1-64 printable characters, no '/', not starting with a space")
    folders = {name: Path(folder) for name, folder in systems.items()}
    clips = {name: _system_clips(name, folder) for name, folder in folders.items()}
    first, first_clips = next(iter(clips.items()))
    for name, own in clips.items():
        for stem in sorted(set(first_clips) - set(own)):
            raise StudyError(f"system {name!r} has no clip {stem!r}: {first_clips[stem]} has no counterpart in "
                             f"{folders[name]}")
        for stem in sorted(set(own) - set(first_clips)):
            raise StudyError(f"system {name!r}: {own[stem]} has no counterpart in system {first!r} ({folders[first]})")
    stems = sorted(first_clips)
    given = dict(captions or {})
    if prompts_file is not None:
        given = {**captions_from_prompts_file(Path(prompts_file), stems), **given}
    prompt_captions: tp.Dict[str, str] = {}
    caption_sources: tp.Dict[str, Path] = {}
    for name, own in clips.items():
        generations = _generations_captions(folders[name])
        for stem in stems:
            if stem in given:  # the same for every system
                prompt_captions[stem] = given[stem]
                continue
            caption, source = _clip_caption(folders[name], stem, generations)
            if caption is None:
                continue
            if stem in prompt_captions and prompt_captions[stem] != caption:
                raise StudyError(f"mismatched prompts: {source} captions {own[stem].name} {caption!r} but "
                                 f"{caption_sources[stem]} captions it {prompt_captions[stem]!r}")
            prompt_captions.setdefault(stem, caption)
            caption_sources.setdefault(stem, source)
    for stem in stems:
        if stem not in prompt_captions:
            raise StudyError(f"{first_clips[stem]}: no caption (give --prompts FILE, a generations.json, or a sidecar "
                             f"{first_clips[stem].with_suffix('.json').name} with a 'description')")
    for own in clips.values():
        for path in own.values():
            _check_audio(path)
    return clips, prompt_captions


def _reencode(source: Path, target: Path) -> None:
    """Copy a clip as plain 16-bit PCM WAV: no metadata chunk (encoder name, comments) travels with it."""
    import soundfile as sf
    wav, sample_rate = sf.read(str(source), dtype='float32', always_2d=True)
    sf.write(str(target), wav, sample_rate, subtype='PCM_16', format='WAV')


def _new_token(taken: tp.Set[str]) -> str:
    while True:
        token = secrets.token_urlsafe(18)  # 24 characters, 144 random bits: not guessable
        if token not in taken:
            taken.add(token)
            return token


def build_trials(systems: tp.List[str], prompts: tp.List[str], catch_trials: int,
                 rng: random.Random) -> tp.List[tp.Dict[str, tp.Any]]:
    """Every pair of systems on every prompt, plus `catch_trials` trials of known answer.

    A catch trial shows one system's clip of its prompt against the same system's clip of another prompt:
    whatever the rater thinks of the system, the clip of the shown prompt is the right answer.
    """
    trials = []
    for prompt in prompts:
        for i, first in enumerate(systems):
            for second in systems[i + 1:]:
                trials.append({'kind': 'pair', 'prompt': prompt, 'systems': [first, second],
                               'clips': [[first, prompt], [second, prompt]]})
    if catch_trials and len(prompts) < 2:
        raise StudyError("catch trials need at least 2 prompts (a clip of another prompt); use --catch 0")
    catch_prompts = rng.sample(prompts, min(catch_trials, len(prompts))) + \
        [rng.choice(prompts) for _ in range(max(0, catch_trials - len(prompts)))]
    for prompt in catch_prompts:
        system = rng.choice(systems)
        other = rng.choice([p for p in prompts if p != prompt])
        # clips[0] is the right answer; the side it is shown on is drawn per rater (see `plan.py`).
        trials.append({'kind': 'catch', 'prompt': prompt, 'systems': [system, system],
                       'clips': [[system, prompt], [system, other]]})
    for trial in trials:
        trial['id'] = secrets.token_hex(6)  # opaque: neither the kind nor the systems show in the page
    return trials


def prepare_study(systems: tp.Mapping[str, tp.Union[str, Path]], out: tp.Union[str, Path],
                  captions: tp.Optional[tp.Mapping[str, str]] = None, prompts_file: tp.Optional[Path] = None,
                  num_prompts: tp.Optional[int] = None, catch_trials: int = 2, ties: bool = False, seed: int = 0,
                  question: str = DEFAULT_QUESTION, replace: bool = False) -> Path:
    """Build a blind pairwise preference study from two or more systems' clips of the same prompts.

    Args:
        systems (dict): System name -> folder of clips (wav/flac/ogg), matched across systems by file name.
            The names stay in `study.json` and the tally; the page never shows them.
        out (Path): The study folder to create.
        captions (dict, optional): Clip stem -> caption; overrides every other caption source.
        prompts_file (Path, optional): One caption per line (see `captions_from_prompts_file`).
        num_prompts (int, optional): Use this many prompts, drawn at random with `seed`; default all.
        catch_trials (int): Trials whose right answer is known (a clip of another prompt as the foil).
        ties (bool): Offer a "no preference" answer (the paper did not).
        seed (int): Seeds the prompt draw, the catch trials and every rater's order and sides.
        question (str): What the rater is asked on every trial.
        replace (bool): Replace a study already in `out` when it holds no answer yet.
    Returns:
        Path: the study folder.
    Raises:
        StudyError: bad input (the message names the file), before anything is written.
    """
    out = Path(out)
    if num_prompts is not None and num_prompts < 1:
        raise StudyError(f"--num-prompts must be >= 1, got {num_prompts}")
    if catch_trials < 0:
        raise StudyError(f"--catch must be >= 0, got {catch_trials}")
    if (out / STUDY_FILE).exists():
        if not replace:
            raise StudyError(f"{out / STUDY_FILE}: {out} already holds a study; choose another --out or delete it")
        if (out / ANSWERS_FILE).exists():
            raise StudyError(f"{out / ANSWERS_FILE}: the study in {out} already has answers; it is never replaced")
    elif out.exists() and any(item.name != GENERATED_DIR for item in out.iterdir()):
        raise StudyError(f"{out}: exists and is not empty; choose another --out")
    clips, prompt_captions = collect_clips(systems, captions, prompts_file)
    rng = random.Random(seed)
    stems = sorted(prompt_captions)
    if num_prompts is not None:
        if num_prompts > len(stems):
            raise StudyError(f"--num-prompts {num_prompts}: the systems share only {len(stems)} prompts")
        stems = sorted(rng.sample(stems, num_prompts))
    names = list(systems)
    trials = build_trials(names, stems, catch_trials, rng)

    # Only a study without answers (checked above) is replaced; generated clips stay.
    shutil.rmtree(out / AUDIO_DIR, ignore_errors=True)
    (out / AUDIO_DIR).mkdir(parents=True)
    tokens: tp.Set[str] = set()
    clip_tokens: tp.Dict[str, tp.Dict[str, str]] = {name: {} for name in names}
    for name in names:
        for stem in stems:
            token = _new_token(tokens)
            _reencode(clips[name][stem], out / AUDIO_DIR / f'{token}.wav')
            clip_tokens[name][stem] = token
    for trial in trials:
        trial['tokens'] = [clip_tokens[system][prompt] for system, prompt in trial['clips']]
    study = {
        'version': STUDY_VERSION, 'created': time.strftime('%Y-%m-%dT%H:%M:%S'), 'seed': seed,
        'question': question, 'ties': bool(ties), 'systems': names,
        'sources': {name: str(Path(folder).resolve()) for name, folder in systems.items()},
        'prompts': [{'id': stem, 'caption': prompt_captions[stem]} for stem in stems],
        'clips': {name: clip_tokens[name] for name in names},
        'trials': trials,
    }
    (out / STUDY_FILE).write_text(json.dumps(study, indent=1, ensure_ascii=False) + '\n')
    return out


class Study:
    """A prepared study, read back from its folder.

    Attributes:
        folder (Path): The study folder.
        data (dict): The content of `study.json`.
        trials (dict): Trial id -> trial.
        audio (dict): Token -> wav path (the only files the server sends).
        captions (dict): Prompt id -> caption.
    """
    def __init__(self, folder: tp.Union[str, Path]):
        self.folder = Path(folder).resolve()
        path = self.folder / STUDY_FILE
        if not path.is_file():
            raise StudyError(f"{path}: no study here (make one with `python -m rr_audiocraft.listen prepare`)")
        try:
            self.data = json.loads(path.read_text())
        except ValueError:
            raise StudyError(f"{path}: not valid JSON") from None
        if self.data.get('version') != STUDY_VERSION:
            raise StudyError(f"{path}: study version {self.data.get('version')!r}, expected {STUDY_VERSION}")
        self.trials = {trial['id']: trial for trial in self.data['trials']}
        self.captions = {prompt['id']: prompt['caption'] for prompt in self.data['prompts']}
        self.audio = {}
        for trial in self.data['trials']:
            for token in trial['tokens']:
                if not TOKEN_PATTERN.match(token):
                    raise StudyError(f"{path}: malformed clip token {token!r}")
                self.audio[token] = self.folder / AUDIO_DIR / f'{token}.wav'

    @property
    def systems(self) -> tp.List[str]:
        return list(self.data['systems'])

    @property
    def ties(self) -> bool:
        return bool(self.data['ties'])

    @property
    def question(self) -> str:
        return str(self.data['question'])

    @property
    def seed(self) -> int:
        return int(self.data['seed'])
