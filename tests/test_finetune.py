"""RR fine-tuning of a released model: the recipes, the guards stock lacks, a tiny export playing the released model.

A tiny LM XP (conftest's LUT AudioGen, which stock AudioCraft can rebuild) is exported by the real entry point
`python -m rr_audiocraft.export` into the hub layout (`state_dict.bin` + `compression_state_dict.bin`), and fine-tuned
from that folder with `continue_from=//pretrained//abs/DIR`, as a released model is offline (docs/finetune.md).
"""
import subprocess
import sys
import typing as tp
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, datasource_overrides, run_dora, run_xp, xp_dir
from test_solver import build_solver


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def compose(overrides: tp.List[str]):
    from rr_audiocraft.train import main
    return main.get_xp(overrides).cfg


def first_epoch(solver) -> dict:
    """What `solver.run()` does before its first epoch (restore), then that epoch's train stage."""
    solver.restore()
    return solver.run_stage('train', solver.train)


@pytest.fixture(scope='module')
def released(lut_export) -> Path:
    """The tiny LM exported in the hub layout (conftest's `lut_export`): our stand-in for a released model folder."""
    return lut_export


@pytest.fixture(scope='module')
def finetune_overrides(released, tiny_data) -> tp.List[str]:
    """Fine-tune the export offline, in the form docs/finetune.md gives."""
    return ['solver=rr_audiogen/tiny', 'conditioner=rr_lut', f'continue_from=//pretrained/{released}',
            f'compression_model_checkpoint=//pretrained/{released}/compression_state_dict.bin',
            'optim.updates_per_epoch=4', 'classifier_free_guidance.training_dropout=0.5',
            *datasource_overrides(tiny_data)]


def released_weights(folder: Path) -> tp.Dict[str, torch.Tensor]:
    return torch.load(folder / 'state_dict.bin', map_location='cpu')['best_state']


# --- recipes: composition only, no weights --------------------------------------------------------------------------

@pytest.mark.parametrize('solver, dim, heads, layers, t5, sample_rate, hub, codec', [
    ('rr_musicgen/finetune_small', 1024, 16, 24, 't5-base', 32000, 'facebook/musicgen-small', 'facebook/encodec_32khz'),
    ('rr_musicgen/finetune_medium', 1536, 24, 48, 't5-base', 32000, 'facebook/musicgen-medium',
     'facebook/encodec_32khz'),
    ('rr_audiogen/finetune_medium', 1536, 24, 48, 't5-large', 16000, 'facebook/audiogen-medium',
     'facebook/audiogen-medium'),
])
def test_recipes_compose_with_the_released_shapes(solver, dim, heads, layers, t5, sample_rate, hub, codec):
    cfg = compose([f'solver={solver}'])
    lm = cfg.transformer_lm
    # The released models' shapes (AudioCraft 1.3.0 model_scale small/medium, musicgen_lm/audiogen_lm, text2music/sound)
    assert (lm.dim, lm.num_heads, lm.num_layers, lm.hidden_scale, lm.card, lm.n_q) == (dim, heads, layers, 4, 2048, 4)
    assert (lm.bias_ff, lm.bias_attn, lm.bias_proj, lm.norm_first) == (False, False, False, True)
    assert cfg.conditioners.description.model == 't5' and cfg.conditioners.description.t5.name == t5
    assert list(cfg.fuser.cross) == ['description'] and cfg.codebooks_pattern.modeling == 'delay'
    assert list(cfg.codebooks_pattern.delay.delays) == [0, 1, 2, 3]
    assert (cfg.sample_rate, cfg.channels) == (sample_rate, 1)
    assert cfg.continue_from == f'//pretrained/{hub}' and cfg.compression_model_checkpoint == f'//pretrained/{codec}'
    assert (cfg.optim.optimizer, cfg.optim.lr < 1e-4) == ('adamw', True)
    assert (cfg.autocast, cfg.autocast_dtype, cfg.fsdp.use) == (True, 'bfloat16', False)
    assert (cfg.classifier_free_guidance.training_dropout, cfg.rr.weight) == (0.1, 3.0)
    # A local folder in the hub layout: the one key gives both files in stock's `//pretrained//abs/dir` form.
    local = compose([f'solver={solver}', 'finetune.source=/models/released'])
    assert local.continue_from == '//pretrained//models/released'
    assert local.compression_model_checkpoint == '//pretrained//models/released/compression_state_dict.bin'


def test_a_model_source_that_cannot_load_is_refused(tmp_path, monkeypatch):
    from rr_audiocraft.settings import finetune_problems
    assert finetune_problems(compose(['solver=rr_musicgen/finetune_small'])) == []  # a hub name: stock downloads it
    (tmp_path / 'half').mkdir()
    (tmp_path / 'half' / 'state_dict.bin').write_bytes(b'')
    half = compose(['solver=rr_musicgen/finetune_small', f'finetune.source={tmp_path}/half'])
    assert finetune_problems(half) == [
        f"compression_model_checkpoint=//pretrained/{tmp_path}/half/compression_state_dict.bin: {tmp_path}/half/"
        "compression_state_dict.bin does not exist; a local model folder needs the hub layout (state_dict.bin + "
        "compression_state_dict.bin, as `python -m rr_audiocraft.export` writes and the hub repository holds)"]
    (tmp_path / 'half' / 'compression_state_dict.bin').write_bytes(b'')
    assert finetune_problems(half) == []
    assert "continue_from=//pretrained//nowhere: /nowhere does not exist;" in finetune_problems(compose(
        ['solver=rr_audiogen/tiny', 'continue_from=//pretrained//nowhere']))[0]
    monkeypatch.chdir(tmp_path)
    problems = finetune_problems(compose(['solver=rr_musicgen/finetune_small', 'finetune.source=half']))
    assert problems == [f"finetune.source=half is a relative folder; Dora runs in the XP folder, so give its absolute "
                        f"path: finetune.source={tmp_path}/half"]
    problems = finetune_problems(compose(['solver=rr_audiogen/finetune_medium']))
    assert len(problems) == 1
    assert "huggingface-cli download facebook/audiogen-medium --local-dir /abs/dir" in problems[0]


@pytest.mark.parametrize('optimizer, lr, fix', [
    ('dadam', 1e-4, "Set optim.lr=1 to keep dadam, or optim.optimizer=adamw to use 0.0001 as an AdamW learning rate"),
    ('adamw', 1, "Set optim.lr=1e-4 (training from scratch, as stock) or optim.lr=1e-5 (fine-tuning"),
    ('adam', 0.5, "or optim.optimizer=dadam to keep lr=0.5"),
    ('dadam', 1, None), ('adamw', 1e-5, None), ('adamw', 0.05, None),
])
def test_an_optimizer_and_lr_that_cannot_be_meant_are_refused_at_start_up(optimizer, lr, fix):
    from rr_audiocraft.settings import ConfigError, validate_rr_config
    cfg = compose(['solver=rr_musicgen/finetune_small', f'optim.optimizer={optimizer}', f'optim.lr={lr}'])
    if fix is None:
        validate_rr_config(cfg)
        return
    with pytest.raises(ConfigError) as error:
        validate_rr_config(cfg)
    assert f"optim.optimizer={optimizer} with optim.lr={lr}" in str(error.value) and fix in str(error.value)


# --- fine-tuning a tiny export ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_finetune_starts_from_exactly_the_released_weights(finetune_overrides, released):
    solver = build_solver(finetune_overrides)
    solver.restore()
    weights, state = released_weights(released), solver.model.state_dict()
    assert list(state) == list(weights) and all(torch.equal(state[k], weights[k]) for k in weights)
    # ... and not by chance: the model built before the restore had other (random) weights.
    fresh = build_solver(finetune_overrides).model.state_dict()
    assert not torch.equal(fresh['emb.0.weight'], weights['emb.0.weight'])


@pytest.mark.slow
def test_weight_zero_finetune_is_the_stock_finetune_bit_for_bit_and_weight_three_differs(finetune_overrides):
    stock = build_solver(finetune_overrides, solver_name='audiogen')
    stock_metrics = first_epoch(stock)
    ours = build_solver(finetune_overrides + ['rr.weight=0'])
    our_metrics = first_epoch(ours)
    assert type(stock).__name__ == 'AudioGenSolver' and type(ours).__name__ == 'RRAudioGenSolver'
    assert our_metrics['ce'] == stock_metrics['ce'] and our_metrics['grad_norm'] == stock_metrics['grad_norm']
    stock_state, our_state = stock.model.state_dict(), ours.model.state_dict()
    assert list(stock_state) == list(our_state) and all(torch.equal(stock_state[k], our_state[k]) for k in stock_state)
    rr = build_solver(finetune_overrides + ['rr.weight=3'])
    rr_metrics = first_epoch(rr)
    assert rr_metrics['rr_steps'] > 0  # CFG dropped some steps, where RR acted
    rr_state = rr.model.state_dict()
    assert not all(torch.equal(rr_state[k], stock_state[k]) for k in stock_state)


@pytest.mark.slow
def test_a_checkpoint_of_other_shapes_is_refused_with_each_tensor_and_its_key(finetune_overrides):
    from rr_audiocraft.settings import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError) as error:
        build_solver(finetune_overrides + ['transformer_lm.num_layers=3']).restore()
    message = str(error.value)
    assert "\n  transformer_lm.num_layers=3:\n    transformer.layers.2.self_attn.mha.in_proj_weight [192, 64] in the " \
           "model, absent from the checkpoint\n" in message
    keys = [line for line in message.splitlines() if line.startswith('  ') and not line.startswith('   ')]
    assert keys == ['  transformer_lm.num_layers=3:']  # one key: the layer's cross-attention is the layer count's too
    with pytest.raises(CheckpointMismatchError) as error:
        build_solver(finetune_overrides + ['conditioners.description.lut.dim=32']).restore()
    assert "\n  conditioners.description.lut:\n    condition_provider.conditioners.description.output_proj.weight: " \
           "checkpoint [64, 64], model [64, 32]\n" in str(error.value)
    # No tensor shape shows the number of heads: the released model's own config (`xp.cfg`) does.
    with pytest.raises(CheckpointMismatchError) as error:
        build_solver(finetune_overrides + ['transformer_lm.num_heads=2']).restore()
    assert str(error.value).splitlines()[1:] == [
        '  transformer_lm.num_heads=2:',
        '    the checkpoint was trained with transformer_lm.num_heads=4; no tensor shape shows it, so its weights '
        'would load and compute something else']


@pytest.mark.slow
def test_the_mismatch_stops_dora_run_with_one_message_and_exit_2(finetune_overrides):
    proc = run_dora('run', *finetune_overrides, 'transformer_lm.dim=96', check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    message = proc.stderr[proc.stderr.index('rr_audiocraft.settings.CheckpointMismatchError: '):]
    assert "does not fit the model this config builds" in message
    assert "\n  transformer_lm.dim=96:\n" in message and "\n    emb.0.weight: checkpoint [257, 64], model [257, 96]\n" \
        in message
    assert "\n    condition_provider.conditioners.description.output_proj.weight: checkpoint [64, 64], model [96, 64]" \
        in message


@pytest.mark.slow
def test_a_finetune_exports_to_stock_and_a_rerun_says_continue_from_is_ignored(finetune_overrides, tmp_path):
    from audiocraft.models import AudioGen
    overrides = finetune_overrides + ['optim.epochs=1', 'dataset.valid.num_samples=8', 'dataset.evaluate.num_samples=2',
                                      'generate.lm.gen_duration=0.5', 'num_threads=1']
    sig = run_xp(*overrides)
    out = tmp_path / 'finetuned'
    proc = subprocess.run([sys.executable, '-m', 'rr_audiocraft.export', f'//sig/{sig}', str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = AudioGen.get_pretrained(str(out), device='cpu')
    model.set_generation_params(duration=0.3, top_k=50)
    torch.manual_seed(0)
    assert model.generate(['a dog barks'], return_tokens=True)[1].shape == (1, 4, 15)
    # The XP has its own checkpoint now: a rerun (a requeue after preemption) resumes it and says so, once.
    rerun = run_dora('run', *overrides)
    continue_from = next(o for o in overrides if o.startswith('continue_from='))
    lines = [line for line in (rerun.stdout + rerun.stderr).splitlines() if f'{continue_from} is ignored' in line]
    assert len(lines) == 1
    assert f"this XP resumes from its own checkpoint {xp_dir(sig) / 'checkpoint.th'}" in lines[0]
    assert "dora run --clear" in lines[0]


@pytest.mark.slow
def test_activation_checkpointing_gives_the_same_rr_and_gradients(finetune_overrides):
    """Under `transformer_lm.checkpointing=torch` the layers' activations are recomputed in backward; RR's capture of
    the last hidden states (a hook on the output heads, outside the checkpointed layers) must see the same states."""
    runs = []
    for checkpointing in ('none', 'torch'):
        solver = build_solver(finetune_overrides + [f'transformer_lm.checkpointing={checkpointing}', 'rr.weight=3',
                                                    'classifier_free_guidance.training_dropout=1.0',
                                                    'optim.updates_per_epoch=2'])
        assert solver.rr_lm.transformer.checkpointing == checkpointing
        grads: tp.List[tp.Dict[str, torch.Tensor]] = []
        stock_step = solver.optimizer.step

        def step_recording_grads(*args, _step=stock_step, _grads=grads, _model=solver.model, **kwargs):
            _grads.append({n: p.grad.clone() for n, p in _model.named_parameters() if p.grad is not None})
            return _step(*args, **kwargs)
        solver.optimizer.step = step_recording_grads
        metrics = first_epoch(solver)
        runs.append((metrics, grads))
    (plain, plain_grads), (recomputed, recomputed_grads) = runs
    assert plain['rr_steps'] == recomputed['rr_steps'] == 1.0 and plain['rr'] > 0
    assert recomputed['rr'] == pytest.approx(plain['rr'], rel=1e-6, abs=0)
    assert len(plain_grads) == len(recomputed_grads) == 2 and list(plain_grads[0]) == list(recomputed_grads[0])
    for ours, reference in zip(recomputed_grads, plain_grads, strict=True):
        for name, grad in reference.items():
            torch.testing.assert_close(ours[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_the_mismatch_names_the_key_behind_each_released_shape():
    """Shapes of audiogen-medium's tensors against a recipe with the wrong text encoder and codebook size."""
    from rr_audiocraft.settings import checkpoint_mismatch_problem
    cfg = compose(['solver=rr_audiogen/finetune_medium', 'conditioners.description.t5.name=t5-base',
                   'transformer_lm.card=1024'])
    released = {'condition_provider.conditioners.description.output_proj.weight': (1536, 1024),
                'emb.0.weight': (2049, 1536), 'linears.0.weight': (2048, 1536)}
    built = {'condition_provider.conditioners.description.output_proj.weight': (1536, 768),
             'emb.0.weight': (1025, 1536), 'linears.0.weight': (1024, 1536)}
    message = checkpoint_mismatch_problem('//pretrained//models/audiogen-medium', released, built, cfg)
    assert message.splitlines()[1:] == [
        '  conditioners.description.t5.name=t5-base:',
        '    condition_provider.conditioners.description.output_proj.weight: checkpoint [1536, 1024], '
        'model [1536, 768]',
        '  transformer_lm.card=1024:',
        '    emb.0.weight: checkpoint [2049, 1536], model [1025, 1536]',
        '    linears.0.weight: checkpoint [2048, 1536], model [1024, 1536]']
    assert checkpoint_mismatch_problem('x', released, released, cfg) is None


@pytest.mark.parametrize('relpath', ['config/solver/rr_musicgen/finetune_small.yaml',
                                     'config/solver/rr_musicgen/finetune_medium.yaml',
                                     'config/solver/rr_audiogen/finetune_medium.yaml'])
def test_every_finetune_recipe_value_says_where_it_comes_from(relpath):
    from test_recipes import _yaml_keys
    keys = _yaml_keys(REPO_ROOT / relpath)
    assert 'continue_from' in keys and 'optim.lr' in keys
    assert [key for key, comment in keys.items() if not comment] == []
