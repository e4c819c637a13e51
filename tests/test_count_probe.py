"""The likelihood count probe: caption variants replayed from the benchmark's seed, its statistics, and a
real LM scored through the CLI."""
import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import run_cli
from rr_audiocraft.data import synth
from rr_audiocraft.metrics import count_probe

COUNT_PATTERNS = {1: r'\b(once|one|single)\b', 2: r'\b(twice|two|pair)\b', 3: r'\b(three|thrice)\b'}


def test_count_variants_change_only_the_count_and_keep_the_recorded_caption(tiny_data):
    variants = synth.count_variants(tiny_data, 'valid')
    _, infos, _ = synth.load_clips(tiny_data / 'egs' / 'valid')
    assert len(variants) == len(infos) == synth.split_sizes(120)['valid']
    for clip, info in zip(variants, infos, strict=True):
        assert clip[info['count']] == info['description']
        assert len(set(clip.values())) == synth.MAX_COUNT
        for count, caption in clip.items():
            named = {k for k, pattern in COUNT_PATTERNS.items() if re.search(pattern, caption.lower())}
            assert named == {count}, (count, caption)
            # Only the count phrase changes: the other words stay (a counted noun may lose its plural s).
            assert all(word.rstrip('s') in caption.lower()
                       for word in re.findall(r'[a-z]{5,}', info['description'].lower())
                       if not re.fullmatch(r'twice|three|thrice|single|times', word)), (caption, info['description'])


def test_count_variants_refuse_an_edited_or_unstamped_benchmark(tiny_data, tmp_path):
    copy = tmp_path / 'synth'
    shutil.copytree(tiny_data / 'valid', copy / 'valid')
    with pytest.raises(synth.BenchmarkError, match='benchmark.json'):
        synth.count_variants(copy, 'valid')
    shutil.copy(tiny_data / synth.STAMP_FILE, copy / synth.STAMP_FILE)
    sidecar = copy / 'valid' / '0003.json'
    info = json.loads(sidecar.read_text())
    info['description'] = 'Three claps.'
    sidecar.write_text(json.dumps(info))
    with pytest.raises(synth.BenchmarkError, match='0003.json'):
        synth.count_variants(copy, 'valid')
    assert len(synth.count_variants(copy, 'valid', num_clips=3)) == 3
    with pytest.raises(ValueError, match='has 12 clips'):
        synth.count_variants(copy, 'valid', num_clips=13)


def test_summarize_finds_a_known_count_preference_and_covers_zero_without_one():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, 300)
    noise = rng.normal(1.5, 0.01, (300, 3))
    aware = noise.copy()
    aware[np.arange(300), truth - 1] -= 0.04
    found = count_probe.summarize(aware, truth)
    assert found['acc'] > 0.95 and found['gain']['ci95'][0] > 0.035
    assert np.trace(np.array(found['confusion'])) == round(found['acc'] * 300)
    blind = count_probe.summarize(noise, truth)
    assert abs(blind['acc'] - 1 / 3) < 0.1 and blind['majority'] == np.bincount(truth).max() / 300
    # Without a count preference the 95 % interval of the gain covers 0 in about 95 of 100 draws.
    covered = [low < 0 < high for low, high in
               (count_probe.summarize(rng.normal(1.5, 0.01, (300, 3)), truth, num_resamples=1000, seed=draw)
                ['gain']['ci95'] for draw in range(100))]
    assert 88 <= sum(covered) <= 100
    with pytest.raises(ValueError, match='counts must lie in 1..3'):
        count_probe.summarize(noise, np.where(truth == 3, 4, truth))


def test_the_probe_scores_a_trained_lm_through_the_cli(tiny_data, tiny_hf_musicgen_sig, tmp_path, capsys,
                                                       one_torch_thread):
    out = tmp_path / 'probe.json'
    name = f'//sig/{tiny_hf_musicgen_sig}'
    assert count_probe.main([name, '--data', str(tiny_data), '--clips', '5', '--json', str(out)]) == 0
    [result] = json.loads(out.read_text())
    assert result['model'] == name and result['clips'] == 5 and result['split'] == 'valid'
    assert sum(map(sum, result['confusion'])) == 5 and 0 <= result['acc'] <= 1
    assert np.isfinite(result['gain']['mean']) and 0 <= result['caption_scale']['acc'] <= 1
    assert np.isfinite(result['caption_scale']['gain']['mean'])
    assert f"{name}: count acc" in capsys.readouterr().out

    # Each ce belongs to its (clip, count): reversing the clips and the counts' captions permutes the table the
    # same way. (Not compared with clips scored alone: stock conditioners pad a batch's captions with zero
    # embeddings that cross-attention still attends, so a ce depends on the longest caption of its batch.)
    from rr_audiocraft.models.loaders import load_models
    compression_model, lm = load_models(name, device='cpu')
    variants = synth.count_variants(tiny_data, 'valid', 3)
    wavs, _, sample_rate = synth.load_clips(tiny_data / 'egs' / 'valid')
    batched = count_probe.count_cross_entropies(compression_model, lm, wavs[:3], sample_rate, variants)
    reversed_ = count_probe.count_cross_entropies(compression_model, lm, wavs[:3][::-1], sample_rate,
                                                  [{k: clip[4 - k] for k in (1, 2, 3)} for clip in variants[::-1]])
    assert reversed_ == pytest.approx(batched[::-1, ::-1], abs=1e-5)
    assert not np.allclose(batched[:, 0], batched[:, 2])  # the LM reacts to the count words at all

    code, _, err = run_cli(count_probe.main, [name, '--data', str(tmp_path)], capsys)
    assert code == 2 and 'benchmark.json' in err
    code, _, err = run_cli(count_probe.main, [name, '//sig/0badf00d', '--data', str(tiny_data)], capsys)
    assert code == 2 and '0badf00d' in err
    assert torch.get_num_threads() == 1

