"""The judge's training examples: frame targets from the sidecars, and the views it learns from.

The train split never holds the held-out source pairs, so training examples are often the sum of
two training clips (`mix`), which teaches every pair. The audio the judge scores comes out of a
small neural codec, so training views are also degraded (`degrade`: noise, low-pass, spectral tilt,
smearing, spectral holes and blips of low-bitrate codecs, gain) and, when the caller gives one,
passed through the codec itself (`Judge.fit(..., round_trip=...)`), and shifted in time (`shift`).
"""
import typing as tp

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16_000


def frame_targets(events: tp.Sequence[tp.Mapping[str, tp.Any]], sources: tp.Sequence[str],
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


def degrade(wav: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
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


def mix(features: torch.Tensor, targets: torch.Tensor, pool_features: torch.Tensor, pool_targets: torch.Tensor,
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


def shift(features: torch.Tensor, targets: torch.Tensor, max_frames: int,
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

