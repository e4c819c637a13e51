"""Tests of the demo's codec diagnosis (rr_audiocraft.demo.band_error_db)."""
import numpy as np
import pytest
import scipy.signal

from rr_audiocraft.demo import band_error_db


def bands_at_16k():
    return ['0-1000 Hz', '1000-2000 Hz', '2000-4000 Hz', '4000-8000 Hz']


def test_band_error_shows_which_bands_a_round_trip_loses():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((4, 16000))
    # A "codec" that keeps everything under 1 kHz and drops the rest.
    lowpass = scipy.signal.butter(8, 1000, fs=16000, output='sos')
    decoded = scipy.signal.sosfiltfilt(lowpass, reference, axis=-1)
    bands = band_error_db(reference, decoded, 16000)
    assert list(bands) == bands_at_16k()
    assert bands['0-1000 Hz'] < -3          # mostly kept (the filter's edge sits at its top)
    for band in ('2000-4000 Hz', '4000-8000 Hz'):
        assert bands[band] == pytest.approx(0., abs=0.05)  # nothing comes through
    nearly_lossless = band_error_db(reference, reference + 1e-6 * rng.standard_normal(reference.shape), 16000)
    assert all(db < -100 for db in nearly_lossless.values())


def test_band_error_skips_empty_and_unreachable_bands():
    t = np.arange(16000) / 8000
    tone = np.sin(2 * np.pi * 440 * t)[None]  # nothing above 1 kHz; 8 kHz rate: no band above 4 kHz
    bands = band_error_db(tone, 0.5 * tone, 8000)
    assert list(bands) == ['0-1000 Hz', '1000-2000 Hz', '2000-4000 Hz']
    assert bands['0-1000 Hz'] == pytest.approx(20 * np.log10(0.5), abs=1e-6)
    silence = np.zeros((2, 1000))
    assert band_error_db(silence, silence + 0.1, 16000) == dict.fromkeys(bands_at_16k(), None)
    with pytest.raises(ValueError, match='same shape'):
        band_error_db(tone, tone[:, :100], 8000)
