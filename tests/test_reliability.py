"""Training survives kills, bad data and several ranks, and stops with a clear message where it cannot go on.

Everything runs the real stack: `dora run` subprocesses for kill and resume, in-process RR solvers on the
tiny configs for data and model checks, two gloo processes for the ranks. Helpers from conftest are
imported inside functions: the rank workers are spawned processes that import this module, and
conftest creates a session folder when it is imported.
"""
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import time
import typing as tp
from pathlib import Path

import numpy as np
import pytest
import torch


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_solver(overrides: tp.List[str]):
    """Compose the config as `dora run` would and build the solver it names (seeded as train.py seeds)."""
    from rr_audiocraft.train import get_solver, main
    xp = main.get_xp(overrides)
    _seed(xp.cfg.seed)
    with xp.enter():
        return get_solver(xp.cfg)


def lm_overrides(data_dir: Path, compression: str, solver: str = 'rr_audiogen/tiny') -> tp.List[str]:
    from conftest import datasource_overrides
    return [f'solver={solver}', f'compression_model_checkpoint={compression}', 'num_threads=1',
            'dataset.segment_duration=2', *datasource_overrides(data_dir)]


@pytest.fixture(scope='module')
def compression(tiny_data, tmp_path_factory) -> str:
    """A tiny EnCodec checkpoint (`solver=rr_compression/tiny`, RVQ k-means-initialised on the clips, not
    trained): these checks need its shapes and real tokens, not its quality, and training one takes minutes."""
    from rr_audiocraft.bench import build_compression_checkpoint
    return str(build_compression_checkpoint(tiny_data, 256, tmp_path_factory.mktemp('encodec') / 'encodec.th'))


def small_dataset(source: Path, dest: Path, num_clips: int = 4) -> tp.List[Path]:
    """Copy `num_clips` train clips (wav + sidecar) of the synthetic data; one manifest for all splits.

    Returns:
        list of Path: the copied wav files, in manifest order.
    """
    clips = dest / 'clips'
    clips.mkdir(parents=True)
    wavs = []
    for wav in sorted((source / 'train').glob('*.wav'))[:num_clips]:
        shutil.copy(wav, clips / wav.name)
        shutil.copy(wav.with_suffix('.json'), clips / wav.with_suffix('.json').name)
        wavs.append(clips / wav.name)
    write_manifest(dest, wavs)
    return wavs


def write_manifest(dest: Path, wavs: tp.List[Path]) -> None:
    lines = [json.dumps({'path': str(w), 'duration': 4.0, 'sample_rate': 16000, 'amplitude': None,
                         'weight': None, 'info_path': None}) for w in wavs]
    for split in ('train', 'valid', 'test'):
        (dest / 'egs' / split).mkdir(parents=True, exist_ok=True)
        (dest / 'egs' / split / 'data.jsonl').write_text('\n'.join(lines) + '\n')


def edit_sidecar(wav: Path, **changes: tp.Any) -> Path:
    """Set (or, with the value `...`, delete) keys of a clip's sidecar."""
    path = wav.with_suffix('.json')
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------------------------
# Kill and resume.

def _history(folder: Path) -> tp.List[dict]:
    try:
        return json.loads((folder / 'history.json').read_text())
    except (OSError, json.JSONDecodeError):
        return []  # not written yet, or being rewritten


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_resumes_and_completes(tiny_data, compression, tmp_path):
    from conftest import DORA, REPO_ROOT, run_dora, xp_dir
    from rr_audiocraft.train import main
    epochs = 4
    overrides = lm_overrides(tiny_data, compression) + [
        f'optim.epochs={epochs}', 'optim.updates_per_epoch=4', 'checkpoint.save_every=1',
        'dataset.valid.num_samples=8', 'generate.lm.gen_duration=1']
    folder = xp_dir(main.get_xp(overrides).sig)
    log = open(tmp_path / 'first_run.log', 'w')
    # A session of its own, so that the kill reaches this run and nothing else.
    proc = subprocess.Popen(DORA + ['run', *overrides], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        # AudioCraft writes the checkpoints, then history.json: two entries = epoch 2 is on disk.
        while len(_history(folder)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        # Then wait for a progress line of epoch 3's training (4 updates: each is logged): mid-epoch.
        progress = re.compile(r'Train.*Epoch 3.*\b[1-3]/4\b')
        solver_log = folder / 'solver.log.0'
        while (proc.poll() is None and time.time() < deadline
               and not (solver_log.exists() and progress.search(solver_log.read_text()))):
            time.sleep(0.1)
        assert proc.poll() is None, \
            f"the run ended before it could be killed:\n{(tmp_path / 'first_run.log').read_text()[-3000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    before = _history(folder)
    assert len(before) == 2, f"killed after {len(before)} epochs, expected mid-epoch 3"
    mtimes = {e: os.stat(folder / f'checkpoint_{e}.th').st_mtime_ns for e in (1, 2)}

    run_dora('run', *overrides, timeout=600)  # the same command
    after = _history(folder)
    assert len(after) == epochs
    # The two completed epochs are kept as they were, not re-run (their metrics would differ in timing).
    assert after[:2] == before
    assert all('train' in stages for stages in after)
    # Only a restored run has past metrics to replay.
    assert 'Replaying past metrics' in (folder / 'solver.log.0').read_text()
    # The epoch checkpoints of the completed epochs were not rewritten.
    assert all(os.stat(folder / f'checkpoint_{e}.th').st_mtime_ns == mtimes[e] for e in (1, 2))


# ----------------------------------------------------------------------------------------------
# Ranks: `rr.gather` semantics with two gloo processes.

def _rank_worker(rank: int, world_size: int, store: str, out_dir: str) -> None:
    import datetime
    import flashy
    from rank_fixtures import rr_term, toy_batch, toy_net
    from rr_audiocraft.solvers.rr import check_finite_rr_inputs
    # A bounded timeout: a rank left waiting in a collective fails the test instead of hanging it.
    torch.distributed.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=world_size,
                                         timeout=datetime.timedelta(seconds=60))
    try:
        inputs = [t.chunk(world_size)[rank] for t in toy_batch()]
        results = {}
        for gather in (True, False):
            for eager in (True, False):
                net = toy_net()
                loss = rr_term(net, *inputs, gather=gather)
                # Gradient averaging as the stock step does it: eager hooks (optim.eager_sync) or after backward.
                if eager:
                    with flashy.distrib.eager_sync_model(net):
                        loss.backward()
                else:
                    loss.backward()
                    flashy.distrib.sync_model(net)
                results[(gather, eager)] = (loss.detach(), [p.grad.clone() for p in net.parameters()])
        # Without the gather, a NaN in one rank's hidden states only: every rank stops (the solver's check),
        # none is left waiting in the gradient all-reduce.
        audio = torch.ones(4, 5)
        if rank == 1:
            audio[2, 3] = float('nan')
        try:
            check_finite_rr_inputs(torch.ones(4, 3), audio, across_ranks=True, epoch=7)
            results['non_finite'] = None
        except RuntimeError as exc:
            results['non_finite'] = str(exc)
        torch.save(results, Path(out_dir) / f'rank{rank}.pt')
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_gather_equals_one_process_on_the_concatenated_batch_and_stop_together(tmp_path):
    import torch.multiprocessing as mp
    from rank_fixtures import single_process, toy_batch
    world_size = 2
    mp.spawn(_rank_worker, args=(world_size, str(tmp_path / 'store'), str(tmp_path)), nprocs=world_size, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(world_size)]
    full = toy_batch()
    full_loss, full_grads = single_process(full)
    halves = [single_process([t.chunk(world_size)[r] for t in full]) for r in range(world_size)]
    for eager in (True, False):
        for rank in ranks:
            # rr.gather=true: every rank has the L_rr and (after averaging) the gradients of one process
            # on the concatenated batch.
            loss, grads = rank[(True, eager)]
            torch.testing.assert_close(loss, full_loss)
            for g, ref in zip(grads, full_grads, strict=True):
                torch.testing.assert_close(g, ref)
        for r, rank in enumerate(ranks):
            # rr.gather=false: each rank's L_rr is its own batch's; gradients are the ranks' average.
            loss, grads = rank[(False, eager)]
            torch.testing.assert_close(loss, halves[r][0])
            for i, g in enumerate(grads):
                torch.testing.assert_close(g, (halves[0][1][i] + halves[1][1][i]) / 2)
    # The two settings really differ (fewer pairs per rank without the gather).
    assert not torch.allclose(ranks[0][(False, True)][0], full_loss)
    for rank in ranks:
        assert rank['non_finite'] == ("RR: non-finite values in the pooled LM hidden states (A) (epoch 7, on some "
                                      "rank); stopping before they reach the loss")


# ----------------------------------------------------------------------------------------------
# Bad data: one clear message naming the file, at start-up.

def _break_missing_audio(wavs):
    target = wavs[1].with_name('not_there.wav')
    write_manifest(wavs[0].parents[1], wavs[:1] + [target] + wavs[2:])
    return target, "audio file is missing"


def _break_empty_audio(wavs):
    wavs[1].write_bytes(b'')
    return wavs[1], "audio file is empty (0 bytes)"


def _break_no_sidecar(wavs):
    wavs[1].with_suffix('.json').unlink()
    return wavs[1], "no sidecar 0001.json"


def _break_sidecar_not_json(wavs):
    path = wavs[1].with_suffix('.json')
    path.write_text('{"description": "a bell rings",')
    return path, "sidecar is not readable JSON"


def _break_sidecar_not_object(wavs):
    path = wavs[1].with_suffix('.json')
    path.write_text('["a bell rings"]')
    return path, "sidecar must be a JSON object, got list"


def _break_missing_description(wavs):
    return edit_sidecar(wavs[1], description=...), "misses required key(s) ['description']"


def _break_empty_description(wavs):
    return edit_sidecar(wavs[1], description='  '), "'description' is empty"


def _break_null_description(wavs):
    return edit_sidecar(wavs[1], description=None), "'description' is empty (null)"


def _break_description_type(wavs):
    return edit_sidecar(wavs[1], description=42), "'description': expected a string or a non-empty list of " \
                                                  "strings, got int 42"


BAD_DATA = {
    'missing audio file': _break_missing_audio,
    'empty audio file': _break_empty_audio,
    'no sidecar': _break_no_sidecar,
    'sidecar not JSON': _break_sidecar_not_json,
    'sidecar not an object': _break_sidecar_not_object,
    'missing description': _break_missing_description,
    'empty description': _break_empty_description,
    'null description': _break_null_description,
    'description of the wrong type': _break_description_type,
}


@pytest.mark.parametrize('case', list(BAD_DATA))
def test_bad_data_fails_at_start_up_naming_the_file(case, tiny_data, compression, tmp_path, monkeypatch):
    from audiocraft.solvers.musicgen import MusicGenSolver
    from rr_audiocraft.data.validate import DatasetError
    wavs = small_dataset(tiny_data, tmp_path)
    bad_file, problem = BAD_DATA[case](wavs)

    def must_not_build(self):
        raise AssertionError('the model was built before the data was checked')
    monkeypatch.setattr(MusicGenSolver, 'build_model', must_not_build)
    with pytest.raises(DatasetError) as error:
        build_solver(lm_overrides(tmp_path, compression))
    message = str(error.value)
    assert f"{bad_file}: " in message and problem in message, message
    # One problem, said once, although three manifests (train, valid, test) list the file.
    assert message.count(str(bad_file)) == 1 and '1 problem(s)' in message, message


def test_a_broken_manifest_line_is_named(tiny_data, compression, tmp_path):
    from rr_audiocraft.data.validate import DatasetError
    small_dataset(tiny_data, tmp_path)
    manifest = tmp_path / 'egs' / 'valid' / 'data.jsonl'
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1][:-5]  # truncated JSON
    manifest.write_text('\n'.join(lines) + '\n')
    with pytest.raises(DatasetError, match=re.escape(f"Dataset manifest {manifest}, line 2: not an AudioMeta entry")):
        build_solver(lm_overrides(tmp_path, compression))


def test_music_sidecar_with_wrong_types_names_the_file_and_keys(tiny_data, compression, tmp_path):
    from rr_audiocraft.data.validate import DatasetError
    wavs = small_dataset(tiny_data, tmp_path)
    bad = edit_sidecar(wavs[2], bpm='fast', moods=5, title=['a', 'b'])
    with pytest.raises(DatasetError) as error:
        build_solver(lm_overrides(tmp_path, compression, solver='rr_musicgen/tiny'))
    message = str(error.value)
    for key, expected in [('bpm', 'expected a number or null, got str "fast"'),
                          ('moods', 'expected a string or a list of strings, got int 5'),
                          ('title', 'expected a string or null, got list')]:
        assert f"{bad}: '{key}': {expected}" in message, message


def test_bad_data_through_dora_run_ends_in_one_message(tiny_data, compression, tmp_path):
    from conftest import run_dora
    wavs = small_dataset(tiny_data, tmp_path)
    bad_file, problem = _break_empty_audio(wavs)
    proc = run_dora('run', *lm_overrides(tmp_path, compression), check=False, timeout=300)
    assert proc.returncode != 0
    last = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    error_lines = [line for line in last if line.startswith('rr_audiocraft.data.validate.DatasetError')]
    assert len(error_lines) == 1 and 'Dataset check failed' in error_lines[0], proc.stderr[-3000:]
    assert f"{bad_file}: {problem}" in proc.stderr


def test_undecodable_audio_is_skipped_with_a_warning_naming_it(tiny_data, compression, tmp_path, caplog):
    """A non-empty file that does not decode passes the start-up check (decoding every file would take
    minutes on a real dataset); the stock loader skips it with a warning naming it, and training goes on."""
    wavs = small_dataset(tiny_data, tmp_path)
    wavs[1].write_bytes(b'RIFF\x00\x00garbage, not audio' * 64)
    solver = build_solver(lm_overrides(tmp_path, compression) + ['optim.updates_per_epoch=4'])
    with caplog.at_level(logging.WARNING, logger='audiocraft.data.audio_dataset'):
        _seed(0)
        metrics = solver.run_stage('train', solver.train)
    warnings = [r.getMessage() for r in caplog.records if 'Error opening file' in r.getMessage()]
    assert warnings and all(str(wavs[1]) in w for w in warnings)
    assert np.isfinite(metrics['ce']) and np.isfinite(metrics['rr'])


# ----------------------------------------------------------------------------------------------
# Non-finite values reaching RR, and mismatched model settings.

@pytest.fixture(scope='module')
def dropped_step_solver(tiny_data, compression):
    """An RR solver whose every step is CFG-dropped (RR on), one update per epoch."""
    return build_solver(lm_overrides(tiny_data, compression) + [
        'classifier_free_guidance.training_dropout=1', 'optim.updates_per_epoch=1'])


@pytest.mark.parametrize('where, message', [
    ('text', "RR: non-finite values in the pooled text-encoder outputs (T)"),
    ('hidden', "RR: non-finite values in the pooled LM hidden states (A)"),
])
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_values_stop_training_with_a_message_naming_rr(dropped_step_solver, where, message, value):
    solver = dropped_step_solver
    if where == 'text':
        # A broken text encoder: its embeddings turn every caption's encoding non-finite.
        encoder = solver.model.condition_provider.conditioners['description'].encoder
        param = encoder.embeddings.word_embeddings.weight
    else:
        # A broken LM: its final norm (just before the heads, where A is read) goes non-finite.
        param = solver.model.out_norm.weight
    before = {k: v.clone() for k, v in solver.model.state_dict().items()}
    saved = param.detach().clone()
    with torch.no_grad():
        param.fill_(value)
    try:
        with pytest.raises(RuntimeError) as error:
            solver.run_stage('train', solver.train)
    finally:
        with torch.no_grad():
            param.copy_(saved)
    assert message in str(error.value)
    # The check runs before the backward and the optimizer: no weight was updated (nor made non-finite).
    after = solver.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not solver.optimizer.state  # AdamW never stepped: the failing step was the solver's first


@pytest.mark.parametrize('override, expected', [
    ('transformer_lm.card=512', "transformer_lm.card=512 but the compression model has 256"),
    ('transformer_lm.n_q=8', "transformer_lm.n_q=8 but the compression model has 4"),
])
def test_lm_settings_that_do_not_match_the_compression_model_fail_at_start_up(
        tiny_data, compression, override, expected):
    with pytest.raises(ValueError) as error:
        build_solver(lm_overrides(tiny_data, compression) + [override])
    message = str(error.value)
    assert message.startswith("LM settings do not match the compression model") and expected in message
    key = override.split('=')[0]
    assert f"Set {key}=" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # not chained to the stock assert
