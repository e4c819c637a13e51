"""Independent judge for the synthetic benchmark of `rr_audiocraft.data.synth`.

The judge shares nothing with the generator it evaluates (no EnCodec, no LM, no text encoder): it
is a small sound-event detector trained from scratch on the benchmark's *training* clips only. A
convolutional network maps a log-mel spectrogram to per-frame activity probabilities of every
source, supervised by the event times the synthesiser records in each sidecar. Decisions are
simple post-processing of those activity curves:

- sources: the sources with at least one detected segment,
- order: those sources sorted by their first onset,
- count: the largest number of separate segments of one source (the counted source of the
  caption occurs 1-3 times, the second source of a two-source clip once),
- relation: "single" for one source, else "while" if the two activities mostly overlap, "then".

Because the audio it judges comes out of a tiny neural codec, training views are degraded (noise,
low-pass, spectral tilt, smearing, gain, time shifts) so that the detector keeps working on
muffled, noisy clips.

`Judge.report` gives the benchmark metrics of generated clips against their captions' ground
truth and against reference clips of the same captions: `source_f1`, `count_acc`, `order_acc`,
`relation_acc`, `kl` (the analogue of AudioCraft's PaSST KL) and `fd` (the analogue of FAD).

Example::

    judge = Judge.fit('bench/egs/train', seed=0)
    reference_wavs, truths, _ = load_clips('bench/egs/test')
    print(judge.self_check(reference_wavs, truths))
    print(judge.report(generated_wavs, truths, reference_wavs))
"""
import dataclasses
import logging
from pathlib import Path
import time
import typing as tp

import julius
import numpy as np
import scipy.linalg
import scipy.ndimage
import torch
from torch import nn
import torch.nn.functional as F
import torchaudio

from ..data.synth import load_clips


logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
WavLike = tp.Union[np.ndarray, torch.Tensor]
Wavs = tp.Union[WavLike, tp.Sequence[WavLike]]


@dataclasses.dataclass
class JudgeConfig:
    """Features, network size, training schedule and decision rules of the judge."""
    n_fft: int = 1024
    hop_length: int = 320  # 20 ms frames: repeated events are >= 150 ms apart, i.e. >= 7 frames.
    n_mels: int = 64
    conv_channels: int = 16
    hidden: int = 64
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    views: int = 4  # Precomputed views per training clip: one clean, the others degraded.
    threshold: float = 0.5
    median_frames: int = 5  # Median filter on the binarised activity, removes 1-2 frame blips.
    min_segment_frames: int = 3  # Shortest segment that counts as an event (60 ms).
    while_overlap: float = 0.5  # Overlap fraction (of the shorter activity) above which it is "while".
    fd_ridge: float = 1e-6  # Added to covariance diagonals: a few dozen clips give singular ones.


class _DetectorNet(nn.Module):
    """Frame-wise multi-label source detector.

    Two 2-D conv blocks pool frequency only (time resolution stays at one frame), then dilated
    1-D convs give ~ +-0.2 s of temporal context to each frame.
    """
    def __init__(self, n_mels: int, num_sources: int, conv_channels: int, hidden: int):
        super().__init__()
        channels = conv_channels
        self.spectral = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d((4, 1)),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.MaxPool2d((4, 1)))
        flat = 2 * channels * (n_mels // 16)
        self.temporal = nn.Sequential(
            nn.Conv1d(flat, hidden, 5, padding=2), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=4, dilation=4), nn.BatchNorm1d(hidden), nn.ReLU())
        self.head = nn.Conv1d(hidden, num_sources, 1)

    def forward(self, features: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Args:
            features: normalised log-mel, [B, n_mels, T].
        Returns:
            tuple: frame logits [B, K, T] and penultimate frame features [B, hidden, T].
        """
        x = self.spectral(features[:, None])
        x = self.temporal(x.flatten(1, 2))
        return self.head(x), x


class _Features(nn.Module):
    """Log-mel spectrogram, [B, T_samples] -> [B, n_mels, T_frames] (not normalised)."""
    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels, f_min=20.)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav) + 1e-8)


# ---------------------------------------------------------------------------------------------
# Training data: frame targets and degraded views.
# ---------------------------------------------------------------------------------------------

def _frame_targets(events: tp.Sequence[tp.Mapping[str, tp.Any]], sources: tp.Sequence[str],
                   num_frames: int, hop_length: int) -> torch.Tensor:
    """Per-frame activity of each source from the sidecar's events. Returns [K, num_frames]."""
    frame_times = torch.arange(num_frames) * hop_length / SAMPLE_RATE
    targets = torch.zeros(len(sources), num_frames)
    for event in events:
        active = (frame_times >= event['onset']) & (frame_times <= event['offset'])
        targets[sources.index(event['source'])] += active.float()
    return targets.clamp(max=1.)


def _degrade(wav: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random codec-like degradation of a batch, [B, T] -> [B, T].

    Spectral tilt and low-pass (muffled, coloured codecs), smearing by a short decaying noise
    response (blurred transients), additive white or pink noise at 5-35 dB SNR (quantisation and
    codec noise), and a gain of -20 to +6 dB.
    """
    def uniform(low: float, high: float, size: int = wav.shape[0]) -> torch.Tensor:
        return low + (high - low) * torch.rand(size, 1, generator=generator)

    batch, length = wav.shape
    spectrum = torch.fft.rfft(wav)
    freqs = torch.fft.rfftfreq(length, 1 / SAMPLE_RATE)[None]
    tilt = (freqs.clamp(min=50.) / 1000.) ** uniform(-0.4, 0.3)
    cutoff = torch.where(uniform(0, 1) < 0.6, uniform(2500., 7000.), torch.full((batch, 1), 1e9))
    lowpass = 1 / (1 + (freqs / cutoff) ** 8)
    spectrum = spectrum * tilt * lowpass
    # Smearing: convolution with a 0.1 s noise burst decaying with tau 10-40 ms, on a third of clips.
    ir_time = torch.arange(int(0.1 * SAMPLE_RATE)) / SAMPLE_RATE
    ir = torch.randn(batch, ir_time.numel(), generator=generator) * torch.exp(-ir_time / uniform(0.01, 0.04))
    ir[:, 0] = 0.
    ir = ir / ir.norm(dim=1, keepdim=True) * uniform(0., 0.7) * (uniform(0, 1) < 0.33)
    ir[:, 0] = 1.
    spectrum = spectrum * torch.fft.rfft(ir, n=length)
    out = torch.fft.irfft(spectrum, n=length)
    # Noise, white or pink (1/sqrt(f) amplitude).
    noise = torch.fft.rfft(torch.randn(batch, length, generator=generator))
    pink = torch.where(uniform(0, 1) < 0.5, freqs.clamp(min=20.).rsqrt() * 10., torch.ones_like(freqs))
    noise = torch.fft.irfft(noise * pink, n=length)
    snr_db = uniform(5., 35.)
    signal_rms = out.pow(2).mean(1, keepdim=True).sqrt()
    noise = noise / noise.pow(2).mean(1, keepdim=True).sqrt() * signal_rms * 10 ** (-snr_db / 20)
    out = out + noise * (uniform(0, 1) < 0.8)
    out = out * 10 ** (uniform(-20., 6.) / 20)
    return out.clamp(-1., 1.)


def _shift(features: torch.Tensor, targets: torch.Tensor, max_frames: int,
           generator: torch.Generator) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Shifts each clip and its targets by the same random number of frames, padding with the
    clip's quietest frame value. features: [B, M, T], targets: [B, K, T]."""
    shifted_features, shifted_targets = torch.empty_like(features), torch.zeros_like(targets)
    floor = features.amin(dim=(1, 2))
    for index in range(features.shape[0]):
        shift = int(torch.randint(-max_frames, max_frames + 1, (1,), generator=generator))
        shifted_features[index] = floor[index]
        if shift >= 0:
            shifted_features[index, :, shift:] = features[index, :, :features.shape[-1] - shift]
            shifted_targets[index, :, shift:] = targets[index, :, :targets.shape[-1] - shift]
        else:
            shifted_features[index, :, :shift] = features[index, :, -shift:]
            shifted_targets[index, :, :shift] = targets[index, :, -shift:]
    return shifted_features, shifted_targets


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
        if not torch.isfinite(clip).all():
            raise ValueError(f"Clip {index} contains NaN or infinite samples.")
        out.append(clip)
    return out


def _check_truths(truths: tp.Sequence[tp.Mapping[str, tp.Any]], num_clips: int) -> None:
    if len(truths) != num_clips:
        raise ValueError(f"Got {num_clips} clips but {len(truths)} ground truths.")
    for index, truth in enumerate(truths):
        missing = [key for key in ('sources', 'count') if key not in truth]
        if missing:
            raise ValueError(f"Ground truth {index} lacks {missing} (expected a sidecar of rr_audiocraft.data.synth).")


def _segments(active: np.ndarray, min_frames: int) -> tp.List[tp.Tuple[int, int]]:
    """Runs of True in a 1-D boolean array, as [start, end) frame pairs at least `min_frames` long."""
    padded = np.concatenate([[False], active, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2]) if end - start >= min_frames]


def frechet_distance(embeddings_a: np.ndarray, embeddings_b: np.ndarray, ridge: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets, [N, D] and [M, D].

    `ridge` is added to both covariance diagonals: with fewer clips than dimensions the sample
    covariances are singular and their matrix square root would be ill-conditioned.
    """
    if len(embeddings_a) < 2 or len(embeddings_b) < 2:
        raise ValueError("The Fréchet distance needs at least 2 clips per set.")
    mu_a, mu_b = embeddings_a.mean(0), embeddings_b.mean(0)
    eye = np.eye(embeddings_a.shape[1])
    sigma_a = np.cov(embeddings_a, rowvar=False) + ridge * eye
    sigma_b = np.cov(embeddings_b, rowvar=False) + ridge * eye
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    covmean = np.real(covmean)  # sqrtm returns tiny imaginary parts from round-off.
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a + sigma_b - 2 * covmean)
    return float(max(distance, 0.))


def kl_divergence(target_probs: np.ndarray, pred_probs: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    """KL(target || pred) per row of [N, K] distributions, with AudioCraft's KLDivergenceMetric
    convention (epsilon added to the predictions before the log). Returns [N]."""
    return np.sum(target_probs * (np.log(target_probs + 1e-12) - np.log(pred_probs + epsilon)), axis=-1)


# ---------------------------------------------------------------------------------------------
# The judge.
# ---------------------------------------------------------------------------------------------

class Judge:
    """Source / count / order judge of synthetic benchmark clips. Build with `fit` or `load`.

    Args:
        sources: source names, in the order of the network's outputs.
        config: feature, network and decision settings.
        state_dict: network weights (random init if None).
        feature_mean, feature_std: normalisation of log-mel features, from the training clips.
    """
    def __init__(self, sources: tp.Sequence[str], config: tp.Optional[JudgeConfig] = None,
                 state_dict: tp.Optional[tp.Dict[str, torch.Tensor]] = None,
                 feature_mean: float = 0., feature_std: float = 1.):
        self.sources = list(sources)
        self.config = config or JudgeConfig()
        self.features = _Features(self.config)
        self.net = _DetectorNet(self.config.n_mels, len(self.sources), self.config.conv_channels, self.config.hidden)
        if state_dict is not None:
            self.net.load_state_dict(state_dict)
        self.net.eval()
        self.feature_mean, self.feature_std = float(feature_mean), float(feature_std)

    # -- training ------------------------------------------------------------------------------

    @classmethod
    def fit(cls, train: tp.Union[str, Path], seed: int = 0, config: tp.Optional[JudgeConfig] = None,
            verbose: bool = False) -> 'Judge':
        """Trains a judge on the clips of a training split (CPU, ~40 s for 480 clips on 2 cores).

        Args:
            train: a train manifest (``egs/train/data.jsonl``) or its folder, a folder of wavs with
                sidecars, or a dataset root (its train split is used). Never pass the test split:
                the judge must not have heard the held-out pairs it evaluates.
            seed: seed of the initialisation, the degradations and the batch order.
            config: settings, `JudgeConfig()` by default.
            verbose: log the loss of every epoch.
        Returns:
            Judge: the trained judge.
        """
        begin = time.time()
        config = config or JudgeConfig()
        wavs, infos, sample_rate = load_clips(train)
        if any('events' not in info for info in infos):
            raise ValueError(f"Clips in {train} lack the 'events' ground truth of rr_audiocraft.data.synth sidecars.")
        clips = _as_wav_list(wavs, sample_rate)
        length = max(clip.numel() for clip in clips)
        batch = torch.stack([F.pad(clip, (0, length - clip.numel())) for clip in clips])
        sources = sorted({event['source'] for info in infos for event in info['events']})
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        judge = cls(sources, config)

        # Views are computed once: the degradations cost more than a training step.
        with torch.no_grad():
            views = [judge.features(batch)]
            for _ in range(config.views - 1):
                # In chunks: the FFT-domain degradations hold several copies of their input.
                views.append(torch.cat([judge.features(_degrade(chunk, generator)) for chunk in batch.split(64)]))
            features = torch.stack(views, dim=1)  # [N, V, M, T]
        judge.feature_mean = float(features.mean())
        judge.feature_std = float(features.std())
        features = (features - judge.feature_mean) / judge.feature_std
        num_frames = features.shape[-1]
        targets = torch.stack([_frame_targets(info['events'], sources, num_frames, config.hop_length)
                               for info in infos])  # [N, K, T]

        optimizer = torch.optim.Adam(judge.net.parameters(), lr=config.lr)
        steps_per_epoch = max(1, len(clips) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
        max_shift = int(0.2 * SAMPLE_RATE / config.hop_length)
        judge.net.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(clips), generator=generator)
            total = 0.
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                view = torch.randint(config.views, (len(index),), generator=generator)
                x, y = _shift(features[index, view], targets[index], max_shift, generator)
                frame_logits, _ = judge.net(x)
                # Frame loss places the events; the clip loss (max over time) sharpens presence.
                loss = (F.binary_cross_entropy_with_logits(frame_logits, y)
                        + F.binary_cross_entropy_with_logits(frame_logits.amax(-1), y.amax(-1)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item()
            if verbose:
                logger.info("judge epoch %d/%d: loss %.4f", epoch + 1, config.epochs, total / steps_per_epoch)
        judge.net.eval()
        logger.info("Trained the judge on %d clips in %.1f s.", len(clips), time.time() - begin)
        return judge

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: tp.Union[str, Path]) -> None:
        """Writes the judge (weights, sources, settings, normalisation) to one torch file."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({'sources': self.sources, 'config': dataclasses.asdict(self.config),
                    'state_dict': self.net.state_dict(),
                    'feature_mean': self.feature_mean, 'feature_std': self.feature_std}, path)

    @classmethod
    def load(cls, path: tp.Union[str, Path]) -> 'Judge':
        """Reads a judge written by `save`."""
        package = torch.load(path, map_location='cpu', weights_only=True)
        return cls(package['sources'], JudgeConfig(**package['config']), package['state_dict'],
                   package['feature_mean'], package['feature_std'])

    # -- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def _frame_outputs(self, clips: tp.List[torch.Tensor]) -> tp.List[tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Frame logits [K, T] and frame features [H, T] of each clip (clips batched by length)."""
        outputs: tp.List[tp.Any] = [None] * len(clips)
        by_length: tp.Dict[int, tp.List[int]] = {}
        for index, clip in enumerate(clips):
            by_length.setdefault(clip.numel(), []).append(index)
        for indices in by_length.values():
            for start in range(0, len(indices), 64):
                chunk = indices[start:start + 64]
                features = self.features(torch.stack([clips[index] for index in chunk]))
                features = (features - self.feature_mean) / self.feature_std
                frame_logits, frame_features = self.net(features)
                for offset, index in enumerate(chunk):
                    outputs[index] = (frame_logits[offset], frame_features[offset])
        return outputs

    def _decide(self, frame_logits: torch.Tensor) -> tp.Dict[str, tp.Any]:
        """Sources, count, order and relation from one clip's frame logits [K, T]."""
        config = self.config
        active = (torch.sigmoid(frame_logits) > config.threshold).numpy()
        active = scipy.ndimage.median_filter(active.astype(np.uint8), size=(1, config.median_frames)) > 0
        segments = {source: _segments(active[k], config.min_segment_frames) for k, source in enumerate(self.sources)}
        present = {source: segs for source, segs in segments.items() if segs}
        order = sorted(present, key=lambda source: present[source][0][0])
        count = max((len(segs) for segs in present.values()), default=0)
        if len(order) == 0:
            relation = 'none'
        elif len(order) == 1:
            relation = 'single'
        else:
            first, second = (active[self.sources.index(source)] for source in order[:2])
            overlap = np.sum(first & second) / max(1, min(first.sum(), second.sum()))
            relation = 'while' if overlap > config.while_overlap else 'then'
        return {'sources': sorted(present), 'count': count, 'order': order, 'relation': relation}

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
        clips = _as_wav_list(wavs, sample_rate)
        predictions = []
        for frame_logits, frame_features in self._frame_outputs(clips):
            clip_logits = frame_logits.amax(-1)
            prediction = self._decide(frame_logits)
            prediction['source_probs'] = dict(zip(self.sources, torch.sigmoid(clip_logits).tolist()))
            prediction['posteriors'] = torch.softmax(clip_logits, -1).numpy()
            prediction['embedding'] = torch.cat([frame_features.mean(-1), frame_features.amax(-1)]).numpy()
            predictions.append(prediction)
        return predictions

    # -- metrics -------------------------------------------------------------------------------

    @staticmethod
    def _accuracies(predictions: tp.Sequence[tp.Mapping[str, tp.Any]],
                    truths: tp.Sequence[tp.Mapping[str, tp.Any]]) -> tp.Dict[str, float]:
        """Source micro-F1, count / order / relation accuracy of predictions against ground truths."""
        true_positives = false_positives = false_negatives = 0
        count_hits, order_hits, num_ordered, relation_hits, num_related = 0, 0, 0, 0, 0
        for prediction, truth in zip(predictions, truths):
            predicted, expected = set(prediction['sources']), set(truth['sources'])
            true_positives += len(predicted & expected)
            false_positives += len(predicted - expected)
            false_negatives += len(expected - predicted)
            count_hits += int(prediction['count'] == truth['count'])
            # Only "then" captions fix the order of the two sources.
            if truth.get('relation') == 'then':
                num_ordered += 1
                order_hits += int(prediction['order'] == list(truth['sources']))
            if truth.get('relation') is not None:
                num_related += 1
                relation_hits += int(prediction['relation'] == truth['relation'])
        denominator = 2 * true_positives + false_positives + false_negatives
        return {
            'source_f1': 2 * true_positives / denominator if denominator else 1.,
            'count_acc': count_hits / len(truths),
            'order_acc': order_hits / num_ordered if num_ordered else float('nan'),
            'relation_acc': relation_hits / num_related if num_related else float('nan'),
        }

    def self_check(self, reference_wavs: Wavs, truths: tp.Sequence[tp.Mapping[str, tp.Any]],
                   sample_rate: int = SAMPLE_RATE) -> tp.Dict[str, float]:
        """Accuracy of the judge itself on real (synthesised) clips with known ground truth.

        Args:
            reference_wavs: held-out clips (e.g. the test split), see `predict` for the format.
            truths: their sidecars (need `sources` and `count`; `relation` enables order_acc and
                relation_acc).
            sample_rate: sample rate of the clips.
        Returns:
            dict: source_f1, count_acc, order_acc ("then" clips; NaN if none), relation_acc,
            num_clips.
        """
        clips = _as_wav_list(reference_wavs, sample_rate)
        _check_truths(truths, len(clips))
        metrics = self._accuracies(self.predict(clips), truths)
        metrics['num_clips'] = len(clips)
        return metrics

    def report(self, generated_wavs: Wavs, truths: tp.Sequence[tp.Mapping[str, tp.Any]],
               reference_wavs: Wavs, sample_rate: int = SAMPLE_RATE,
               reference_sample_rate: tp.Optional[int] = None) -> tp.Dict[str, float]:
        """Benchmark metrics of generated clips.

        Args:
            generated_wavs: one generated clip per caption, see `predict` for the format.
            truths: the ground truth (sidecar) of each caption.
            reference_wavs: the dataset's clip for each caption, same order.
            sample_rate: sample rate of the generated clips.
            reference_sample_rate: sample rate of the references (default: `sample_rate`).
        Returns:
            dict with
                source_f1, count_acc, order_acc, relation_acc: generated clips vs the truths,
                kl: mean over clips of KL(p_ref || p_gen) between the judge's label posteriors
                    (PaSST-KL analogue; 0 when the judge hears the same labels),
                fd: Fréchet distance between the judge embeddings of the two sets (FAD analogue),
                num_clips.
        """
        generated = _as_wav_list(generated_wavs, sample_rate)
        references = _as_wav_list(reference_wavs, reference_sample_rate or sample_rate)
        _check_truths(truths, len(generated))
        if len(references) != len(generated):
            raise ValueError(f"Got {len(generated)} generated clips but {len(references)} references.")
        generated_predictions = self.predict(generated)
        reference_predictions = self.predict(references)
        metrics = self._accuracies(generated_predictions, truths)
        generated_posteriors = np.stack([prediction['posteriors'] for prediction in generated_predictions])
        reference_posteriors = np.stack([prediction['posteriors'] for prediction in reference_predictions])
        metrics['kl'] = float(kl_divergence(reference_posteriors, generated_posteriors).mean())
        metrics['fd'] = frechet_distance(np.stack([prediction['embedding'] for prediction in generated_predictions]),
                                         np.stack([prediction['embedding'] for prediction in reference_predictions]),
                                         ridge=self.config.fd_ridge)
        metrics['num_clips'] = len(generated)
        return metrics
