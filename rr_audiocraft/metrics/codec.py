"""How well a codec carries audio: round trips, error per frequency band, code usage.

Used by the demo's scale stage (the ceiling any LM trained on the codec's tokens can reach) and by the
codec recipe's report (`python -m rr_audiocraft.recipes.codec report`).
"""
import typing as tp

import julius
import numpy as np
import torch
import torch.nn.functional as F
from audiocraft.models import CompressionModel

from ..assets import CODEC_ASSET, asset_dir, verify_asset


def load_asset(name: str = CODEC_ASSET, device: str = 'cpu') -> CompressionModel:
    """The shipped codec, checked, loaded by stock `CompressionModel.get_pretrained`."""
    state = verify_asset(asset_dir(name))
    return CompressionModel.get_pretrained(str(state), device=device).eval()


def round_trip_fn(model: tp.Any, sample_rate: int = 16_000) -> tp.Callable[[tp.Any], tp.Any]:
    """A function taking a batch of clips [B, T] at `sample_rate` through `model` (encode to codes,
    decode) and back to `sample_rate`, [B, T]: what an LM trained on its tokens can at best return."""

    @torch.no_grad()
    def round_trip(wav: torch.Tensor) -> torch.Tensor:
        length = wav.shape[-1]
        audio = julius.resample_frac(wav.float(), sample_rate, model.sample_rate)[:, None]
        codes, scale = model.encode(audio)
        decoded = model.decode(codes, scale)[:, 0]
        decoded = julius.resample_frac(decoded, model.sample_rate, sample_rate)[..., :length]
        return F.pad(decoded, (0, length - decoded.shape[-1]))
    return round_trip


# Bands of the round-trip error report (Hz): the judge's mel features span 20 Hz - 8 kHz.
BAND_EDGES = (0., 500., 1000., 2000., 4000., 8000.)


def band_error_db(reference: tp.Any, decoded: tp.Any, sample_rate: int,
                  edges: tp.Sequence[float] = BAND_EDGES) -> tp.Dict[str, tp.Optional[float]]:
    """Energy of a round trip's error relative to the reference's, per frequency band, in dB.

    -20 dB: the band comes through with 1 % of its energy wrong; 0 dB: the error is as large as the
    band itself, i.e. nothing of it comes through (or all of it comes back in the wrong place).

    Args:
        reference: clips [N, T] (torch tensor or numpy array).
        decoded: the same clips after the round trip, [N, T].
        sample_rate: their sample rate; bands above its Nyquist frequency are left out.
        edges: band edges in Hz, increasing.
    Returns:
        dict 'LOW-HIGH Hz' -> dB, None for a band with no reference energy.
    """
    reference, decoded = np.asarray(reference, dtype=np.float64), np.asarray(decoded, dtype=np.float64)
    if reference.shape != decoded.shape or reference.ndim != 2:
        raise ValueError(f"band_error_db: expected two [N, T] batches of the same shape, got {reference.shape} "
                         f"and {decoded.shape}.")
    freqs = np.fft.rfftfreq(reference.shape[-1], 1 / sample_rate)
    reference_power = (np.abs(np.fft.rfft(reference)) ** 2).sum(0)
    error_power = (np.abs(np.fft.rfft(decoded - reference)) ** 2).sum(0)
    bands: tp.Dict[str, tp.Optional[float]] = {}
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        if low >= sample_rate / 2:
            break
        in_band = (freqs >= low) & (freqs < high)
        energy = reference_power[in_band].sum()
        relative = error_power[in_band].sum() / energy if energy > 0 else None
        bands[f"{low:g}-{high:g} Hz"] = None if relative is None else float(10 * np.log10(relative))
    return bands


def format_bands(bands: tp.Mapping[str, tp.Optional[float]]) -> str:
    """`band_error_db`'s result as one line: '0-500 Hz -12.5 dB, ...' ('n/a': no reference energy)."""
    return ', '.join(f"{band} {'n/a' if db is None else f'{db:.1f} dB'}" for band, db in bands.items())


def codec_report(model: tp.Any, wavs: tp.Sequence[tp.Any], sample_rate: int) -> tp.Dict[str, tp.Any]:
    """How well the codec carries a set of clips (e.g. a benchmark's test split), at its own rate.

    Returns:
        dict: relative_mse (error energy / reference energy over all clips), band_error_db (see
        `band_error_db`), and per codebook its perplexity (exp of the entropy of its code usage; at
        most `bins`) and the fraction of its codes used.
    """
    with torch.no_grad():
        audio = torch.stack([torch.as_tensor(np.asarray(wav, dtype=np.float32)) for wav in wavs])
        audio = julius.resample_frac(audio, sample_rate, model.sample_rate)[:, None]  # [N, 1, T]
        codes, scale = model.encode(audio)  # [N, K, frames]
        decoded = model.decode(codes, scale)[..., :audio.shape[-1]]
    bins = int(model.cardinality)
    perplexity, used = [], []
    for k in range(codes.shape[1]):
        counts = torch.bincount(codes[:, k].flatten(), minlength=bins).double()
        p = counts / counts.sum()
        perplexity.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
        used.append(float((counts > 0).double().mean()))
    return {
        'num_clips': len(wavs),
        'relative_mse': float(((decoded - audio) ** 2).sum() / (audio ** 2).sum()),
        'band_error_db': band_error_db(audio[:, 0], decoded[:, 0], model.sample_rate),
        'codebook_perplexity': [round(value, 1) for value in perplexity],
        'codebook_usage': [round(value, 3) for value in used],
        'bins': bins,
    }
