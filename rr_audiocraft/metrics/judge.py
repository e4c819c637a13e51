"""Independent judge for the synthetic benchmark of `rr_audiocraft.data.synth`.

The judge shares nothing with the generator it evaluates (no EnCodec, no LM, no text encoder): it
is a small sound-event detector trained from scratch on the benchmark's *training* clips only. A
temporal convolutional network maps log-mel features to two per-frame curves for every source,
its activity and its onsets, supervised by the event times each sidecar records. Decisions are
simple post-processing of those curves:

- sources: the sources whose activity passes the threshold somewhere,
- order: those sources sorted by their first active frame,
- relation: "single" for one source; for two, "while" if their spans (first to last active
  frame) mostly overlap, else "then",
- count: the events of the counted source (the first one of a "then" clip, the shorter-lived one
  of a "while" clip): its onset peaks, merged when its activity does not dip in between.

The train split never holds the held-out source pairs, so training examples are often the sum of
two training clips, which teaches every pair. Because the audio it judges comes out of a tiny
neural codec, training views are also degraded (noise, low-pass, spectral tilt, smearing,
spectral holes and blips of low-bitrate codecs, gain, time shifts).

`Judge.report` gives the benchmark metrics of generated clips against their captions' ground
truth and against reference clips of the same captions: `source_f1`, `count_acc`, `order_acc`,
`relation_acc`, `kl` (the analogue of AudioCraft's PaSST KL) and `fd` (the analogue of FAD).

Example::

    judge = Judge.fit('data/synth/egs/train', seed=0)
    reference_wavs, truths, _ = load_clips('data/synth/egs/test')
    print(judge.self_check(reference_wavs, truths))
    print(judge.report(generated_wavs, truths, reference_wavs))
"""
import contextlib
import dataclasses
import logging
from pathlib import Path
import time
import typing as tp

import julius
import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal
import torch
from torch import nn
import torch.nn.functional as F
import torchaudio

from ..data.synth import load_clips


logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Bumped whenever the network or features change: older saved judges cannot be loaded.
JUDGE_VERSION = 2
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
        for dilation, out_channels in zip([1, 2, 4, 8], [width, width, width, hidden]):
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
# Training data: frame targets and degraded views.
# ---------------------------------------------------------------------------------------------

def _frame_targets(events: tp.Sequence[tp.Mapping[str, tp.Any]], sources: tp.Sequence[str],
                   num_frames: int, hop_length: int) -> torch.Tensor:
    """Per-frame activity and onset targets of each source from the sidecar's events.

    Returns:
        torch.Tensor: [2K, num_frames], activity of the K sources then their onsets (the frame
        nearest to each event's onset and its two neighbours, to tolerate timing jitter).
    """
    frame_times = torch.arange(num_frames) * hop_length / SAMPLE_RATE
    num_sources = len(sources)
    targets = torch.zeros(2 * num_sources, num_frames)
    for event in events:
        k = sources.index(event['source'])
        targets[k] += ((frame_times >= event['onset']) & (frame_times <= event['offset'])).float()
        onset_frame = int(round(event['onset'] * SAMPLE_RATE / hop_length))
        targets[num_sources + k, max(0, onset_frame - 1):onset_frame + 2] = 1.
    return targets.clamp(max=1.)


def _spectral_quantisation(wav: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """Low-bitrate codec artefacts on a random `probability` of a batch [B, T].

    Short-time spectra lose every bin 15-35 dB under their frame's peak, plus a random 0-50 % of
    blocks of 8 bins x 4 frames (250 Hz x 32 ms), like the bands a perceptual codec starves: what
    is left are patches and warbling blips of energy ("birdies") around holes.
    """
    chosen = torch.nonzero(torch.rand(wav.shape[0], generator=generator) < probability)[:, 0]
    if chosen.numel() == 0:
        return wav
    window = torch.hann_window(512)
    spectrum = torch.stft(wav[chosen], 512, 128, window=window, return_complex=True)  # [B', F, T']
    batch, num_bins, num_frames = spectrum.shape
    magnitude = spectrum.abs()
    floor_db = 15. + 20. * torch.rand(batch, 1, 1, generator=generator)
    keep = magnitude > magnitude.amax(dim=1, keepdim=True) * 10 ** (-floor_db / 20)
    blocks = torch.rand(batch, 1, -(-num_bins // 8), -(-num_frames // 4), generator=generator)
    drop_p = 0.5 * torch.rand(batch, 1, 1, 1, generator=generator)
    kept_blocks = F.interpolate((blocks >= drop_p).float(), scale_factor=(8, 4), mode='nearest')
    keep = keep & (kept_blocks[:, 0, :num_bins, :num_frames] > 0)
    out = wav.clone()
    out[chosen] = torch.istft(spectrum * keep, 512, 128, window=window, length=wav.shape[-1])
    return out


def _degrade(wav: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random codec-like degradation of a batch, [B, T] -> [B, T].

    Spectral tilt and low-pass (muffled, coloured codecs), smearing by a short decaying noise
    response (blurred transients), coarse spectral quantisation (the warbling "musical noise" of
    low-bitrate codecs), additive white or pink noise at 5-35 dB SNR, and a gain of -20 to +6 dB.
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
    out = _spectral_quantisation(out, generator, probability=0.5)
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


def _mix(features: torch.Tensor, targets: torch.Tensor, pool_features: torch.Tensor, pool_targets: torch.Tensor,
         mix_p: float, generator: torch.Generator) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Adds a random other training clip to a fraction `mix_p` of the batch, at -10 to 0 dB.

    The train split never overlaps the held-out source pairs, yet the judge must hear them:
    mixing clips teaches it every pair, including over a sustained background. Mixing is done in
    the power domain of the log-mel features (incoherent sources add their powers).

    Args:
        features: log-mel [B, M, T]; targets: frame activity and onsets [B, 2K, T].
        pool_features: all views of all clips [N, V, M, T]; pool_targets: [N, 2K, T].
    """
    batch = features.shape[0]
    partner = torch.randint(pool_features.shape[0], (batch,), generator=generator)
    view = torch.randint(pool_features.shape[1], (batch,), generator=generator)
    gain_db = -10. * torch.rand(batch, 1, 1, generator=generator)
    mixed = torch.logaddexp(features, pool_features[partner, view] + gain_db * np.log(10.) / 10.)
    is_mixed = (torch.rand(batch, 1, 1, generator=generator) < mix_p)
    features = torch.where(is_mixed, mixed, features)
    targets = torch.where(is_mixed, torch.maximum(targets, pool_targets[partner]), targets)
    return features, targets


def _shift(features: torch.Tensor, targets: torch.Tensor, max_frames: int,
           generator: torch.Generator) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Shifts each clip and its targets by the same random number of frames, padding with the
    clip's quietest frame value. features: [B, M, T], targets: [B, 2K, T]."""
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


def _check_truths(truths: tp.Sequence[tp.Mapping[str, tp.Any]], num_clips: int) -> None:
    if len(truths) != num_clips:
        raise ValueError(f"Got {num_clips} clips but {len(truths)} ground truths.")
    for index, truth in enumerate(truths):
        missing = [key for key in ('sources', 'count') if key not in truth]
        if missing:
            raise ValueError(f"Ground truth {index} lacks {missing} (expected a sidecar of rr_audiocraft.data.synth).")


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
        feature_mean, feature_std: per-channel normalisation of the detector's input features
            [3 * n_mels], from the training clips (none if None).
    """
    def __init__(self, sources: tp.Sequence[str], config: tp.Optional[JudgeConfig] = None,
                 state_dict: tp.Optional[tp.Dict[str, torch.Tensor]] = None,
                 feature_mean: tp.Optional[torch.Tensor] = None, feature_std: tp.Optional[torch.Tensor] = None):
        self.sources = list(sources)
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
            verbose: bool = False) -> 'Judge':
        """Trains a judge on the clips of a training split (CPU; ~40 s of one core for 480 clips).

        Args:
            train: a train manifest (``egs/train/data.jsonl``) or its folder, a folder of wavs with
                sidecars, or a dataset root (its train split is used). Never pass the test split:
                the judge must not have heard the held-out pairs it evaluates.
            seed: seed of the initialisation, the degradations and the batch order (the global
                torch RNG is left as it was).
            config: settings, `JudgeConfig()` by default.
            verbose: log the loss of every epoch.
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
            judge = cls._train(clips, infos, config, seed, verbose)
        logger.info("Trained the judge on %d clips in %.1f s.", len(clips), time.time() - begin)
        return judge

    @classmethod
    def _train(cls, clips: tp.List[torch.Tensor], infos: tp.List[tp.Dict[str, tp.Any]], config: JudgeConfig,
               seed: int, verbose: bool) -> 'Judge':
        """Precomputes degraded views of the clips, then trains the detector on mixed, shifted,
        cropped examples of them. clips: [T] each, 16 kHz; infos: their sidecars."""
        length = max(clip.numel() for clip in clips)
        batch = torch.stack([F.pad(clip, (0, length - clip.numel())) for clip in clips])
        sources = sorted({event['source'] for info in infos for event in info['events']})
        generator = torch.Generator().manual_seed(seed)
        judge = cls(sources, config)

        # Views are computed once: the degradations cost more than a training step.
        with torch.no_grad():
            views = [judge.features.log_mel(batch)]
            for _ in range(config.views - 1):
                # In chunks: the FFT-domain degradations hold several copies of their input.
                views.append(torch.cat([judge.features.log_mel(_degrade(chunk, generator))
                                        for chunk in batch.split(64)]))
            features = torch.stack(views, dim=1)  # [N, V, M, T]
            derived = judge.features(features.flatten(0, 1))  # [N * V, 3M, T]
            judge.feature_mean = derived.mean(dim=(0, 2))
            judge.feature_std = derived.std(dim=(0, 2)) + 1e-5
            del derived
        num_frames = features.shape[-1]
        targets = torch.stack([_frame_targets(info['events'], sources, num_frames, config.hop_length)
                               for info in infos])  # [N, 2K, T]

        optimizer = torch.optim.Adam(judge.net.parameters(), lr=config.lr)
        steps_per_epoch = max(1, len(clips) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
        max_shift = int(0.2 * SAMPLE_RATE / config.hop_length)
        onset_weight = torch.tensor(config.onset_weight)
        crop_frames = min(num_frames, int(config.crop_seconds * SAMPLE_RATE / config.hop_length))
        judge.net.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(clips), generator=generator)
            total = 0.
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                view = torch.randint(config.views, (len(index),), generator=generator)
                x, y = features[index, view], targets[index]
                x, y = _mix(x, y, features, targets, config.mix_p, generator)
                x, y = _shift(x, y, max_shift, generator)
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
        """Writes the judge (weights, sources, settings, normalisation) to one torch file."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({'version': JUDGE_VERSION, 'sources': self.sources, 'config': dataclasses.asdict(self.config),
                    'state_dict': self.net.state_dict(),
                    'feature_mean': self.feature_mean, 'feature_std': self.feature_std}, path)

    @classmethod
    def load(cls, path: tp.Union[str, Path]) -> 'Judge':
        """Reads a judge written by `save`."""
        package = torch.load(path, map_location='cpu', weights_only=True)
        if package.get('version') != JUDGE_VERSION:
            raise ValueError(f"{path} holds a judge of version {package.get('version')}, this code is version "
                             f"{JUDGE_VERSION}: fit a new one (Judge.fit) and save it over the old file.")
        return cls(package['sources'], JudgeConfig(**package['config']), package['state_dict'],
                   package['feature_mean'], package['feature_std'])

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
        return self.score(self.predict(reference_wavs, sample_rate), truths)

    @classmethod
    def score(cls, predictions: tp.Sequence[tp.Mapping[str, tp.Any]],
              truths: tp.Sequence[tp.Mapping[str, tp.Any]]) -> tp.Dict[str, float]:
        """`self_check`'s metrics of predictions made already (e.g. to also read `source_errors`)."""
        _check_truths(truths, len(predictions))
        metrics = cls._accuracies(predictions, truths)
        metrics['num_clips'] = len(predictions)
        return metrics

    @staticmethod
    def source_errors(predictions: tp.Sequence[tp.Mapping[str, tp.Any]],
                      truths: tp.Sequence[tp.Mapping[str, tp.Any]]) -> tp.Dict[str, tp.Dict[str, int]]:
        """Which sources the judge gets wrong, and in how many clips.

        A low source F1 alone does not say whether a degraded clip lost its sources or gained ones
        it never had (a codec's hiss heard as `noise`, its rumble as `hum`); these counts do.

        Returns:
            dict with `heard_absent` (source -> clips where it was heard but is not in the truth)
            and `missed` (source -> clips where it is in the truth but was not heard), each sorted
            by count, most frequent first.
        """
        _check_truths(truths, len(predictions))
        heard_absent: tp.Dict[str, int] = {}
        missed: tp.Dict[str, int] = {}
        for prediction, truth in zip(predictions, truths):
            predicted, expected = set(prediction['sources']), set(truth['sources'])
            for source in predicted - expected:
                heard_absent[source] = heard_absent.get(source, 0) + 1
            for source in expected - predicted:
                missed[source] = missed.get(source, 0) + 1

        def by_count(counts: tp.Dict[str, int]) -> tp.Dict[str, int]:
            return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        return {'heard_absent': by_count(heard_absent), 'missed': by_count(missed)}

    def report(self, generated_wavs: Wavs, truths: tp.Sequence[tp.Mapping[str, tp.Any]],
               reference_wavs: Wavs, sample_rate: int = SAMPLE_RATE,
               reference_sample_rate: int = SAMPLE_RATE) -> tp.Dict[str, float]:
        """Benchmark metrics of generated clips.

        Args:
            generated_wavs: one generated clip per caption, see `predict` for the format.
            truths: the ground truth (sidecar) of each caption.
            reference_wavs: the dataset's clip for each caption, same order.
            sample_rate: sample rate of the generated clips.
            reference_sample_rate: sample rate of the references (the benchmark's 16 kHz by default,
                whatever the generator's rate).
        Returns:
            dict with
                source_f1, count_acc, order_acc, relation_acc: generated clips vs the truths,
                kl: mean over clips of KL(p_ref || p_gen) between the judge's label posteriors
                    (PaSST-KL analogue; 0 when the judge hears the same labels),
                fd: Fréchet distance between the judge embeddings of the two sets (FAD analogue;
                    NaN for a single clip),
                num_clips.
        """
        generated_predictions = self.predict(generated_wavs, sample_rate)
        reference_predictions = self.predict(reference_wavs, reference_sample_rate)
        _check_truths(truths, len(generated_predictions))
        if len(reference_predictions) != len(generated_predictions):
            raise ValueError(f"Got {len(generated_predictions)} generated clips but "
                             f"{len(reference_predictions)} references.")
        metrics = self._accuracies(generated_predictions, truths)
        generated_posteriors = np.stack([prediction['posteriors'] for prediction in generated_predictions])
        reference_posteriors = np.stack([prediction['posteriors'] for prediction in reference_predictions])
        metrics['kl'] = float(kl_divergence(reference_posteriors, generated_posteriors).mean())
        metrics['fd'] = float('nan')
        if len(generated_predictions) >= 2:
            metrics['fd'] = frechet_distance(
                np.stack([prediction['embedding'] for prediction in generated_predictions]),
                np.stack([prediction['embedding'] for prediction in reference_predictions]), ridge=self.config.fd_ridge)
        metrics['num_clips'] = len(generated_predictions)
        return metrics
