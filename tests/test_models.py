"""RRAudioGen / RRMusicGen loading: AudioCraft's `debug` model, Dora XPs (`//sig/`), XP folders and files."""
from pathlib import Path

import pytest
import torch

from conftest import xp_dir


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _states_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@pytest.fixture(scope='module')
def lut_xp_checkpoint(tiny_lut_audiogen_sig) -> dict:
    from rr_audiocraft.checkpoint import load_checkpoint
    return load_checkpoint(xp_dir(tiny_lut_audiogen_sig) / 'checkpoint.th')


@pytest.fixture(scope='module')
def debug_audiogen():
    from rr_audiocraft.models import RRAudioGen
    return RRAudioGen.get_pretrained('debug', device='cpu')


def test_debug_musicgen_is_a_32khz_musicgen_with_an_rr_lm():
    """AudioCraft's offline debug model (random weights) behind the stock API; spaCy's model is not needed."""
    from audiocraft.models import MusicGen
    from rr_audiocraft.models import RRLMModel, RRMusicGen
    model = RRMusicGen.get_pretrained('debug', device='cpu')
    assert isinstance(model, MusicGen) and isinstance(model.lm, RRLMModel)
    assert model.sample_rate == 32000 and model.max_duration == 30 and model.extend_stride == 18
    model.set_generation_params(duration=0.2)
    torch.manual_seed(7)
    audio, tokens = model.generate(['a dog barks', 'rain'], return_tokens=True)
    assert audio.shape == (2, 1, 6400) and tokens.shape == (2, 4, 5)
    torch.manual_seed(7)
    assert torch.equal(tokens, model.generate(['a dog barks', 'rain'], return_tokens=True)[1])


def test_debug_audiogen_is_a_16khz_audiogen(debug_audiogen):
    from audiocraft.models import AudioGen
    from rr_audiocraft.models import RRLMModel
    assert isinstance(debug_audiogen, AudioGen) and isinstance(debug_audiogen.lm, RRLMModel)
    assert debug_audiogen.sample_rate == 16000 and debug_audiogen.max_duration == 10


def test_sig_loads_the_best_state_which_holds_the_ema_weights(tiny_lut_audiogen_sig, lut_xp_checkpoint,
                                                              tiny_compression_sig):
    from rr_audiocraft.checkpoint import load_checkpoint
    from rr_audiocraft.models import RRAudioGen, RRLMModel
    model = RRAudioGen.get_pretrained(f'//sig/{tiny_lut_audiogen_sig}', device='cpu')
    assert isinstance(model.lm, RRLMModel) and not model.lm.training
    assert model.max_duration == 4 and model.sample_rate == 8000  # the XP's segment and EnCodec
    best, raw = lut_xp_checkpoint['best_state']['model'], lut_xp_checkpoint['model']
    ema = lut_xp_checkpoint['ema']['state']['model']
    loaded = model.lm.state_dict()
    assert _states_equal(loaded, best) and _states_equal(loaded, ema)
    assert not _states_equal(loaded, raw)  # so the test can tell EMA from the last raw weights
    compression = load_checkpoint(xp_dir(tiny_compression_sig) / 'checkpoint.th')['best_state']['model']
    assert _states_equal(model.compression_model.state_dict(), compression)


def test_xp_folder_and_checkpoint_file_load_the_same_model(tiny_lut_audiogen_sig, lut_xp_checkpoint):
    from rr_audiocraft.models import RRAudioGen
    folder = xp_dir(tiny_lut_audiogen_sig)
    best = lut_xp_checkpoint['best_state']['model']
    for name in (str(folder), str(folder / 'checkpoint.th')):
        assert _states_equal(RRAudioGen.get_pretrained(name, device='cpu').lm.state_dict(), best)


def test_sig_of_a_musicgen_xp_with_the_local_hf_text_encoder(tiny_hf_musicgen_sig):
    """Stock builders do not know the `hf` conditioner; ours rebuild it. A 4 s model gets a 2 s stride."""
    from rr_audiocraft.models import RRMusicGen
    from rr_audiocraft.modules import HFTextConditioner
    model = RRMusicGen.get_pretrained(f'//sig/{tiny_hf_musicgen_sig}', device='cpu')
    assert isinstance(model.lm.condition_provider.conditioners['description'], HFTextConditioner)
    assert model.max_duration == 4 and model.extend_stride == 2  # stock MusicGen would assert 18 < 4
    model.set_generation_params(duration=0.3, top_k=50)
    torch.manual_seed(0)
    with_text = model.generate(['a bell rings twice'], return_tokens=True)[1]
    torch.manual_seed(0)
    other_text = model.generate(['a low hum'], return_tokens=True)[1]
    assert with_text.shape == (1, 4, 15)
    assert not torch.equal(with_text, other_text)  # the caption reaches the model


def test_unknown_name_says_what_was_tried():
    from rr_audiocraft.models import ModelNotFoundError, RRAudioGen
    with pytest.raises(ModelNotFoundError) as error:
        RRAudioGen.get_pretrained('no-such-model', device='cpu')
    message = str(error.value)
    assert message.startswith("Unknown model 'no-such-model'. Tried: ")
    for tried in ("built-in 'debug' model", 'a Dora XP (names look like //sig/SIG)', 'no-such-model does not exist',
                  'a Hugging Face repo id (needs the form owner/name)'):
        assert tried in message


def test_unknown_signature_says_where_it_looked_and_what_is_there(tiny_lut_audiogen_sig):
    import os
    from rr_audiocraft.models import ModelNotFoundError, RRAudioGen
    with pytest.raises(ModelNotFoundError) as error:
        RRAudioGen.get_pretrained('//sig/deadbeef', device='cpu')
    message = str(error.value)
    xps = os.path.join(os.environ['AUDIOCRAFT_DORA_DIR'], 'xps')
    assert message.startswith(f"No Dora XP '//sig/deadbeef': tried {xps}/deadbeef/checkpoint.th")
    # The XPs that do exist are listed (the first 10 by name, then how many more: other tests add XPs).
    import re
    existing = sorted(path.parent.name for path in Path(xps).glob('*/checkpoint.th'))
    assert tiny_lut_audiogen_sig in existing
    assert re.findall(r'\b[0-9a-f]{8}\b', message.split('there: ')[1]) == existing[:10]
    assert len(existing) <= 10 or f'(and {len(existing) - 10} more)' in message


def test_folder_that_holds_no_model_is_named(tmp_path):
    from rr_audiocraft.models import ModelNotFoundError, RRAudioGen
    with pytest.raises(ModelNotFoundError, match='holds neither state_dict.bin .* nor checkpoint.th'):
        RRAudioGen.get_pretrained(str(tmp_path), device='cpu')


def test_one_resolver_names_what_each_kind_of_name_points_to(tmp_path, tiny_lut_audiogen_sig):
    from rr_audiocraft.models.loaders import ModelNotFoundError, resolve_checkpoint
    exported = tmp_path / 'exported'
    exported.mkdir()
    (exported / 'state_dict.bin').write_bytes(b'')
    (exported / 'compression_state_dict.bin').write_bytes(b'')
    checkpoint = xp_dir(tiny_lut_audiogen_sig) / 'checkpoint.th'
    for name, kind, path in [(f'//sig/{tiny_lut_audiogen_sig}', 'xp', checkpoint),
                             (str(checkpoint.parent), 'xp', checkpoint), (str(checkpoint), 'file', checkpoint),
                             (str(exported), 'exported', exported / 'state_dict.bin')]:
        location = resolve_checkpoint(name)
        assert (location.kind, location.checkpoint, location.pretrained) == (kind, path, None), name
    assert resolve_checkpoint(exported).compression_file == exported / 'compression_state_dict.bin'
    pretrained = resolve_checkpoint('//pretrained//abs/compression_state_dict.bin')
    assert (pretrained.kind, pretrained.pretrained) == ('pretrained', '/abs/compression_state_dict.bin')
    assert resolve_checkpoint('small', aliases={'small': 'facebook/musicgen-small'}).pretrained == \
        'facebook/musicgen-small'
    # A name of a kind the caller cannot use is refused with what it names (export needs an XP).
    with pytest.raises(ModelNotFoundError, match=f"names an exported model folder \\({exported}\\), but only "
                                                 "file or xp can be used here"):
        resolve_checkpoint(str(exported), kinds=('xp', 'file'))


def test_export_of_an_exported_folder_says_it_is_no_xp(tmp_path, capsys):
    from rr_audiocraft.export import main
    (tmp_path / 'state_dict.bin').write_bytes(b'')
    (tmp_path / 'compression_state_dict.bin').write_bytes(b'')
    assert main([str(tmp_path), str(tmp_path / 'out')]) == 2
    assert f"error: '{tmp_path}' names an exported model folder ({tmp_path})" in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('params, message', [
    ({'duration': 0}, 'duration must be > 0 seconds, got 0'),
    ({'duration': -2.5}, 'duration must be > 0 seconds, got -2.5'),
    ({'temperature': 0}, 'temperature must be > 0, got 0'),
    ({'top_k': -1}, 'top_k=-1 must be an integer >= 0'),
    ({'top_p': 1.5}, r'top_p=1.5 must be in \[0, 1\]'),
    ({'extend_stride': 10}, 'extend_stride=10 must be shorter than the model'),
])
def test_bad_generation_params_are_refused(debug_audiogen, params, message):
    with pytest.raises(ValueError, match=message):
        debug_audiogen.set_generation_params(**params)


def test_bad_generation_inputs_are_refused(debug_audiogen):
    debug_audiogen.set_generation_params(duration=1)
    with pytest.raises(ValueError, match='descriptions is empty: give at least one caption'):
        debug_audiogen.generate([])
    with pytest.raises(ValueError, match='not a single string'):
        debug_audiogen.generate('a dog barks')
    prompt = torch.zeros(1, 1, 8000)
    with pytest.raises(ValueError, match='prompt_sample_rate=0 must be a positive integer'):
        debug_audiogen.generate_continuation(prompt, 0)
    with pytest.raises(ValueError, match='prompt lasts 2.00 s but must be shorter than the generation duration'):
        debug_audiogen.generate_continuation(prompt, 4000)
    with pytest.raises(ValueError, match='2 descriptions for 1 prompts'):
        debug_audiogen.generate_continuation(prompt, 16000, ['a', 'b'])
