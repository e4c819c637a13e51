"""`python -m rr_audiocraft.plan`: parameter counts against built models, the activation estimate against a
direct measurement, the CLI's JSON and refusals, and the `dora grid` submission check that uses it."""
import json
import typing as tp

import omegaconf
import pytest
import torch
from conftest import run_cli
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from rr_audiocraft import plan
from rr_audiocraft.models.builders import get_rr_lm_model
from rr_audiocraft.slurm import xp_problems

TINY = ['solver=rr_audiogen/tiny']
# AudioCraft's own count for musicgen "small", cross-attention included (audiocraft#357: "420.37M").
MUSICGEN_SMALL_PARAMS = 420_371_456
T5_BASE_ENCODER_PARAMS = 109_628_544  # transformers' T5EncoderModel for t5-base (embeddings counted once)


@pytest.fixture(scope='module')
def tiny_cfg():
    return plan.compose(TINY)


@pytest.fixture(scope='module')
def musicgen_cfg():
    return plan.compose(['solver=rr_musicgen/musicgen_300m'])


def test_params_equal_the_real_solver_model_of_tiny(tiny_cfg, one_torch_thread):
    torch.manual_seed(0)
    built = get_rr_lm_model(tiny_cfg)  # what RRAudioGenSolver.build_model builds, real weights on the CPU
    assert all(p.device.type == 'cpu' for p in built.parameters())
    facts = plan.facts_of(tiny_cfg)
    assert facts.params == sum(p.numel() for p in built.parameters())
    # The frozen local text encoder is outside the LM's parameters, and the plan counts it apart.
    encoder = built.condition_provider.conditioners['description'].__dict__['encoder']
    assert list(facts.frozen_encoders.values()) == [sum(p.numel() for p in encoder.parameters())]
    assert facts.frames == 4 * 50  # 4 s segments of the shipped 50 Hz codec


def test_musicgen_300m_on_meta_counts_audiocrafts_420m(musicgen_cfg):
    lm = plan.build_lm(musicgen_cfg)
    assert {p.device.type for p in lm.parameters()} == {'meta'}
    facts = plan.facts_of(musicgen_cfg)
    assert facts.params == sum(p.numel() for p in lm.parameters()) == MUSICGEN_SMALL_PARAMS
    # "300M" is the count without the 24 cross-attention blocks (4 d x d projections each, no bias).
    assert facts.params - 24 * 4 * 1024 ** 2 == 319_708_160
    # Stock keeps the frozen T5 outside the module's parameters: the plan counts it as the text encoder.
    assert facts.frozen_encoders == {'description (t5-base)': T5_BASE_ENCODER_PARAMS}
    assert facts.frames == 1500 and facts.compression['frame_rate'] == 50
    # A fine-tuned T5 is a submodule, trained, and counted with the LM.
    tuned = plan.compose(['solver=rr_musicgen/musicgen_300m', 'conditioners.description.t5.finetune=true'])
    tuned_facts = plan.facts_of(tuned)
    assert tuned_facts.params == MUSICGEN_SMALL_PARAMS + T5_BASE_ENCODER_PARAMS and tuned_facts.frozen_encoders == {}


def six_layer_tiny(extra: tp.List[str]) -> tp.Tuple[omegaconf.DictConfig, torch.nn.Module]:
    """The tiny recipe at 6 layers (with `extra` overrides) and its LM built on the CPU, seeded, in train mode:
    the full-depth model the plan's 1- and 2-layer fit is checked against."""
    cfg = plan.compose(TINY + ['transformer_lm.num_layers=6', *extra])
    torch.manual_seed(0)
    return cfg, plan.build_lm(plan._measurable(cfg), device='cpu').train()


@pytest.mark.parametrize('extra, mode', [
    ([], 'float32'),  # tiny's attention: softmax weights kept, a T^2 term
    (['transformer_lm.memory_efficient=true'], 'autocast-bfloat16'),
    (['transformer_lm.memory_efficient=true'], 'params-bfloat16'),
])
def test_activation_estimate_matches_a_direct_measurement_at_full_depth(extra, mode, one_torch_thread):
    # Fitted on 1- and 2-layer models at batches 2-3 and 16-48 frames; checked at 6 layers, batch 5, 300 frames.
    cfg, lm = six_layer_tiny(extra)
    estimate = plan.activation_profile(cfg, mode).saved(layers=6, batch=5, frames=300)
    if mode.startswith('params-'):
        lm = lm.to(torch.bfloat16)
    direct = plan.measure_saved_bytes(lm, batch=5, frames=300, mode=mode)['saved']
    assert direct > 5e6
    assert estimate == pytest.approx(direct, rel=1e-4)


def held_after_forward(lm: torch.nn.Module, batch: int, frames: int, mode: str) -> int:
    """Bytes torch's CPU allocator holds at the end of one `plan.training_forward` (loss and logits alive),
    above what it held before: allocation events of the profiler, as `rr_audiocraft.bench` reads them."""
    outputs = []
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        outputs.append(plan.training_forward(lm, batch, frames, mode))
    held, stack = 0, list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.typed[0] == _EventType.Allocation and node.typed[1].device.type == 'cpu':
            held += node.typed[1].alloc_size  # > 0 allocated, < 0 freed
        stack.extend(node.children)
    return held


@pytest.mark.parametrize('extra, mode', [
    ([], 'float32'),
    (['transformer_lm.memory_efficient=true'], 'float32'),
    (['transformer_lm.memory_efficient=true'], 'autocast-bfloat16'),
])
def test_checkpointing_estimate_matches_what_the_allocator_holds(extra, mode, one_torch_thread):
    # Checkpointed layers save nothing through autograd's hooks (checkpoint keeps their inputs itself), so the
    # direct measurement is the allocator's: what a checkpointed forward holds less than a plain one, taken
    # from the plain forward's saved bytes.
    cfg, lm = six_layer_tiny(extra)
    estimate = plan.activation_profile(cfg, mode).checkpointed_forward_end(layers=6, batch=5, frames=300)
    plain = held_after_forward(lm, 5, 300, mode)
    saved = plan.measure_saved_bytes(lm, batch=5, frames=300, mode=mode)['saved']
    lm.transformer.checkpointing = 'torch'
    checkpointed = held_after_forward(lm, 5, 300, mode)
    direct = saved - (plain - checkpointed)
    # Beyond what autograd saves, a plain forward holds the logits (not saved; the plan counts them apart).
    logits = plan.activation_profile(cfg, mode).logits_bytes_per_frame * 5 * 300
    assert plain - saved == pytest.approx(logits, rel=0.01)
    assert direct < saved / 3  # what checkpointing is for
    assert estimate == pytest.approx(direct, rel=0.01)  # measured: 0.09-0.5 % (inputs made inside the forward)


def test_json_has_the_plan_and_fits_flips_with_the_memory(capsys):
    code, out, _ = run_cli(plan.main, TINY + ['--gpus', '2', '--gpu-memory', '80', '--json'], capsys)
    assert code == 0
    result = json.loads(out)
    assert {'params', 'fits', 'per_gpu_batch', 'rr_pairs_per_gpu', 'peak_gib', 'memory_gib',
            'suggestions'} <= set(result)
    assert result['fits'] is True and result['per_gpu_batch'] == 4 and result['rr_pairs_per_gpu'] == 12
    assert set(result['memory_gib']) >= {'weights', 'gradients', 'optimizer', 'ema', 'text_encoder', 'activations',
                                         'logits', 'compression_model', 'peak'}
    peak = result['peak_gib']
    # 1.1 GB leaves (1.1 - 1) x 0.9 = 0.09 GiB usable, below the tiny plan's peak (its text encoder alone: 0.08).
    assert plan.usable_bytes(1.1) / plan.GIB < peak
    code, out, _ = run_cli(plan.main, TINY + ['--gpus', '2', '--gpu-memory', '1.1', '--json'], capsys)
    assert code == 0 and json.loads(out)['fits'] is False and json.loads(out)['peak_gib'] == peak


@pytest.mark.parametrize('argv, message', [
    (['solver=rr_audiogen/no_such_recipe', '--gpus', '2', '--gpu-memory', '80'],
     "cannot compose solver=rr_audiogen/no_such_recipe: In 'config': Could not find "
     "'solver/rr_audiogen/no_such_recipe'"),
    (TINY + ['--gpus', '3', '--gpu-memory', '80'],
     "dataset.batch_size=8 is not divisible by the world size 3: choose --gpus dividing it or change the batch size"),
])
def test_bad_inputs_exit_2_with_one_line(argv, message, capsys):
    code, out, err = run_cli(plan.main, argv, capsys)
    assert code == 2 and out == ''
    assert err.strip().splitlines() == [f"rr_audiocraft.plan.PlanError: {message}"]


def test_gpus_and_memory_are_required(capsys):
    code, _, err = run_cli(plan.main, TINY + ['--gpus', '2'], capsys)
    assert code == 2 and err.strip().splitlines()[-1].endswith("give --gpus N and --gpu-memory GB (or --table)")


def test_suggestions_fit_and_ema_lives_where_the_config_says(musicgen_cfg):
    facts = plan.facts_of(musicgen_cfg)
    on_one = plan.plan_from(musicgen_cfg, facts, plan.setup_of(musicgen_cfg, 1), 80)
    assert on_one['fits'] is False and on_one['per_gpu_batch'] == 192
    assert on_one['problems'][0].startswith('fsdp.use=true needs 2 or more GPUs')
    assert on_one['suggestions'] and all(option['peak_gib'] <= on_one['usable_gib'] for option in on_one['suggestions'])
    sixteen = plan.plan_from(musicgen_cfg, facts, plan.setup_of(musicgen_cfg, 16), 80)
    assert sixteen['fits'] is True and sixteen['per_gpu_batch'] == 12 and sixteen['rr_pairs_per_gpu'] == 132
    # FSDP shards the fp32 EMA copy too; on the CPU it leaves the GPU.
    assert sixteen['memory_gib']['ema'] == pytest.approx(MUSICGEN_SMALL_PARAMS * 4 / 16 / plan.GIB)
    cpu_ema = plan.setup_of(musicgen_cfg, 16).changed('optim.ema.device=cpu', ema_gpu=False)
    assert plan.plan_from(musicgen_cfg, facts, cpu_ema, 80)['memory_gib']['ema'] == 0
    # Checkpointing keeps each layer's input instead of what the layer saves.
    checkpointed = plan.setup_of(musicgen_cfg, 16).changed(checkpointing=True)
    assert plan.plan_from(musicgen_cfg, facts, checkpointed, 80)['memory_gib']['activations'] < \
        sixteen['memory_gib']['activations'] / 5


def test_grid_submission_refuses_cuda_xps_that_do_not_fit(musicgen_cfg, tiny_cfg, monkeypatch):
    monkeypatch.delenv(plan.GPU_MEMORY_ENV, raising=False)
    [unset] = xp_problems(musicgen_cfg, 16)
    assert unset.startswith(f"{plan.GPU_MEMORY_ENV}='': set it to the memory of one of the cluster's GPUs")
    assert xp_problems(tiny_cfg, 2) == []  # a CPU XP (tests_cluster's tiny grids): no GPU, no memory plan
    monkeypatch.setenv(plan.GPU_MEMORY_ENV, '80')
    assert xp_problems(musicgen_cfg, 16) == []
    monkeypatch.setenv(plan.GPU_MEMORY_ENV, '24')
    [refused] = xp_problems(musicgen_cfg, 8)  # 24 samples of 30 s per GPU
    assert refused.startswith('memory plan: does not fit 8 GPU(s): peak estimate ')
    assert 'usable of 24 GB; would fit: ' in refused
    monkeypatch.setenv(plan.GPU_MEMORY_ENV, '0')  # the check turned off
    assert xp_problems(musicgen_cfg, 16) == []
