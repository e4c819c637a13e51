"""Every trained LM renders the test captions and the judge scores them (cached per XP), and the unconditional
floor: the first baseline LM given empty captions."""
import json
import time
import typing as tp
from pathlib import Path

import soundfile as sf
import torch

from ..assets import sha256_of
from ..metrics.judge import OUTCOME_KEYS
from ..metrics.summary import JUDGE_METRICS
from ..models import RRAudioGen
from ..table1 import BASELINE, Row
from .progress import log


def render_and_judge(sheep: tp.Any, captions: tp.List[tp.Optional[str]], judge: tp.Any, wavs: tp.List[tp.Any],
                     truths: tp.List[dict], sample_dir: Path, result_path: Path, duration: float,
                     gen_seed: int, device: str = 'cpu') -> tp.Tuple[dict, bool]:
    """The XP's LM renders `captions` (None: no caption), the judge scores them against `truths`.

    Cached in `result_path` while it describes the same thing: the same checkpoint (its sha256),
    generation settings, captions and judge (`Judge.fitted_on`), with every sample still on disk.
    Cached metrics that lack an outcome the scores now have (`OUTCOME_KEYS`: a metric was added since)
    are recomputed from the samples on disk, without generating again.
    Samples go to `sample_dir/<reference clip stem>.wav`, so each pairs with its reference.

    Returns:
        tuple: the judge's metrics and whether they came from the cache.
    """
    cfg, sig = sheep.xp.cfg, sheep.xp.sig
    sample_paths = [sample_dir / f"{truth['name']}.wav" for truth in truths]
    # top_k: the solver config's `generate.lm.top_k` (16 of the codec's 256 bins for the demo's LMs).
    stamp = {'checkpoint_sha256': sha256_of(sheep.xp.folder / 'checkpoint.th'), 'judge': judge.fitted_on,
             'generation': {'seed': gen_seed, 'duration': duration, 'top_k': int(cfg.generate.lm.top_k),
                            'temperature': 1.0,
                            'cfg_coef': float(cfg.classifier_free_guidance.inference_coef),
                            'captions': captions}}
    if device != 'cpu':  # another device draws other samples from the same seed (CPU records keep their stamp)
        stamp['generation']['device'] = device
    cached = json.loads(result_path.read_text()) if result_path.exists() else {}
    if cached.get('stamp') == stamp and all(path.is_file() for path in sample_paths):
        missing = sorted(set(OUTCOME_KEYS) - set(cached['metrics']['clip_outcomes']))
        if not missing:
            return cached['metrics'], True
        log('generate', f"{sig}: the scores on record lack {', '.join(missing)}: re-judging its samples on disk")
        samples = [sf.read(path, dtype='float32') for path in sample_paths]
        metrics = judge.score([wav for wav, _ in samples], truths, sample_rate=samples[0][1], references=wavs)
        _write_result(result_path, stamp, metrics)
        return metrics, True
    model = RRAudioGen.get_pretrained(f'//sig/{sig}', device=device)
    model.set_generation_params(use_sampling=True, top_k=stamp['generation']['top_k'],
                                temperature=stamp['generation']['temperature'], duration=duration,
                                cfg_coef=stamp['generation']['cfg_coef'])
    torch.manual_seed(gen_seed)
    with torch.no_grad():
        generated = model.generate(captions)[:, 0].float().cpu().numpy()  # [N, T]; the judge runs on the CPU
    sample_dir.mkdir(parents=True, exist_ok=True)
    for path, wav in zip(sample_paths, generated, strict=True):
        sf.write(path, wav, model.sample_rate)
    metrics = judge.score(list(generated), truths, sample_rate=model.sample_rate, references=wavs)
    _write_result(result_path, stamp, metrics)
    return metrics, False


def _write_result(result_path: Path, stamp: tp.Dict[str, tp.Any], metrics: tp.Dict[str, tp.Any]) -> None:
    """Writes `render_and_judge`'s record whole or not at all (an interrupted write leaves no half file)."""
    result_path.parent.mkdir(parents=True, exist_ok=True)
    partial = result_path.with_suffix('.partial')
    partial.write_text(json.dumps({'stamp': stamp, 'metrics': metrics}))
    partial.replace(result_path)


def generate_and_judge(sheeps: tp.List[tp.Any], judge: tp.Any, wavs: tp.List[tp.Any], truths: tp.List[dict],
                       out_dir: Path, duration: float, gen_seed: int, device: str = 'cpu') -> tp.List[dict]:
    """Every trained LM generates the test captions; the judge scores them against the captions.

    Results are kept per XP signature in `out_dir/xps/SIG/judge.json` (Dora's own files are left as
    Dora writes them; see `render_and_judge` for when they are reused). Samples go to
    `out_dir/samples/<row>/seed<k>/<reference clip stem>.wav`, so each pairs with its reference.
    """
    captions = [truth['description'] for truth in truths]
    results = []
    for position, sheep in enumerate(sheeps, 1):
        cfg, sig = sheep.xp.cfg, sheep.xp.sig
        row = Row.from_cfg(cfg)
        label = f"pool={row.pool} cfg={row.cfg:g} λ={row.weight:g} seed={cfg.seed}"
        sample_dir = out_dir / 'samples' / f"pool-{row.pool}_cfg-{row.cfg:g}_lambda-{row.weight:g}" / f"seed{cfg.seed}"
        start = time.time()
        metrics, cached = render_and_judge(sheep, captions, judge, wavs, truths, sample_dir,
                                           out_dir / 'xps' / sig / 'judge.json', duration, gen_seed, device)
        log('generate', f"[{position}/{len(sheeps)}] {sig} ({label}): " + (
            'cached' if cached else f"{len(captions)} clips in {time.time() - start:.0f} s, count acc "
                                    f"{metrics['count_acc']:.3f}, source F1 {metrics['source_f1']:.3f}"))
        history = json.loads((sheep.xp.folder / 'history.json').read_text())
        valid = history[-1]['valid']
        metrics = {**metrics, 'valid_ce': valid['ce'], 'valid_rr': valid.get('rr'),
                   'valid_rr_corr': valid.get('rr_corr'),
                   'train_rr': history[-1]['train'].get('rr')}
        results.append({'sig': sig, 'row': row.record(), 'seed': int(cfg.seed), 'samples': str(sample_dir),
                        'metrics': metrics})
    return results


def unconditional_floor(sheeps: tp.List[tp.Any], judge: tp.Any, wavs: tp.List[tp.Any], truths: tp.List[dict],
                        out_dir: Path, duration: float, gen_seed: int, device: str = 'cpu') -> tp.Dict[str, tp.Any]:
    """The floor an LM sets without its captions: the first baseline XP (CFG dropout 0.1, no RR) given
    empty captions, its samples scored against the real ones (samples in `out_dir/samples/unconditional`)."""
    sheep = next(s for s in sheeps if Row.from_cfg(s.xp.cfg) == BASELINE)
    start = time.time()
    metrics, cached = render_and_judge(sheep, [None] * len(truths), judge, wavs, truths,
                                       out_dir / 'samples' / 'unconditional',
                                       out_dir / 'xps' / sheep.xp.sig / 'unconditional.json', duration, gen_seed,
                                       device)
    log('generate', f"unconditional floor ({sheep.xp.sig} given empty captions): " + (
        'cached' if cached else f"{time.time() - start:.0f} s") + ', ' +
        ', '.join(f"{key} {metrics[key]:.3f}" for key in JUDGE_METRICS))
    return {**metrics, 'sig': sheep.xp.sig, 'seed': int(sheep.xp.cfg.seed)}
