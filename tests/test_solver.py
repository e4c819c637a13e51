"""RRLMModel and the RR solvers, in process, on the tiny configs (real AudioCraft, real EnCodec XP)."""
import random
import typing as tp

import numpy as np
import pytest
import torch

from conftest import datasource_overrides


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_solver(overrides: tp.List[str], solver_name: tp.Optional[str] = None):
    """Compose the config as `dora run` would and build the solver it names, seeded as train.py seeds.

    `solver_name` replaces the config's `solver` key (on the command line `solver=` picks the group).
    """
    from rr_audiocraft.train import get_solver, main
    xp = main.get_xp(overrides)
    if solver_name is not None:
        xp.cfg.solver = solver_name
    _seed(xp.cfg.seed)
    with xp.enter():
        return get_solver(xp.cfg)


def run_train_epoch(solver) -> dict:
    return solver.run_stage('train', solver.train)


@pytest.fixture(scope='module')
def base_overrides(tiny_data, tiny_compression_sig) -> tp.List[str]:
    return ['solver=rr_audiogen/tiny', f'compression_model_checkpoint=//sig/{tiny_compression_sig}',
            'optim.updates_per_epoch=3', *datasource_overrides(tiny_data)]


def test_rr_lm_is_a_stock_lm_with_the_same_parameters(base_overrides):
    from audiocraft.models.builders import get_lm_model
    from rr_audiocraft.models import RRLMModel, get_rr_lm_model
    from rr_audiocraft.train import main
    cfg = main.get_xp(base_overrides + ['conditioner=rr_lut']).cfg
    _seed(0)
    stock = get_lm_model(cfg)
    _seed(0)
    ours = get_rr_lm_model(cfg)
    assert isinstance(ours, RRLMModel) and type(stock).__name__ == 'LMModel'
    stock_state, our_state = stock.state_dict(), ours.state_dict()
    assert list(stock_state) == list(our_state)
    assert all(torch.equal(stock_state[k], our_state[k]) for k in stock_state)


def test_hidden_states_are_the_heads_input_with_the_delay_pattern_mask(base_overrides):
    from rr_audiocraft.models import get_rr_lm_model
    from rr_audiocraft.train import main
    cfg = main.get_xp(base_overrides).cfg
    lm = get_rr_lm_model(cfg).eval()
    B, K, T = 2, lm.num_codebooks, 10
    codes = torch.randint(0, lm.card, (B, K, T))
    codes[1, :, 4:] = lm.special_token_id  # sample 1: only its first 4 frames are real (stock's padding)
    conditions = lm.condition_provider(lm.condition_provider.tokenize(
        [_attributes('a bell rings twice'), _attributes('a dog barks')]))
    real = torch.ones(B, K, T, dtype=torch.bool)
    real[1, :, 4:] = False
    with torch.no_grad(), lm.last_hidden_states() as captured:
        output = lm.compute_predictions(codes, [], conditions)
    states, mask = captured[-1], lm.hidden_state_mask(real)
    # Delay pattern [0, 1, 2, 3], valid steps only: a leading special step, then steps 1 .. T.
    S = T + 1
    assert states.shape == (B, S, lm.dim) and mask.shape == (B, S)
    # The output at pattern step s predicts the codes at step s + 1, so the last step predicts nothing.
    assert mask[0].tolist() == [True] * T + [False]
    # Frame t of codebook k sits at step t + k + 1: real frames 0..3 reach step 3 + 3 + 1 = 7 at most.
    assert mask[1].tolist() == [True] * 7 + [False] * (S - 7)
    # The captured states are exactly what the heads read: re-applying the heads gives the logits.
    pattern = lm.pattern_provider.get_pattern(T)
    logits = torch.stack([head(states) for head in lm.linears], dim=1).permute(0, 3, 1, 2)
    reverted, _, _ = pattern.revert_pattern_logits(logits, float('nan'), keep_only_valid_steps=True)
    valid = output.mask
    assert torch.allclose(reverted.permute(0, 2, 3, 1)[valid], output.logits[valid], atol=1e-5)


def _attributes(caption: str):
    from audiocraft.modules.conditioners import ConditioningAttributes
    return ConditioningAttributes(text={'description': caption})


def test_rr_gradients_reach_the_lm_and_not_the_frozen_text_encoder(base_overrides):
    from rr_audiocraft.models import get_rr_lm_model
    from rr_audiocraft.modules import text_representation
    from rr_audiocraft.regularization import masked_pool, rr_loss
    from rr_audiocraft.train import main
    cfg = main.get_xp(base_overrides).cfg
    lm = get_rr_lm_model(cfg).train()
    captions = ['a bell rings twice', 'a dog barks', 'a low hum while a whistle glides', '']
    conditioner = lm.condition_provider.conditioners['description']
    encoder = conditioner.encoder
    text, text_mask = text_representation(conditioner, captions)
    assert not text.requires_grad and text.shape[-1] == 384  # all-MiniLM-L6-v2 width, before projection
    assert text_mask[3].sum() == 0  # the empty caption has no valid token
    nulled = lm.condition_provider(lm.condition_provider.tokenize([_attributes('')] * 4))
    codes = torch.randint(0, lm.card, (4, lm.num_codebooks, 12))
    with lm.last_hidden_states() as captured:
        lm.compute_predictions(codes, [], nulled)
    states, mask = captured[-1], lm.hidden_state_mask(torch.ones_like(codes, dtype=torch.bool))
    keep = text_mask.any(dim=1)
    loss = rr_loss(masked_pool(text, text_mask, 'max')[keep], masked_pool(states, mask, 'max')[keep])
    loss.backward()
    assert loss.item() > 0
    grads = [p.grad for p in lm.transformer.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())
    assert not any(n.startswith('condition_provider.conditioners.description.encoder') for n in lm.state_dict())


@pytest.mark.parametrize('p_drop, expect_rr', [(1.0, True), (0.0, False)])
def test_rr_is_applied_on_cfg_dropped_steps_only(base_overrides, p_drop, expect_rr):
    solver = build_solver(base_overrides + [f'classifier_free_guidance.training_dropout={p_drop}'])
    metrics = run_train_epoch(solver)
    assert metrics['cfg_dropped'] == p_drop
    assert ('rr' in metrics) == expect_rr
    assert ('rr_corr' in metrics) == expect_rr
    if expect_rr:
        assert np.isfinite(metrics['rr']) and metrics['rr'] > 0
    assert np.isfinite(metrics['ce'])


def test_apply_on_all_applies_rr_on_every_step(base_overrides):
    solver = build_solver(base_overrides + ['classifier_free_guidance.training_dropout=0', 'rr.apply_on=all'])
    metrics = run_train_epoch(solver)
    assert metrics['cfg_dropped'] == 0 and np.isfinite(metrics['rr'])


def test_logged_ce_is_the_pure_cross_entropy(base_overrides):
    """With λ > 0 the optimised loss is ce + λ·rr, but `ce` must stay the cross-entropy alone."""
    common = base_overrides + ['conditioner=rr_lut', 'classifier_free_guidance.training_dropout=1.0',
                               'optim.updates_per_epoch=1']
    with_rr = run_train_epoch(build_solver(common + ['rr.weight=3']))
    without = run_train_epoch(build_solver(common + ['rr.weight=0']))
    # One step from identical initial weights and batch: the first-step ce cannot depend on λ.
    assert with_rr['ce'] == pytest.approx(without['ce'], rel=1e-6)
    assert with_rr['rr'] == pytest.approx(without['rr'], rel=1e-5)


def test_the_caption_cache_changes_nothing_but_the_encoder_passes(base_overrides, monkeypatch):
    """T from the cache, filled by the stock encoder pass of the same step, is T of a fresh encoding.

    `rr.apply_on=all` with no CFG dropout: every step is a normal one (the stock pass encodes the
    captions) that also computes L_rr, so with the cache RR never runs the encoder itself.
    """
    import rr_audiocraft.modules.frozen_encoder as frozen_module
    import rr_audiocraft.solvers.rr as rr_solvers
    common = base_overrides + ['classifier_free_guidance.training_dropout=0', 'rr.apply_on=all']
    without_cache = run_train_epoch(build_solver(common + ['rr.text_cache=0']))
    encoded = []
    fresh_encoding = frozen_module.text_representation
    for module in (frozen_module, rr_solvers):  # every place RR encodes captions itself
        monkeypatch.setattr(module, 'text_representation',
                            lambda conditioner, texts: encoded.append(texts) or fresh_encoding(conditioner, texts))
    cached = build_solver(common)
    with_cache = run_train_epoch(cached)
    cache = cached.model.condition_provider.conditioners['description'].caption_cache
    assert encoded == [] and with_cache['rr_text_cached'] == 1.0 and len(cache) > 0
    assert with_cache['rr'] == pytest.approx(without_cache['rr'], rel=1e-4)
    assert with_cache['ce'] == pytest.approx(without_cache['ce'], rel=1e-4)


def test_weight_zero_trains_exactly_like_the_stock_solver(base_overrides):
    common = base_overrides + ['conditioner=rr_lut', 'classifier_free_guidance.training_dropout=0.5',
                               'optim.updates_per_epoch=4']
    # Each solver is seeded, built and trained in turn, as one `dora run` would do it.
    stock = build_solver(common, solver_name='audiogen')
    stock_metrics = run_train_epoch(stock)
    ours = build_solver(common + ['rr.weight=0'])
    our_metrics = run_train_epoch(ours)
    assert type(stock).__name__ == 'AudioGenSolver' and type(ours).__name__ == 'RRAudioGenSolver'
    assert our_metrics['ce'] == stock_metrics['ce']
    assert our_metrics['grad_norm'] == stock_metrics['grad_norm']
    assert 'rr' in our_metrics  # RR was measured on the dropped steps, without touching training
    stock_state, our_state = stock.model.state_dict(), ours.model.state_dict()
    assert list(stock_state) == list(our_state)
    assert all(torch.equal(stock_state[k], our_state[k]) for k in stock_state)


@pytest.mark.parametrize('override, message', [
    ('rr.pooling=mean', "rr.pooling='mean' is not supported; allowed values: ['max', 'average']"),
    ('rr.weight=-1', "rr.weight=-1 must be a finite number >= 0"),
    ('rr.apply_on=never', "rr.apply_on='never' is not supported; allowed values: ['cfg', 'all']"),
    ('dataset.batch_size=1', "rr.weight=3.0 needs at least 2 samples per step"),
    ('rr.condition=lyrics', "rr.condition='lyrics' names no conditioner; allowed values: ['description']"),
    ('rr.text_cache=-1', "rr.text_cache=-1 must be a whole number of captions >= 0"),
    # Stock would silently end each epoch after 10 of the 50 updates (80 segments / 8 per batch).
    ('optim.updates_per_epoch=50', "optim.updates_per_epoch=50 but the train loader ends after 10 batches "
                                   "(dataset.train.num_samples=80 at dataset.batch_size=8): every epoch would stop "
                                   "there and train 20 steps instead of 100. Set dataset.train.num_samples=400"),
])
def test_bad_rr_settings_fail_before_anything_is_built(base_overrides, override, message, monkeypatch):
    from audiocraft.solvers.musicgen import MusicGenSolver

    def must_not_build(self):
        raise AssertionError('the model was built before the RR settings were checked')
    monkeypatch.setattr(MusicGenSolver, 'build_model', must_not_build)
    with pytest.raises(ValueError) as error:
        build_solver(base_overrides + [override])
    assert message in str(error.value)


def test_batch_of_one_is_fine_without_rr(base_overrides):
    from omegaconf import OmegaConf
    from rr_audiocraft.solvers import validate_rr_config
    from rr_audiocraft.train import main
    cfg = main.get_xp(base_overrides + ['dataset.batch_size=1', 'rr.weight=0']).cfg
    validate_rr_config(cfg, world_size=1)
    cfg = main.get_xp(base_overrides + ['dataset.batch_size=1', 'rr.gather=true']).cfg
    validate_rr_config(cfg, world_size=4)  # 4 ranks of 1 sample, gathered: 4 samples form pairs
    with pytest.raises(ValueError, match='set rr.gather=true'):
        validate_rr_config(OmegaConf.merge(cfg, {'rr': {'gather': False}}), world_size=4)


def test_batches_read_back_from_the_cache_are_not_held_to_the_loader_length(base_overrides, tmp_path):
    # Stock sizes the loader of cached batches (cache.path, cache.write=false) to updates_per_epoch itself:
    # the check of the train loader's length must not stop such a run.
    # (Stock reads them with dataset.num_workers threads: at least 1, see test_token_cache.py.)
    from rr_audiocraft.data.token_cache import InfoBatchLoader
    solver = build_solver(base_overrides + ['optim.updates_per_epoch=50', f'cache.path={tmp_path}',
                                            'cache.write=false', 'dataset.num_workers=1'])
    assert solver.dataloaders['train'] is solver._cached_batch_loader
    assert isinstance(solver._cached_batch_loader, InfoBatchLoader)  # the reader that returns info batches
    assert len(solver.dataloaders['original_train']) == 10 < 50


# ----------------------------------------------------------------------------------------------
# Issue 14: what RR pools, what the pair check counts, what the caption cache keeps, what every step logs.

def test_a_clip_shorter_than_the_segment_pools_only_its_real_frames_into_a(base_overrides, monkeypatch):
    """Stock pads a short clip with zeros and, with `tokens.padding_with_special_token=false` (its default and
    the paper recipes'), encodes the padding into ordinary codes: A must still pool the real frames only."""
    import math
    import rr_audiocraft.solvers.rr as rr_solvers
    solver = build_solver(base_overrides + ['classifier_free_guidance.training_dropout=1', 'dataset.segment_duration=6',
                                            'tokens.padding_with_special_token=false', 'optim.updates_per_epoch=1'])
    pooled_a: tp.List[torch.Tensor] = []
    real_rr_loss = rr_solvers.rr_loss
    monkeypatch.setattr(rr_solvers, 'rr_loss', lambda text, audio: pooled_a.append(audio.detach().clone())
                        or real_rr_loss(text, audio))
    heads_input: tp.List[torch.Tensor] = []
    lm = solver.model
    handle = lm.linears[0].register_forward_pre_hook(lambda _m, args: heads_input.append(args[0].detach().clone()))
    batch = next(iter(solver.dataloaders['train']))
    audio, infos = batch
    try:
        solver.run_stage('train', lambda: solver.run_step(2, batch, {}))
    finally:
        handle.remove()
    # The 4 s clips of the benchmark in 6 s segments: every clip is padded.
    frame_rate, sample_rate = solver.compression_model.frame_rate, solver.cfg.sample_rate
    real = [math.floor(info.n_frames / info.sample_rate * frame_rate) for info in infos]
    with torch.no_grad():
        tokens = solver.compression_model.encode(audio.to(solver.device))[0]
    K, T = tokens.shape[1:]
    assert all(r < T for r in real) and audio.shape[-1] == 6 * sample_rate
    states = heads_input[-1]
    S = states.shape[1]
    # Delay pattern: codebook k of frame t is the target at step t + k + 1; the state at step s predicts step s + 1.
    steps = torch.arange(S)
    mask = torch.stack([(steps + 1 < S) & (steps + 1 <= r + K - 1) for r in real])
    expected = torch.stack([states[b][mask[b]].max(dim=0).values for b in range(len(real))])
    assert len(pooled_a) == 1
    torch.testing.assert_close(pooled_a[0], expected)


def test_the_pair_check_counts_what_audiogen_mixing_leaves_the_lm(base_overrides):
    from rr_audiocraft.solvers import validate_rr_config
    from rr_audiocraft.train import main
    mixing = ['+dataset.train.aug_p=0.5', '+dataset.train.mix_p=0.5']
    # 3 loaded per rank, int(0.5 * 3) = 1 reach the LM: no pair, RR would silently never act.
    cfg = main.get_xp(base_overrides + ['dataset.batch_size=3'] + mixing).cfg
    with pytest.raises(ValueError) as error:
        validate_rr_config(cfg, world_size=1)
    assert ("rr.weight=3.0 needs at least 2 samples per step to form pairs, but dataset.train.mix_p=0.5 of 3 "
            "loaded per rank (AudioGen mixing, aug_p=0.5) gives 1 per rank") in str(error.value)
    validate_rr_config(main.get_xp(base_overrides + ['dataset.batch_size=4'] + mixing).cfg, world_size=1)  # 2: fine
    # dataset.train.batch_size is what the train loader loads, when set.
    cfg = main.get_xp(base_overrides + ['dataset.batch_size=8', '+dataset.train.batch_size=2'] + mixing).cfg
    with pytest.raises(ValueError, match='of 2 loaded per rank'):
        validate_rr_config(cfg, world_size=1)


def _dataset_captions(data_dir) -> tp.Set[str]:
    import json
    captions = set()
    for sidecar in (data_dir / 'train').glob('*.json'):
        description = json.loads(sidecar.read_text())['description']
        # As the stock SoundInfo reads them: stripped, lower-cased.
        captions.update(c.strip().lower() for c in ([description] if isinstance(description, str) else description))
    return captions


def test_the_caption_cache_keeps_no_one_off_mixed_caption(base_overrides, tiny_data):
    """With AudioGen's mixing every mixed caption is a fresh concatenation of two: caching it only fills the
    cache with strings that never recur (and costs a device sync per normal step)."""
    solver = build_solver(base_overrides + ['+dataset.train.aug_p=1.0', '+dataset.train.mix_p=0.5',
                                            'dataset.batch_size=8', 'classifier_free_guidance.training_dropout=0',
                                            'optim.updates_per_epoch=3'])
    originals = _dataset_captions(tiny_data)
    _seed(0)
    mixed = [info.description for info in next(iter(solver.dataloaders['train']))[1]]
    assert any(caption not in originals for caption in mixed)  # the loader mixes
    run_train_epoch(solver)
    conditioner = solver.model.condition_provider.conditioners['description']
    cache = conditioner.caption_cache
    assert set(cache.entries) <= originals | {''}, sorted(set(cache.entries) - originals)[:3]


def test_every_step_logs_the_same_keys_so_ranks_average_alike(base_overrides):
    """flashy averages the epoch metrics across ranks by position: a rank whose epoch had no RR step (no pair
    kept, or no CFG drop) must still log every key, in the same order, or the all-reduce mismatches."""
    solver = build_solver(base_overrides + ['classifier_free_guidance.training_dropout=0.3',
                                            'optim.updates_per_epoch=4'])
    steps: tp.List[dict] = []
    stock_run_step = solver.run_step

    def run_step(idx, batch, metrics):
        metrics = stock_run_step(idx, batch, metrics)
        steps.append({k: float(v) for k, v in metrics.items()})
        return metrics
    solver.run_step = run_step
    epoch = run_train_epoch(solver)
    assert [s['cfg_dropped'] for s in steps] == [1., 0., 1., 0.]  # the seeded CFG draws: both kinds of step
    assert all(list(s) == list(steps[0]) for s in steps), [list(s) for s in steps]
    # The epoch's `rr` is still L_rr averaged over the steps that computed it.
    rr_steps = [s for s in steps if s['rr_steps']]
    assert len(rr_steps) == 2 and epoch['rr_steps'] == 0.5
    assert epoch['rr'] == pytest.approx(sum(s['rr'] for s in rr_steps) / len(rr_steps), rel=1e-6)
    assert -1 <= epoch['rr_corr'] <= 1


def test_every_bad_setting_of_a_run_is_reported_together(base_overrides):
    from rr_audiocraft.solvers import validate_rr_config
    from rr_audiocraft.train import main
    cfg = main.get_xp(base_overrides + ['rr.pooling=median', 'rr.apply_on=never', 'compression_model_checkpoint=null',
                                        'rr.weight=-2']).cfg
    with pytest.raises(ValueError) as error:
        validate_rr_config(cfg, world_size=1)
    message = str(error.value)
    assert message.startswith('Config check failed, 4 problems:')
    for problem in ("rr.pooling='median' is not supported", "rr.apply_on='never' is not supported",
                    'compression_model_checkpoint is not set', 'rr.weight=-2 must be a finite number >= 0'):
        assert problem in message, message
