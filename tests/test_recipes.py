"""The paper recipes (`solver=rr_audiogen/audiogen_300m`, `rr_musicgen/musicgen_300m`) and their
evaluation wiring: composed as `dora run` composes them, every paper value checked, the 300M LM built,
and the start-up check of the FAD / KL / CLAP weight files."""
import re
import sys
import typing as tp
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO_ROOT, datasource_overrides

RECIPES = {'sound': 'rr_audiogen/audiogen_300m', 'music': 'rr_musicgen/musicgen_300m'}

# Paper §4.2 / §3 / Table 1 values shared by both recipes (dotted key -> value).
PAPER_COMMON: tp.Dict[str, tp.Any] = {
    'transformer_lm.dim': 1024, 'transformer_lm.num_heads': 16, 'transformer_lm.num_layers': 24,
    'transformer_lm.memory_efficient': True, 'transformer_lm.n_q': 4, 'transformer_lm.card': 2048,
    'codebooks_pattern.modeling': 'delay', 'conditioners.description.model': 't5',
    'dataset.batch_size': 192, 'channels': 1,
    'optim.optimizer': 'adamw', 'optim.adam.betas': [0.9, 0.95], 'optim.adam.weight_decay': 0.1,
    'optim.max_norm': 1.0, 'schedule.lr_scheduler': 'cosine', 'schedule.cosine.warmup': 4000,
    'optim.ema.use': True, 'optim.ema.decay': 0.99,
    'fsdp.use': True, 'fsdp.param_dtype': 'bfloat16', 'autocast': False,
    'classifier_free_guidance.training_dropout': 0.1,
    'rr.weight': 3.0, 'rr.pooling': 'max', 'rr.apply_on': 'cfg',
    'generate.lm.use_sampling': True, 'generate.lm.top_k': 250, 'generate.lm.top_p': 0.0, 'generate.lm.temp': 1.0,
    'evaluate.metrics.fad': True, 'evaluate.metrics.kld': True, 'evaluate.metrics.text_consistency': True,
}
PAPER_SPECIFIC: tp.Dict[str, tp.Dict[str, tp.Any]] = {
    'sound': {'solver': 'rr_audiogen', 'sample_rate': 16000, 'dataset.segment_duration': 10,
              'compression_model_checkpoint': '//pretrained/facebook/audiogen-medium',
              'dataset.train.mix_snr_low': -5, 'dataset.train.mix_snr_high': 5},
    'music': {'solver': 'rr_musicgen', 'sample_rate': 32000, 'dataset.segment_duration': 30,
              'compression_model_checkpoint': '//pretrained/facebook/encodec_32khz'},
}
# Keys of the recipe files whose comment must cite the paper.
PAPER_KEYS = ['sample_rate', 'dataset.batch_size', 'dataset.segment_duration', 'compression_model_checkpoint',
              'transformer_lm.n_q', 'transformer_lm.card', 'transformer_lm.memory_efficient', 'optim.epochs',
              'optim.optimizer', 'optim.max_norm', 'optim.adam.betas', 'optim.adam.weight_decay',
              'optim.ema.use', 'optim.ema.decay', 'schedule.lr_scheduler', 'schedule.cosine.warmup',
              'fsdp.use', 'fsdp.param_dtype', 'classifier_free_guidance.training_dropout', 'rr.weight',
              'rr.pooling', 'generate.lm.use_sampling', 'generate.lm.top_k', 'generate.lm.temp']


def compose(*overrides: str):
    from rr_audiocraft.train import main
    return main.get_xp(list(overrides)).cfg


def select(cfg, key: str) -> tp.Any:
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


@pytest.fixture(scope='module', params=list(RECIPES))
def recipe(request) -> tp.Tuple[str, tp.Any]:
    return request.param, compose(f'solver={RECIPES[request.param]}')


def test_recipe_composes_every_paper_value(recipe):
    kind, cfg = recipe
    expected = {**PAPER_COMMON, **PAPER_SPECIFIC[kind]}
    wrong = {key: (select(cfg, key), value) for key, value in expected.items() if select(cfg, key) != value}
    assert not wrong, f"{kind} recipe: (got, paper) per key: {wrong}"
    assert cfg.optim.epochs * cfg.optim.updates_per_epoch == 100_000  # paper §4.2: 100k steps
    assert not cfg.compression_model_checkpoint.startswith('//reference')  # the public EnCodec
    assert cfg.schedule.cosine.lr_min_ratio == 0.0


def test_sound_recipe_mixes_clips_down_to_the_paper_batch():
    cfg = compose(f"solver={RECIPES['sound']}")
    train = cfg.dataset.train
    # AudioGen's augmentation (stock SoundDataset): mix_p of the loaded batch reaches the LM.
    assert train.aug_p > 0 and train.mix_p > 0
    assert train.batch_size * train.mix_p == 192
    # 16 GPUs of the grids: the per-rank batches train.get_solver computes are whole, with pairs for RR.
    assert train.batch_size % 16 == 0 and cfg.dataset.batch_size % 16 == 0 and cfg.dataset.batch_size // 16 >= 2


def test_music_recipe_overrides_stock_cfg_dropout():
    from rr_audiocraft.train import STOCK_CONFIG_DIR
    stock = OmegaConf.load(STOCK_CONFIG_DIR / 'conditioner' / 'text2music.yaml')
    ours = compose(f"solver={RECIPES['music']}")
    assert stock.classifier_free_guidance.training_dropout == 0.3
    assert ours.classifier_free_guidance.training_dropout == 0.1


def test_sound_recipe_compression_checkpoint_reads_a_local_export(tiny_compression_sig, tmp_path, monkeypatch):
    """Stock AudioCraft resolves the recipe's `//pretrained/facebook/audiogen-medium` to a local folder of
    that name holding compression_state_dict.bin when one exists where dora runs: the offline route of
    docs/recipes.md, shown with the tiny EnCodec exported there."""
    from audiocraft.solvers.compression import CompressionSolver
    from audiocraft.utils.export import export_encodec
    from conftest import xp_dir
    checkpoint = compose(f"solver={RECIPES['sound']}").compression_model_checkpoint
    export_encodec(xp_dir(tiny_compression_sig) / 'checkpoint.th',
                   tmp_path / checkpoint[len('//pretrained/'):] / 'compression_state_dict.bin')
    monkeypatch.chdir(tmp_path)
    model = CompressionSolver.model_from_checkpoint(checkpoint)
    assert model.sample_rate == 8000 and model.num_codebooks == 4 and model.frame_rate == 50  # the tiny test codec


def _yaml_keys(path: Path) -> tp.Dict[str, str]:
    """Dotted key -> its line's comment, for every key of a (block-style) YAML config file."""
    keys: tp.Dict[str, str] = {}
    stack: tp.List[tp.Tuple[int, str]] = []
    in_defaults = False
    for line in path.read_text().splitlines():
        match = re.match(r'^(\s*)([A-Za-z_][\w./-]*):(.*)$', line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        if indent == 0:
            in_defaults = key == 'defaults'
        if in_defaults:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = '.'.join([k for _, k in stack] + [key])
        value, _, comment = rest.partition(' #')
        if value.strip():
            keys[dotted] = comment.strip()
        else:
            stack.append((indent, key))
    return keys


@pytest.mark.parametrize('relpath', ['config/solver/rr_audiogen/audiogen_300m.yaml',
                                     'config/solver/rr_musicgen/musicgen_300m.yaml',
                                     'config/dset/rr_sound_16khz.yaml', 'config/dset/rr_music_32khz.yaml'])
def test_every_recipe_value_says_where_it_comes_from(relpath):
    keys = _yaml_keys(REPO_ROOT / relpath)
    assert keys, relpath
    uncommented = [key for key, comment in keys.items() if not comment]
    assert not uncommented, f"{relpath}: values without a comment: {uncommented}"
    if 'solver' in relpath:
        not_cited = [key for key in PAPER_KEYS if 'paper' not in keys.get(key, '')]
        assert not not_cited, f"{relpath}: paper values whose comment does not cite the paper: {not_cited}"


@pytest.mark.parametrize('kind', list(RECIPES))
def test_recipe_lm_has_the_300m_scale_with_a_local_text_encoder(kind):
    """The recipe's LM, built for real but on the meta device (no memory, no init cost), with T5
    swapped for the local all-MiniLM-L6-v2 conditioner; every LM size is the recipe's."""
    import torch
    from rr_audiocraft.models import RRLMModel, get_rr_lm_model
    from rr_audiocraft.modules.text import HFTextConditioner
    recipe_cfg = compose(f'solver={RECIPES[kind]}')
    cfg = compose(f'solver={RECIPES[kind]}', 'conditioner=rr_minilm', 'device=meta')
    assert cfg.transformer_lm == recipe_cfg.transformer_lm  # sizes kept
    lm = get_rr_lm_model(cfg)
    assert isinstance(lm, RRLMModel)
    assert isinstance(lm.condition_provider.conditioners['description'], HFTextConditioner)
    assert all(p.device == torch.device('meta') for p in lm.parameters())
    total = sum(p.numel() for p in lm.parameters())
    cross = sum(p.numel() for name, p in lm.named_parameters() if 'cross' in name)
    text_proj = sum(p.numel() for p in lm.condition_provider.parameters())
    # AudioCraft's "small" scale, MusicGen's "300M": 24 blocks of self-attention + feed-forward (302M)
    # and the token embeddings / output heads (17M) make ~319M; the cross-attention to the text
    # adds ~101M (420M in all), the text projection well under 1M.
    assert 300e6 <= total - cross - text_proj <= 330e6, total - cross - text_proj
    assert 95e6 <= cross <= 105e6, cross
    assert 400e6 <= total <= 440e6, total
    assert len(lm.transformer.layers) == 24 and lm.dim == 1024 and lm.card == 2048 and lm.num_codebooks == 4


# ----------------------------------------------------------------------------------------------------
# Evaluation wiring: FAD / KL / CLAP weight files are checked at start-up.

def _place_evaluation_assets(root: Path, monkeypatch, recipe_cfg) -> tp.Dict[str, Path]:
    """Put every file the recipe's metrics load where the check (and the metrics) look for them."""
    import huggingface_hub.constants
    from rr_audiocraft.evaluation import CLAP_TEXT_MODEL, PASST_WEIGHTS
    reference = root / 'reference'
    vggish = reference / 'fad' / 'vggish_model.ckpt'
    clap = reference / 'clap' / Path(recipe_cfg.metrics.text_consistency.clap.model_path).name
    tool = root / 'google-research'
    (tool / 'frechet_audio_distance').mkdir(parents=True)
    length = recipe_cfg.metrics.kld.passt.pretrained_length
    passt = root / 'torch' / 'hub' / 'checkpoints' / PASST_WEIGHTS[length][0]
    snapshot = root / 'hf' / f'models--{CLAP_TEXT_MODEL}' / 'snapshots' / ('0' * 40)
    for path in [vggish, clap, passt] + [snapshot / name for name in
                                         ('config.json', 'vocab.json', 'merges.txt', 'model.safetensors')]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'weights')
    (root / 'hf' / f'models--{CLAP_TEXT_MODEL}' / 'refs').mkdir()
    (root / 'hf' / f'models--{CLAP_TEXT_MODEL}' / 'refs' / 'main').write_text('0' * 40)
    # The two metric packages are not installed here: importable stand-ins for the presence check.
    packages = root / 'site'
    for package in ('hear21passt', 'laion_clap'):
        (packages / package).mkdir(parents=True)
        (packages / package / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(packages))
    monkeypatch.setenv('AUDIOCRAFT_REFERENCE_DIR', str(reference))
    monkeypatch.setenv('TORCH_HOME', str(root / 'torch'))
    monkeypatch.setenv('TF_PYTHON_EXE', sys.executable)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(root / 'hf'))
    return {'vggish': vggish, 'clap': clap, 'passt': passt, 'tool': tool}


@pytest.mark.parametrize('kind', list(RECIPES))
def test_missing_evaluation_weights_are_one_error_naming_file_and_setting(kind, tmp_path, monkeypatch):
    from rr_audiocraft.evaluation import EvaluationAssetError, PASST_WEIGHTS, check_evaluation_assets
    monkeypatch.setenv('AUDIOCRAFT_REFERENCE_DIR', str(tmp_path / 'nowhere'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('TF_PYTHON_EXE', raising=False)
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path / 'hf'))
    cfg = compose(f'solver={RECIPES[kind]}')
    with pytest.raises(EvaluationAssetError) as error:
        check_evaluation_assets(cfg)
    message = str(error.value)
    passt_file = PASST_WEIGHTS[cfg.metrics.kld.passt.pretrained_length][0]
    for needle in ['metrics.fad.tf.bin', 'metrics.fad.tf.model_path', f"{tmp_path}/nowhere/fad/vggish_model.ckpt",
                   'TF_PYTHON_EXE', 'metrics.kld.passt.pretrained_length',
                   f"{tmp_path}/torch/hub/checkpoints/{passt_file}", 'metrics.text_consistency.clap.model_path',
                   'music_audioset_epoch_15_esc_90.14.pt', 'roberta-base', 'evaluate.metrics.fad=false',
                   'evaluate.metrics.kld=false', 'evaluate.metrics.text_consistency=false']:
        assert needle in message, f"{needle!r} not in:\n{message}"


def test_evaluation_check_passes_with_the_files_and_names_exactly_what_goes_missing(tmp_path, monkeypatch):
    from rr_audiocraft.evaluation import EvaluationAssetError, check_evaluation_assets, required_evaluation_assets
    cfg = compose(f"solver={RECIPES['sound']}", f'metrics.fad.tf.bin={tmp_path}/google-research')
    placed = _place_evaluation_assets(tmp_path, monkeypatch, cfg)
    assets = required_evaluation_assets(cfg)
    assert {asset.metric for asset in assets} == {'fad', 'kld', 'text_consistency'}
    assert all(asset.present for asset in assets), [a.describe() for a in assets if not a.present]
    check_evaluation_assets(cfg)  # everything in place: no error

    placed['passt'].unlink()
    with pytest.raises(EvaluationAssetError) as error:
        check_evaluation_assets(cfg)
    message = str(error.value)
    assert str(placed['passt']) in message and 'metrics.kld.passt.pretrained_length' in message
    assert 'metric(s) kld are enabled but 1 file(s)' in message
    assert 'vggish' not in message and 'laion' not in message and 'roberta' not in message
    assert 'evaluate.metrics.kld=false' in message and 'evaluate.metrics.fad=false' not in message

    placed['passt'].write_bytes(b'weights')
    check_evaluation_assets(compose(f"solver={RECIPES['sound']}", f'metrics.fad.tf.bin={tmp_path}/google-research',
                                    'metrics.kld.passt.pretrained_length=10'))
    # Another PaSST length loads another file.
    with pytest.raises(EvaluationAssetError, match='passt-s-f128-20sec-p16-s10-ap.474-swa.pt'):
        check_evaluation_assets(compose(f"solver={RECIPES['sound']}", f'metrics.fad.tf.bin={tmp_path}/google-research',
                                        'metrics.kld.passt.pretrained_length=20'))


def test_tiny_configs_need_no_evaluation_weights():
    from rr_audiocraft.evaluation import check_evaluation_assets, required_evaluation_assets
    for solver in ('rr_audiogen/tiny', 'rr_musicgen/tiny'):
        cfg = compose(f'solver={solver}')
        assert required_evaluation_assets(cfg) == []
        check_evaluation_assets(cfg)


def test_rr_solver_refuses_to_start_without_evaluation_weights(tmp_path, monkeypatch, tiny_data):
    """The check runs in the RR solver's constructor, before the stock one builds models or data
    (the compression checkpoint named here does not even exist: nothing gets that far)."""
    from rr_audiocraft.evaluation import EvaluationAssetError
    from rr_audiocraft.solvers import RRAudioGenSolver
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    cfg = compose('solver=rr_audiogen/tiny', 'compression_model_checkpoint=//sig/00000000',
                  'evaluate.metrics.kld=true', *datasource_overrides(tiny_data))
    with pytest.raises(EvaluationAssetError, match=r'evaluate\.metrics\.kld=true'):
        RRAudioGenSolver(cfg)
