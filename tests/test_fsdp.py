"""FSDP on CPU ranks (rr_audiocraft/fsdp.py): two gloo ranks through the real entry point, against the same
XP without FSDP (stock's flashy gradient sync), then the FSDP checkpoint through the exporter into stock AudioGen.
"""
import json
import math
import subprocess
import sys
import typing as tp

import pytest
import torch

from conftest import REPO_ROOT, SHORT_LM_RUN, datasource_overrides, run_cli, run_dora, xp_dir


# CFG dropout draws from a fixed seed (stock's 1234): at p = 0.3 it drops the captions on steps 1 and 3 of 4,
# so RR acts on two steps (its gradient reaches the LM through the captured hidden states) and the two others
# train the LUT conditioner through cross-attention (the ConditioningProvider is an FSDP unit of its own).
RUN = ['solver=rr_audiogen/tiny', 'conditioner=rr_lut', *SHORT_LM_RUN, 'optim.updates_per_epoch=4',
       'classifier_free_guidance.training_dropout=0.3']
FSDP_ON_CPU = ['fsdp.use=true', 'fsdp.param_dtype=float32']
# Both XPs run the same float32 arithmetic; FSDP only changes how gradients are reduced (reduce-scatter of
# shards instead of one all-reduce). Measured on 2 ranks: train ce and rr bit-identical, valid rr 1.2e-7
# relative apart, best-state weights at most 1e-6 apart.
REL_TOL = 1e-5
WEIGHT_ATOL = 1e-5


def run_two_ranks(*overrides: str, timeout: float = 300) -> str:
    """`dora run` an XP on 2 CPU ranks (gloo) under torchrun, as a 2-task launch would; returns its signature.

    Dora reads WORLD_SIZE / RANK / LOCAL_RANK from torchrun's environment, and its MASTER_ADDR / MASTER_PORT
    (`--standalone`: a free local port, so concurrent runs do not collide).
    """
    from rr_audiocraft.train import main
    sig = main.get_xp(list(overrides)).sig
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           '-m', 'dora', '-P', 'rr_audiocraft', 'run', *overrides],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"2-rank XP {sig} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return sig


@pytest.fixture(scope='module')
def two_rank_xps(tiny_data, tiny_compression_sig) -> tp.Dict[str, str]:
    """The same 2-rank XP (same seed) without and with FSDP: {'ddp': sig, 'fsdp': sig}."""
    common = [*RUN, f'compression_model_checkpoint=//sig/{tiny_compression_sig}', *datasource_overrides(tiny_data)]
    return {'ddp': run_two_ranks(*common), 'fsdp': run_two_ranks(*common, *FSDP_ON_CPU)}


def _history(sig: str) -> tp.List[dict]:
    return json.loads((xp_dir(sig) / 'history.json').read_text())


def test_fsdp_on_two_cpu_ranks_trains_like_the_run_without_it(two_rank_xps):
    ddp, fsdp = _history(two_rank_xps['ddp']), _history(two_rank_xps['fsdp'])
    assert len(ddp) == len(fsdp) == 1
    # fsdp.* is in the signature: two XPs. Under FSDP stock writes one checkpoint per rank (rank 1: .th.1).
    assert two_rank_xps['ddp'] != two_rank_xps['fsdp']
    assert (xp_dir(two_rank_xps['fsdp']) / 'checkpoint.th.1').exists()
    assert not (xp_dir(two_rank_xps['ddp']) / 'checkpoint.th.1').exists()
    for ours, theirs in zip(fsdp, ddp, strict=True):
        assert ours['train']['rr_steps'] == theirs['train']['rr_steps'] == 0.5  # RR acted on 2 of the 4 steps
        for stage, key in [('train', 'ce'), ('train', 'rr'), ('valid', 'ce'), ('valid', 'rr')]:
            value, reference = ours[stage][key], theirs[stage][key]
            assert math.isfinite(value) and value > 0, (stage, key, value)
            assert value == pytest.approx(reference, rel=REL_TOL), (stage, key, value, reference)


def test_the_fsdp_checkpoint_exports_the_full_model_and_loads_in_stock_audiogen(two_rank_xps, tmp_path, capsys,
                                                                                 one_torch_thread):
    from audiocraft.models import AudioGen
    from rr_audiocraft.checkpoint import load_checkpoint
    from rr_audiocraft.export import main
    folder = xp_dir(two_rank_xps['fsdp'])
    rank0, rank1 = load_checkpoint(folder / 'checkpoint.th'), load_checkpoint(folder / 'checkpoint.th.1')
    full = rank0['fsdp_best_state']['model']
    # Each rank's own state is its flat shard; rank 0 alone also holds the gathered model (stock's FULL_STATE_DICT).
    assert not rank1['fsdp_best_state'].get('model')
    assert sum(v.numel() for v in full.values()) == sum(
        v.numel() for state in (rank0['model'], rank1['model']) for v in state.values())
    # Full shapes, and the weights the run without FSDP reached.
    reference = load_checkpoint(xp_dir(two_rank_xps['ddp']) / 'checkpoint.th')['best_state']['model']
    assert list(full) == list(reference)
    for key in reference:
        assert full[key].shape == reference[key].shape, key
        torch.testing.assert_close(full[key], reference[key], rtol=0, atol=WEIGHT_ATOL)

    out = tmp_path / 'fsdp_export'
    code, stdout, _ = run_cli(main, [f'//sig/{two_rank_xps["fsdp"]}', str(out)], capsys)
    assert code == 0 and f"stock: audiocraft.models.AudioGen.get_pretrained('{out}')" in stdout
    model = AudioGen.get_pretrained(str(out), device='cpu')
    assert type(model.lm).__name__ == 'LMModel'
    state = model.lm.state_dict()
    assert list(state) == list(full) and all(torch.equal(state[k], full[k]) for k in full)


def test_fsdp_on_cpu_in_float16_is_refused_before_anything_is_built(tiny_data, tiny_compression_sig):
    """Stock's default fsdp.param_dtype (float16), one process: one message listing both problems, no traceback."""
    from rr_audiocraft.train import STARTUP_ERROR_STATUS, main
    overrides = [*RUN, f'compression_model_checkpoint=//sig/{tiny_compression_sig}', *datasource_overrides(tiny_data),
                 'fsdp.use=true']
    proc = run_dora('run', *overrides, check=False)
    assert proc.returncode == STARTUP_ERROR_STATUS, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert ("rr_audiocraft.settings.ConfigError: Config check failed, 2 problems:\n"
            "  - fsdp.param_dtype=float16 is not supported with fsdp.use=true on CPU (device=cpu)") in proc.stderr
    assert 'set fsdp.param_dtype=float32' in proc.stderr
    assert 'fsdp.use=true needs 2 or more ranks, this run has 1' in proc.stderr
    folder = xp_dir(main.get_xp(overrides).sig)
    assert not (folder / 'checkpoint.th').exists() and not (folder / 'history.json').exists()


@pytest.mark.parametrize('overrides, expected', [
    (['fsdp.use=false'], []),
    (['fsdp.use=true', 'device=cuda'], []),  # CUDA: stock's path, untouched
    (['fsdp.use=true'], ['fsdp.param_dtype=float16 is not supported', 'needs 2 or more ranks']),
    (['fsdp.use=true', 'fsdp.param_dtype=float32', 'fsdp.reduce_dtype=bfloat16', 'fsdp.sharding_strategy=no_shard'],
     ['fsdp.reduce_dtype=bfloat16 is not supported', 'fsdp.sharding_strategy=no_shard is not supported',
      'needs 2 or more ranks']),
])
def test_every_cpu_fsdp_problem_is_named(overrides, expected):
    from rr_audiocraft.fsdp import cpu_fsdp_problems
    from rr_audiocraft.train import main
    problems = cpu_fsdp_problems(main.get_xp(['solver=rr_audiogen/tiny', *overrides]).cfg)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert start in problem
