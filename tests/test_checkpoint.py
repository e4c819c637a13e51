"""Safe checkpoint loading: AudioCraft configs load with weights_only=True, anything else is refused."""
import argparse
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf


class _RunsAShellCommand:
    """What a malicious checkpoint carries: unpickling it calls os.system."""
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.fixture
def payload_checkpoint(tmp_path) -> tuple:
    """A checkpoint shaped like an exported LM, with a shell-command payload beside the weights."""
    marker = tmp_path / 'payload_ran'
    path = tmp_path / 'state_dict.bin'
    torch.save({'best_state': {'w': torch.zeros(2)}, 'xp.cfg': 'device: cpu\n', 'exported': True,
                'extra': _RunsAShellCommand(marker)}, path)
    return path, marker


def test_audiocraft_style_checkpoint_loads_with_weights_only(tmp_path):
    from rr_audiocraft.checkpoint import load_checkpoint
    cfg = OmegaConf.create({'solver': 'rr_audiogen', 'sample_rate': 16000, 'transformer_lm': {'dim': 64},
                            'rr': {'weight': 3.0, 'pooling': 'max'}, 'datasource': {'train': None},
                            'lr': 1e-3, 'tags': ['a', 1], 'dir': '${oc.env:HOME}'})
    state = {'model': {'linear.weight': torch.randn(3, 2)}}
    path = tmp_path / 'checkpoint.th'
    torch.save({'xp.cfg': cfg, 'best_state': state, 'epoch': 2}, path)
    loaded = load_checkpoint(path)
    assert OmegaConf.to_container(loaded['xp.cfg']) == OmegaConf.to_container(cfg)
    assert torch.equal(loaded['best_state']['model']['linear.weight'], state['model']['linear.weight'])


def test_payload_is_refused_with_a_clear_error_and_never_runs(payload_checkpoint):
    from rr_audiocraft.checkpoint import load_checkpoint
    path, marker = payload_checkpoint
    with pytest.raises(ValueError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"Refusing to load checkpoint {path}: it pickles posix.system")
    assert 'allow-list' in message
    assert not marker.exists()


def test_the_environment_cannot_turn_the_check_off(payload_checkpoint, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 flips torch's default only; the explicit weights_only=True stays."""
    from rr_audiocraft.checkpoint import load_checkpoint
    path, marker = payload_checkpoint
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(ValueError, match='Refusing to load checkpoint'):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_harmless_but_foreign_object_is_refused_too(tmp_path):
    from rr_audiocraft.checkpoint import load_checkpoint
    path = tmp_path / 'ns.th'
    torch.save({'xp.cfg': argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(ValueError, match=r'it pickles argparse\.Namespace, which is not a tensor'):
        load_checkpoint(path)


def test_a_file_that_is_no_checkpoint_gets_its_own_message(tmp_path):
    from rr_audiocraft.checkpoint import load_checkpoint
    path = tmp_path / 'notes.th'
    path.write_text('these are not weights')
    with pytest.raises(ValueError, match='is not a readable torch checkpoint'):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match='No checkpoint file at'):
        load_checkpoint(tmp_path / 'missing.th')


def test_model_loaders_refuse_the_payload(payload_checkpoint):
    """The path users take: an 'exported folder' whose state_dict.bin carries the payload."""
    from rr_audiocraft.models import RRAudioGen, RRMusicGen
    path, marker = payload_checkpoint
    torch.save({'pretrained': 'debug_compression_model'}, path.parent / 'compression_state_dict.bin')
    for model_class in (RRAudioGen, RRMusicGen):
        with pytest.raises(ValueError, match='it pickles posix.system'):
            model_class.get_pretrained(str(path.parent), device='cpu')
    assert not marker.exists()
