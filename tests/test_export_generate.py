"""Export to the stock folder layout, the round trip through stock AudioCraft, and the generation CLI."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli, xp_dir


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def test_export_writes_the_stock_layout(lut_export, tiny_lut_audiogen_sig):
    from rr_audiocraft.checkpoint import load_checkpoint
    lm_file, compression_file = lut_export / 'state_dict.bin', lut_export / 'compression_state_dict.bin'
    # Only tensors and plain types: stock AudioCraft on torch >= 2.6 loads them without any allow-list.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(lm_file)) == []
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(compression_file)) == []
    package = load_checkpoint(lm_file)
    assert set(package) == {'best_state', 'xp.cfg', 'version', 'exported'} and package['exported'] is True
    assert isinstance(package['xp.cfg'], str) and 'rr_audiogen' in package['xp.cfg']
    best = load_checkpoint(xp_dir(tiny_lut_audiogen_sig) / 'checkpoint.th')['best_state']['model']
    assert list(package['best_state']) == list(best)
    assert all(torch.equal(package['best_state'][k], best[k]) for k in best)


def test_same_seed_gives_the_same_tokens_through_stock_and_rr_loaders(lut_export, tiny_lut_audiogen_sig):
    from audiocraft.models import AudioGen
    from rr_audiocraft.models import RRAudioGen
    stock = AudioGen.get_pretrained(str(lut_export), device='cpu')
    assert type(stock) is AudioGen and type(stock.lm).__name__ == 'LMModel'
    models = [stock, RRAudioGen.get_pretrained(str(lut_export), device='cpu'),
              RRAudioGen.get_pretrained(f'//sig/{tiny_lut_audiogen_sig}', device='cpu')]
    captions = ['a dog barks', 'rain on a tin roof']
    tokens = []
    for model in models:
        model.set_generation_params(duration=0.3, top_k=50)
        torch.manual_seed(3)
        tokens.append(model.generate(captions, return_tokens=True)[1])
    assert tokens[0].shape == (2, 4, 15)
    assert torch.equal(tokens[0], tokens[1]) and torch.equal(tokens[0], tokens[2])
    torch.manual_seed(4)  # and the comparison can fail: another seed samples other tokens
    assert not torch.equal(tokens[0], models[0].generate(captions, return_tokens=True)[1])


def test_export_of_a_model_with_the_local_text_encoder_loads_in_rr(tmp_path, tiny_hf_musicgen_sig, capsys):
    from rr_audiocraft.export import main
    from rr_audiocraft.models import RRMusicGen
    from rr_audiocraft.modules import HFTextConditioner
    out = tmp_path / 'hf_musicgen'
    code, stdout, _ = run_cli(main, [f'//sig/{tiny_hf_musicgen_sig}', str(out)], capsys)
    assert code == 0
    assert "stock AudioCraft cannot rebuild it: conditioner(s) description use rr_audiocraft's local text encoder" \
        in stdout
    assert f"rr_audiocraft.models.RRMusicGen.get_pretrained('{out}')" in stdout
    exported = RRMusicGen.get_pretrained(str(out), device='cpu')
    from_sig = RRMusicGen.get_pretrained(f'//sig/{tiny_hf_musicgen_sig}', device='cpu')
    assert isinstance(exported.lm.condition_provider.conditioners['description'], HFTextConditioner)
    state, reference = exported.lm.state_dict(), from_sig.lm.state_dict()
    assert list(state) == list(reference) and all(torch.equal(state[k], reference[k]) for k in state)


def test_export_refusals(tmp_path, lut_export, tiny_lut_audiogen_sig, tiny_compression_sig, capsys):
    from rr_audiocraft.export import main
    code, _, err = run_cli(main, [f'//sig/{tiny_lut_audiogen_sig}', str(lut_export)], capsys)
    assert code == 2 and 'already exist(s): pass --force to overwrite' in err
    code, _, err = run_cli(main, [f'//sig/{tiny_compression_sig}', str(tmp_path / 'x')], capsys)
    assert code == 2 and 'is not an LM XP' in err
    code, _, err = run_cli(main, ['//sig/deadbeef', str(tmp_path / 'y')], capsys)
    assert code == 2 and "error: No Dora XP '//sig/deadbeef': tried" in err
    assert not (tmp_path / 'x').exists() and not (tmp_path / 'y').exists()


def test_cli_writes_wavs_spectrograms_and_settings(lut_export, tmp_path, capsys):
    from rr_audiocraft.generate import main
    out = tmp_path / 'gen'
    code, stdout, stderr = run_cli(main, [
        str(lut_export), 'a dog barks', 'rain on a tin roof', '--duration', '0.5', '--cfg-coef', '2.5',
        '--top-k', '50', '--temperature', '0.9', '--seed', '5', '--spectrograms', '--out', str(out)], capsys)
    assert code == 0, stderr
    wavs = [out / '00_a_dog_barks.wav', out / '01_rain_on_a_tin_roof.wav']
    assert stdout.split() == [str(w) for w in wavs]
    for wav in wavs:
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.frames) == (8000, 1, 4000)  # 0.5 s at the codec's 8 kHz
        assert wav.with_suffix('.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'generating' in stderr and '100%' in stderr  # the progress bar ran to the end
    settings = json.loads((out / 'generations.json').read_text())
    assert settings['family'] == 'RRAudioGen' and settings['seed'] == 5 and settings['cfg_coef'] == 2.5
    assert [s['caption'] for s in settings['samples']] == ['a dog barks', 'rain on a tin roof']


def test_cli_continues_a_prompt_recorded_at_another_sample_rate(lut_export, tmp_path, capsys):
    from rr_audiocraft.generate import main
    prompt = tmp_path / 'prompt_22k_stereo.wav'
    t = np.arange(22050) / 22050  # 1 s, stereo, 22.05 kHz: resampled and down-mixed to 8 kHz mono
    sf.write(str(prompt), 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1), 22050)
    base = [str(lut_export), 'a bell rings', '--duration', '0.6', '--quiet', '--prompt', str(prompt)]
    code, _, err = run_cli(main, base + ['--out', str(tmp_path / 'a')], capsys)
    assert code == 2 and 'error: prompt lasts 1.00 s but must be shorter than the generation duration (0.6 s)' in err
    code, stdout, err = run_cli(main, base + ['--prompt-duration', '0.2', '--out', str(tmp_path / 'b')], capsys)
    assert code == 0, err
    info = sf.info(stdout.split()[0])
    assert (info.samplerate, info.channels, info.frames) == (8000, 1, 4800)


@pytest.mark.parametrize('argv, message', [
    (['debug'], 'error: no caption given: pass at least one'),
    (['debug', 'a dog barks', '--duration', '0'], 'error: --duration must be > 0 seconds, got 0'),
    (['debug', 'a dog barks', '--duration', '-1.5'], 'error: --duration must be > 0 seconds, got -1.5'),
    (['debug', 'a dog barks', '--prompt', '{tmp}/missing.wav'], 'error: cannot read prompt audio {tmp}/missing.wav: '
                                                                'no such file'),
    (['debug', 'a dog barks', '--prompt', '{tmp}/notes.wav'], 'error: cannot read prompt audio {tmp}/notes.wav: '),
    (['no-such-model', 'a dog barks'], "error: Unknown model 'no-such-model'. Tried: "),
    (['//sig/deadbeef', 'a dog barks'], "error: No Dora XP '//sig/deadbeef': tried "),
])
def test_cli_bad_input_gets_one_clear_message(tmp_path, capsys, argv, message):
    from rr_audiocraft.generate import main
    (tmp_path / 'notes.wav').write_text('not audio at all')
    code, stdout, stderr = run_cli(main, [a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2 and stdout == ''
    assert message.format(tmp=tmp_path) in stderr
    assert 'Traceback' not in stderr and stderr.count('error:') == 1


def test_cli_mismatched_sample_rate_is_named(lut_export, tmp_path, capsys):
    """An export whose LM was trained for another sample rate than its compression model runs at."""
    from omegaconf import OmegaConf
    from rr_audiocraft.checkpoint import load_checkpoint
    from rr_audiocraft.generate import main
    broken = tmp_path / 'broken'
    shutil.copytree(lut_export, broken)
    package = load_checkpoint(broken / 'state_dict.bin')
    cfg = OmegaConf.create(package['xp.cfg'])
    cfg.sample_rate = 32000
    package['xp.cfg'] = OmegaConf.to_yaml(cfg)
    torch.save(package, broken / 'state_dict.bin')
    code, _, stderr = run_cli(main, [str(broken), 'a dog barks', '--out', str(tmp_path / 'gen')], capsys)
    assert code == 2
    assert ('error: ' + str(broken) + ': mismatched sample rate: the LM was trained at sample_rate=32000 Hz but '
            'its compression model runs at 8000 Hz') in stderr


def test_cli_help_walks_a_newcomer_through(capsys):
    from rr_audiocraft.generate import main
    code, stdout, _ = run_cli(main, ['--help'], capsys)
    assert code == 0
    for expected in ('//sig/SIG', 'rr_audiocraft.export', '--duration SECONDS', '--cfg-coef GAMMA', '--top-k K',
                     '--top-p P', '--temperature T', '--seed', '--prompt AUDIO', '--spectrograms', '--out DIR',
                     'examples:'):
        assert expected in stdout
