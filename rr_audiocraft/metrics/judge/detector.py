"""The judge's detector: a sound-event detector of the synthetic benchmark, and its decisions.

The judge shares nothing with the generators it evaluates (no LM, no text encoder): it is a small
sound-event detector trained from scratch on the benchmark's *training* clips only (and, when the
caller gives the codec's round trip, on those clips after it: then it judges what the codec can
carry). A temporal convolutional network maps log-mel features to two per-frame curves for every
source, its activity and its onsets, supervised by the event times each sidecar records.
Decisions are simple post-processing of those curves:

- sources: the sources whose activity passes the threshold somewhere,
- order: those sources sorted by their first active frame,
- relation: "single" for one source; for two, "while" if their spans (first to last active
  frame) mostly overlap, else "then",
- count: the events of the counted source (the first one of a "then" clip, the shorter-lived one
  of a "while" clip): its onset peaks, merged when its activity does not dip in between.

Its training views are in `augment`, its metrics in `scores`; `Judge.score` is the one entry point
from clips to metrics.

Example::

    judge = Judge.fit('data/synth/egs/train', seed=0)
    reference_wavs, truths, _ = load_clips('data/synth/egs/test')
    print(judge.score(reference_wavs, truths))                               # the judge on references
    print(judge.score(generated_wavs, truths, sample_rate=8000, references=reference_wavs))
"""
import contextlib
import dataclasses
import logging
from pathlib import Path
import time
import typing as tp

import julius
import numpy as np
import scipy.ndimage
import scipy.signal
import torch
from torch import nn
import torch.nn.functional as F
import torchaudio

from ...data.synth import load_clips
from . import augment
from .scores import check_truths, score_predictions


logger = logging.getLogger(__name__)

SAMPLE_RATE = augment.SAMPLE_RATE
# Bumped whenever the network, features or training views change: older saved judges are refused.
JUDGE_VERSION = 3
# A function that takes a batch of 16 kHz clips [B, T] through a codec and back, [B, T] at 16 kHz.
RoundTrip = tp.Callable[[torch.Tensor], torch.Tensor]
WavLike = tp.Union[np.ndarray, torch.Tensor]
Wavs = tp.Union[WavLike, tp.Sequence[WavLike]]


@dataclasses.dataclass
class JudgeConfig:
    """Features, network size, training schedule and decision rules of the judge."""
    n_fft: int = 1024
    hop_length: int = 512  # 32 ms frames: repeated events are >= 150 ms apart, i.e. >= 4 frames.
    n_mels: int = 64
    stem_channels: int = 8
    width: int = 96
    hidden: int = 64
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    views: int = 4  # Precomputed views per training clip: one clean, the others degraded.
    mix_p: float = 0.75  # Fraction of training examples that are the sum of two clips.
    crop_seconds: float = 2.5  # Training window length.
    onset_weight: float = 5.  # Positive weight of the onset loss (~3 onset frames per event).
    threshold: float = 0.5
    floor_frames: int = 31  # Rolling-minimum window of the background-floor features (~1 s).
    median_frames: int = 3  # Median filter on the binarised activity: drops 1-frame blips and gaps.
    onset_threshold: float = 0.4  # Onset peaks above this are candidate events.
    min_onset_distance: int = 4  # Frames between counted onsets (events start >= 240 ms apart).
    onset_confirm_frames: int = 5  # A candidate counts if the source is active within 5 frames after.
    while_overlap: float = 0.5  # Overlap of the two sources' spans (fraction of the shorter) for "while".
    fd_ridge: float = 1e-6  # Added to covariance diagonals: a few dozen clips give singular ones.
    # Torch intra-op threads in fit and predict (restored after). The net is too small to gain
    # much from more, and on busy cores extra threads spin-wait: one thread trained 9x faster
    # than two on a loaded 2-core machine.
    num_threads: int = 1


class _Features(nn.Module):
    """Log-mel spectrogram and the detector's input features derived from it."""
    KINDS = 3  # Feature kinds stacked along channels: log-mel, height above floor, flux.

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels, f_min=20.)
        self.floor_frames = config.floor_frames

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, T_samples] -> natural-log mel power [B, n_mels, T_frames]."""
        return torch.log(self.mel(wav) + 1e-8)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """[B, M, T] log-mel -> [B, 3M, T]: the log-mel, its height above the local floor of each
        band (a rolling minimum: sustained backgrounds drop out, events over them stand out), and
        its positive frame-to-frame increase (spectral flux: onsets)."""
        floor = -F.max_pool1d(-log_mel, self.floor_frames, stride=1, padding=self.floor_frames // 2)
        flux = F.pad(torch.relu(log_mel.diff(dim=-1)), (1, 0))
        return torch.cat([log_mel, log_mel - floor, flux], dim=1)


class _DetectorNet(nn.Module):
    """Frame-wise multi-label source detector.

    For each source it outputs an activity logit (is the source sounding in this frame?) and an
    onset logit (does one of its events start here?). Counting peaks of the onset curve stays
    right where activity curves of close repeats blur into one run.

    A 3x3 conv over (feature kind, mel, time) sees local time-frequency patches, so a clap and a
    whistle in overlapping bands stay separate features; with the mel bins fed straight in as
    channels, the judge missed events over backgrounds it had not heard them with (count acc
    0.93 instead of 1.0 on a test split). Pooling 4 mel bins then keeps the temporal net cheap.
    Its dilations 1-2-4-8 give each frame +-15 frames (~0.5 s) of context, enough to tell a
    sustained background from a repeated event.
    """
    def __init__(self, n_mels: int, num_sources: int, stem_channels: int, width: int, hidden: int):
        super().__init__()
        if n_mels % 4:
            raise ValueError(f"n_mels must be a multiple of 4, got {n_mels}.")
        self.stem = nn.Sequential(
            nn.Conv2d(_Features.KINDS, stem_channels, 3, padding=1), nn.BatchNorm2d(stem_channels), nn.ReLU(),
            nn.MaxPool2d((4, 1)))
        layers: tp.List[nn.Module] = []
        channels = stem_channels * (n_mels // 4)
        for dilation, out_channels in zip([1, 2, 4, 8], [width, width, width, hidden], strict=True):
            layers += [nn.Conv1d(channels, out_channels, 3, padding=dilation, dilation=dilation),
                       nn.BatchNorm1d(out_channels), nn.ReLU()]
            channels = out_channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(hidden, 2 * num_sources, 1)

    def forward(self, features: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Args:
            features: normalised features of `_Features`, [B, KINDS * n_mels, T].
        Returns:
            tuple: frame logits [B, 2K, T] (activity of the K sources, then their onsets) and
            penultimate frame features [B, hidden, T].
        """
        batch, channels, frames = features.shape
        patches = self.stem(features.view(batch, _Features.KINDS, channels // _Features.KINDS, frames))
        hidden = self.body(patches.flatten(1, 2))
        return self.head(hidden), hidden



# ---------------------------------------------------------------------------------------------
# Input handling.
# ---------------------------------------------------------------------------------------------

def _as_wav_list(wavs: Wavs, sample_rate: int) -> tp.List[torch.Tensor]:
    """Validates clips and brings them to mono float32 [T] at 16 kHz.

    Accepts a sequence of [T] or [1, T] arrays/tensors, or one batch tensor [B, T] or [B, 1, T].
    """
    if isinstance(wavs, (np.ndarray, torch.Tensor)):
        batch = torch.as_tensor(wavs)
        if batch.dim() == 3 and batch.shape[1] == 1:
            batch = batch[:, 0]
        if batch.dim() != 2:
            raise ValueError(f"A batch of clips must be [B, T] or [B, 1, T], got shape {tuple(batch.shape)}.")
        clips = list(batch)
    else:
        clips = [torch.as_tensor(wav) for wav in wavs]
    if not clips:
        raise ValueError("No clips given.")
    out = []
    for index, clip in enumerate(clips):
        if clip.dim() == 2 and clip.shape[0] == 1:
            clip = clip[0]
        if clip.dim() != 1:
            raise ValueError(f"Clip {index} must be mono [T] or [1, T], got shape {tuple(clip.shape)}.")
        clip = clip.detach().float().cpu()
        if sample_rate != SAMPLE_RATE:
            clip = julius.resample_frac(clip, sample_rate, SAMPLE_RATE)
        if clip.numel() < JudgeConfig.n_fft:
            raise ValueError(f"Clip {index} has {clip.numel()} samples at 16 kHz, fewer than one analysis "
                             f"window ({JudgeConfig.n_fft}).")
        if not np.isfinite(clip.numpy()).all():
            raise ValueError(f"Clip {index} contains NaN or infinite samples.")
        out.append(clip)
    return out


@contextlib.contextmanager
def _torch_threads(num_threads: int) -> tp.Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)



# ---------------------------------------------------------------------------------------------
# The judge.
# ---------------------------------------------------------------------------------------------

class Judge:
    """Source / count / order judge of synthetic benchmark clips. Build with `fit` or `load`.

    Args:
        sources: source names, in the order of the network's outputs.
        config: feature, network and decision settings.
        state_dict: network weights (random init if None).
        feature_mean, feature_std: per-channel normalisation of the detector's input features
            [3 * n_mels], from the training clips (none if None).
    """
    def __init__(self, sources: tp.Sequence[str], config: tp.Optional[JudgeConfig] = None,
                 state_dict: tp.Optional[tp.Dict[str, torch.Tensor]] = None,
                 feature_mean: tp.Optional[torch.Tensor] = None, feature_std: tp.Optional[torch.Tensor] = None,
                 fitted_on: tp.Optional[tp.Mapping[str, tp.Any]] = None):
        self.sources = list(sources)
        self.fitted_on = dict(fitted_on or {})
        self.config = config or JudgeConfig()
        self.features = _Features(self.config)
        self.net = _DetectorNet(self.config.n_mels, len(self.sources), self.config.stem_channels,
                                self.config.width, self.config.hidden)
        if state_dict is not None:
            self.net.load_state_dict(state_dict)
        self.net.eval()
        channels = _Features.KINDS * self.config.n_mels
        self.feature_mean = torch.zeros(channels) if feature_mean is None else feature_mean
        self.feature_std = torch.ones(channels) if feature_std is None else feature_std

    def _net_input(self, log_mel: torch.Tensor) -> torch.Tensor:
        """[B, M, T] log-mel -> normalised detector input [B, 3M, T]."""
        return (self.features(log_mel) - self.feature_mean[:, None]) / self.feature_std[:, None]

    # -- training ------------------------------------------------------------------------------

    @classmethod
    def fit(cls, train: tp.Union[str, Path], seed: int = 0, config: tp.Optional[JudgeConfig] = None,
            verbose: bool = False, round_trip: tp.Optional[RoundTrip] = None,
            fitted_on: tp.Optional[tp.Mapping[str, tp.Any]] = None) -> 'Judge':
        """Trains a judge on the clips of a training split (CPU; ~40 s of one core for 480 clips,
        twice that with `round_trip`).

        Args:
            train: a train manifest (``egs/train/data.jsonl``) or its folder, a folder of wavs with
                sidecars, or a dataset root (its train split is used). Never pass the test split:
                the judge must not have heard the held-out pairs it evaluates.
            seed: seed of the initialisation, the degradations and the batch order (the global
                torch RNG is left as it was).
            config: settings, `JudgeConfig()` by default.
            verbose: log the loss of every epoch.
            round_trip: the codec the judged audio comes through, [B, T] -> [B, T] at 16 kHz: the
                training clips after it become views of their own (clean and round trip are then
                seen equally often, each also degraded), so the judge hears what the codec keeps.
                Only training clips ever go through it.
            fitted_on: what the judge was fitted on (e.g. the benchmark's seed and the codec's
                sha256), saved with it as `Judge.fitted_on`, so a cache can tell whether it is stale.
        Returns:
            Judge: the trained judge.
        """
        begin = time.time()
        wavs, infos, sample_rate = load_clips(train)
        if any('events' not in info for info in infos):
            raise ValueError(f"Clips in {train} lack the 'events' ground truth of rr_audiocraft.data.synth sidecars.")
        config = config or JudgeConfig()
        with _torch_threads(config.num_threads), torch.random.fork_rng():
            torch.manual_seed(seed)
            clips = _as_wav_list(wavs, sample_rate)
            judge = cls._train(clips, infos, config, seed, verbose, round_trip)
        judge.fitted_on = dict(fitted_on or {})
        logger.info("Trained the judge on %d clips in %.1f s.", len(clips), time.time() - begin)
        return judge

    @classmethod
    def _train(cls, clips: tp.List[torch.Tensor], infos: tp.List[tp.Dict[str, tp.Any]], config: JudgeConfig,
               seed: int, verbose: bool, round_trip: tp.Optional[RoundTrip] = None) -> 'Judge':
        """Precomputes views of the clips (clean, round trip, degraded), then trains the detector on
        mixed, shifted, cropped examples of them. clips: [T] each, 16 kHz; infos: their sidecars."""
        length = max(clip.numel() for clip in clips)
        batch = torch.stack([F.pad(clip, (0, length - clip.numel())) for clip in clips])
        sources = sorted({event['source'] for info in infos for event in info['events']})
        generator = torch.Generator().manual_seed(seed)
        judge = cls(sources, config)

        # Views are computed once: the degradations and the round trip cost more than a training step.
        with torch.no_grad():
            # In chunks: the codec and the FFT-domain degradations hold several copies of their input.
            bases = [batch] if round_trip is None else [batch, torch.cat([
                round_trip(chunk)[..., :length] for chunk in batch.split(64)])]
            if bases[-1].shape != batch.shape or not torch.isfinite(bases[-1]).all():
                raise ValueError(f"round_trip must return finite clips of the shape it is given, {tuple(batch.shape)}; "
                                 f"got {tuple(bases[-1].shape)}.")
            if config.views < 2 * len(bases):
                raise ValueError(f"JudgeConfig.views={config.views}: needs at least {2 * len(bases)} (each of "
                                 f"{len(bases)} base view(s) clean and degraded).")
            views = [judge.features.log_mel(base) for base in bases]
            for index in range(config.views - len(bases)):
                # One degraded view of the clean clips, the others of the round trips: what the judge
                # scores (round-tripped references, generated audio) all comes out of the codec.
                base = bases[0] if index == 0 else bases[-1]
                views.append(torch.cat([judge.features.log_mel(augment.degrade(chunk, generator))
                                        for chunk in base.split(64)]))
            features = torch.stack(views, dim=1)  # [N, V, M, T]
            derived = judge.features(features.flatten(0, 1))  # [N * V, 3M, T]
            judge.feature_mean = derived.mean(dim=(0, 2))
            judge.feature_std = derived.std(dim=(0, 2)) + 1e-5
            del derived
        num_frames = features.shape[-1]
        targets = torch.stack([augment.frame_targets(info['events'], sources, num_frames, config.hop_length)
                               for info in infos])  # [N, 2K, T]

        optimizer = torch.optim.Adam(judge.net.parameters(), lr=config.lr)
        # Every base view (clean, round trip) gets the epochs a clean-only judge gets.
        steps_per_epoch = max(1, len(bases) * len(clips) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
        max_shift = int(0.2 * SAMPLE_RATE / config.hop_length)
        onset_weight = torch.tensor(config.onset_weight)
        crop_frames = min(num_frames, int(config.crop_seconds * SAMPLE_RATE / config.hop_length))
        judge.net.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(clips), generator=generator).repeat(len(bases))
            total = 0.
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                view = torch.randint(config.views, (len(index),), generator=generator)
                x, y = features[index, view], targets[index]
                x, y = augment.mix(x, y, features, targets, config.mix_p, generator)
                x, y = augment.shift(x, y, max_shift, generator)
                # A random window per batch: cheaper steps, and events cut at the edges.
                start = int(torch.randint(num_frames - crop_frames + 1, (1,), generator=generator))
                x, y = x[..., start:start + crop_frames], y[..., start:start + crop_frames]
                activity_logits, onset_logits = judge.net(judge._net_input(x))[0].chunk(2, dim=1)
                activity, onsets = y.chunk(2, dim=1)
                # Frame loss places the events; the clip loss (max over time) sharpens presence;
                # onsets are rare frames, hence their positive weight.
                loss = (F.binary_cross_entropy_with_logits(activity_logits, activity)
                        + F.binary_cross_entropy_with_logits(activity_logits.amax(-1), activity.amax(-1))
                        + F.binary_cross_entropy_with_logits(onset_logits, onsets, pos_weight=onset_weight))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item()
            if verbose:
                logger.info("judge epoch %d/%d: loss %.4f", epoch + 1, config.epochs, total / steps_per_epoch)
        judge.net.eval()
        return judge

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: tp.Union[str, Path]) -> None:
        """Writes the judge (weights, sources, settings, normalisation, `fitted_on`) to one torch file,
        atomically: an interrupted save leaves the previous file as it was."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + '.partial')
        torch.save({'version': JUDGE_VERSION, 'sources': self.sources, 'config': dataclasses.asdict(self.config),
                    'state_dict': self.net.state_dict(), 'feature_mean': self.feature_mean,
                    'feature_std': self.feature_std, 'fitted_on': self.fitted_on}, partial)
        partial.replace(path)

    @classmethod
    def load(cls, path: tp.Union[str, Path]) -> 'Judge':
        """Reads a judge written by `save`.

        Raises:
            ValueError: the file is not a judge, or one saved by other judge code (`JUDGE_VERSION`);
                the message names the file and how to refit it.
        """
        fix = (f"delete {path} and fit a new judge (`python -m rr_audiocraft.demo --until ceiling` refits the "
               "demo's; in code: Judge.fit(...).save(path))")
        try:
            package = torch.load(path, map_location='cpu', weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # truncated file, random bytes, a pickle of something else
            raise ValueError(f"{path} is not a readable judge ({type(exc).__name__}): {fix}.") from None
        if not isinstance(package, dict) or package.get('version') != JUDGE_VERSION:
            version = package.get('version') if isinstance(package, dict) else None
            raise ValueError(f"{path} holds a judge of version {version}, saved by other judge code (this code is "
                             f"version {JUDGE_VERSION}): {fix}.")
        return cls(package['sources'], JudgeConfig(**package['config']), package['state_dict'],
                   package['feature_mean'], package['feature_std'], package.get('fitted_on'))

    # -- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def _frame_outputs(self, clips: tp.List[torch.Tensor]) -> tp.List[tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Frame logits [2K, T] and frame features [hidden, T] of each clip (clips batched by length)."""
        outputs: tp.List[tp.Any] = [None] * len(clips)
        by_length: tp.Dict[int, tp.List[int]] = {}
        for index, clip in enumerate(clips):
            by_length.setdefault(clip.numel(), []).append(index)
        for indices in by_length.values():
            for start in range(0, len(indices), 64):
                batch = indices[start:start + 64]
                log_mel = self.features.log_mel(torch.stack([clips[index] for index in batch]))
                frame_logits, frame_features = self.net(self._net_input(log_mel))
                for offset, index in enumerate(batch):
                    outputs[index] = (frame_logits[offset], frame_features[offset])
        return outputs

    def _decide(self, frame_logits: torch.Tensor) -> tp.Dict[str, tp.Any]:
        """Sources, count, order and relation from one clip's frame logits [2K, T]."""
        config = self.config
        activity, onsets = torch.sigmoid(frame_logits).numpy().reshape(2, len(self.sources), -1)
        raw_active = activity > config.threshold
        active = scipy.ndimage.median_filter(raw_active.astype(np.uint8), size=(1, config.median_frames)) > 0
        # A source is present if any frame passes the threshold. Its span runs from its first to
        # its last active frame, a blip-only source spans its peak frame.
        spans = {}
        for k, source in enumerate(self.sources):
            if raw_active[k].any():
                frames = np.flatnonzero(active[k])
                if frames.size == 0:
                    frames = np.array([activity[k].argmax()])
                spans[source] = (int(frames[0]), int(frames[-1]) + 1)
        order = sorted(spans, key=lambda source: int(raw_active[self.sources.index(source)].argmax()))
        relation, counted = 'none', None
        if len(order) == 1:
            relation, counted = 'single', order[0]
        elif len(order) >= 2:
            (first_start, first_end), (second_start, second_end) = spans[order[0]], spans[order[1]]
            overlap = min(first_end, second_end) - max(first_start, second_start)
            shorter = min(first_end - first_start, second_end - second_start)
            if overlap > config.while_overlap * shorter:
                # The counted source of a "while" clip is the one over the longer background.
                relation = 'while'
                counted = min(order[:2], key=lambda source: spans[source][1] - spans[source][0])
            else:
                relation, counted = 'then', order[0]
        count = 0
        if counted is not None:
            k = self.sources.index(counted)
            peaks, _ = scipy.signal.find_peaks(onsets[k], height=config.onset_threshold,
                                               distance=config.min_onset_distance)
            # An onset peak is an event if the source is active within a few frames of it, and a
            # new event only if the activity dipped since the previous one: a decaying pluck or
            # bell can re-trigger the onset curve, never its own activity.
            events: tp.List[int] = []
            for peak in peaks:
                if not raw_active[k, peak:peak + config.onset_confirm_frames + 1].any():
                    continue
                if not events or activity[k, events[-1]:peak + 1].min() < config.threshold:
                    events.append(peak)
            count = max(1, len(events))
        return {'sources': sorted(spans), 'count': count, 'order': order, 'relation': relation}

    def predict(self, wavs: Wavs, sample_rate: int = SAMPLE_RATE) -> tp.List[tp.Dict[str, tp.Any]]:
        """Judges clips.

        Args:
            wavs: clips as a sequence of [T] or [1, T] numpy arrays / torch tensors, or one batch
                tensor [B, T] or [B, 1, T]. Lengths may differ.
            sample_rate: their sample rate; other rates than 16 kHz are resampled.
        Returns:
            list of dict, one per clip, with:
                sources (list of str, sorted), count (int, 0 if nothing detected),
                order (list of str, by first onset), relation ("none", "single", "then", "while"),
                source_probs (dict source -> max-over-time activity probability),
                posteriors (np.ndarray [K], softmax over the clip-level logits, the KL's label
                distribution, in `self.sources` order),
                embedding (np.ndarray [2 * hidden], mean and max over time of the penultimate
                frame features, the FD's embedding).
        """
        with _torch_threads(self.config.num_threads):
            clips = _as_wav_list(wavs, sample_rate)
            outputs = self._frame_outputs(clips)
        predictions = []
        for frame_logits, frame_features in outputs:
            clip_logits = frame_logits[:len(self.sources)].amax(-1)
            prediction = self._decide(frame_logits)
            prediction['source_probs'] = dict(zip(self.sources, torch.sigmoid(clip_logits).tolist(), strict=True))
            prediction['posteriors'] = torch.softmax(clip_logits, -1).numpy()
            prediction['embedding'] = torch.cat([frame_features.mean(-1), frame_features.amax(-1)]).numpy()
            predictions.append(prediction)
        return predictions

    # -- metrics -------------------------------------------------------------------------------

    def score(self, wavs: Wavs, truths: tp.Sequence[tp.Mapping[str, tp.Any]], sample_rate: int = SAMPLE_RATE,
              references: tp.Optional[Wavs] = None, reference_sample_rate: int = SAMPLE_RATE) -> tp.Dict[str, tp.Any]:
        """The benchmark metrics of clips against their captions' ground truth (`scores.score_predictions`).

        Args:
            wavs: one clip per caption (references themselves, round trips or generated clips), see
                `predict` for the format.
            truths: the ground truth (sidecar) of each clip's caption.
            sample_rate: their sample rate.
            references: the dataset's clip of each caption, same order: adds `kl` and `fd`.
            reference_sample_rate: the references' sample rate (the benchmark's 16 kHz by default).
        Returns:
            dict: see `scores.score_predictions`.
        """
        # Checked before anything is judged: predicting costs seconds.
        check_truths(truths, wavs.shape[0] if isinstance(wavs, (np.ndarray, torch.Tensor)) else len(wavs))
        predictions = self.predict(wavs, sample_rate)
        reference_predictions = None if references is None else self.predict(references, reference_sample_rate)
        return score_predictions(predictions, truths, reference_predictions, fd_ridge=self.config.fd_ridge)
