"""Start-up check of an RR run's settings: every problem of the `rr` group (and the settings RR depends
on) in one message, before anything is built.

The RR solvers call `validate_rr_config` first thing in their constructor; `train.main` prints a
`ConfigError` (and the other start-up refusals, see `STARTUP_ERRORS`) as one message without a
traceback and exits non-zero.
"""
import math
import typing as tp

import omegaconf

from .regularization import POOLING_MODES

APPLY_ON = ('cfg', 'all')


class ConfigError(ValueError):
    """Settings that cannot train; the message lists every problem found, one per line."""
    def __init__(self, problems: tp.Sequence[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"Config check failed, {len(self.problems)} problems:\n" + '\n'.join(
                f"  - {problem}" for problem in self.problems)
        super().__init__(message)


def split_batches_over_ranks(cfg: omegaconf.DictConfig, world_size: int) -> tp.List[str]:
    """Turn the global batch sizes of a config into per-rank ones, in place, as stock AudioCraft does.

    `dataset.batch_size` and the batch size of each split that sets its own are divided by the world size.
    Returns the sizes that do not divide evenly (the config is then left as it was), else an empty list.
    """
    nodes = [('dataset', cfg.dataset)] + [(f'dataset.{split}', cfg.dataset[split])
                                          for split in ('train', 'valid', 'evaluate', 'generate')
                                          if split in cfg.dataset and 'batch_size' in cfg.dataset[split]]
    uneven = [f"{key}.batch_size={node.batch_size} is not divisible by the world size {world_size}"
              for key, node in nodes if node.batch_size % world_size != 0]
    if not uneven:
        for _, node in nodes:
            node.batch_size //= world_size
    return uneven


def lm_batch_size(cfg: omegaconf.DictConfig) -> tp.Tuple[int, tp.Optional[str]]:
    """Samples per step the LM receives on one rank, and how that follows from the data settings.

    The train loader yields `dataset.train.batch_size` (else `dataset.batch_size`) items per rank, as
    `train.get_solver` leaves them. With AudioGen's mixing on (`dataset.train.aug_p > 0`), stock
    `SoundDataset.collater` then keeps `int(mix_p · batch)` of them on every batch (mixed pairs, or a
    random subset on the batches it does not mix).

    Returns:
        tuple: the LM's per-rank batch, and None or a phrase saying how mixing reduced it.
    """
    train = cfg.dataset.get('train') or {}
    loaded = train.get('batch_size', None) or cfg.dataset.batch_size
    aug_p, mix_p = train.get('aug_p', 0) or 0, train.get('mix_p', 0) or 0
    if aug_p > 0 and mix_p > 0:
        kept = int(mix_p * loaded)
        return kept, f"dataset.train.mix_p={mix_p} of {loaded} loaded per rank (AudioGen mixing, aug_p={aug_p})"
    return loaded, None


def rr_config_problems(cfg: omegaconf.DictConfig, world_size: int = 1) -> tp.List[str]:
    """Every problem of the `rr` group and of what RR relies on, each naming the key and what it allows.

    `cfg.dataset.batch_size` is the per-rank batch, as the solvers receive it from `train.get_solver`.
    """
    problems = []
    if not cfg.get('compression_model_checkpoint'):
        problems.append("compression_model_checkpoint is not set: give the compression model the LM is trained "
                        "on, as //sig/SIG of a compression XP, //pretrained/NAME or a checkpoint path")
    rr = cfg.get('rr')
    if rr is None:
        return problems + ["RR solver needs an `rr` config group (keys: weight, pooling, apply_on, gather, "
                           "text_cache, skip_nulled_text_pass, condition)"]
    if rr.get('pooling') not in POOLING_MODES:
        problems.append(f"rr.pooling={rr.get('pooling')!r} is not supported; allowed values: {list(POOLING_MODES)}")
    if rr.get('apply_on') not in APPLY_ON:
        problems.append(f"rr.apply_on={rr.get('apply_on')!r} is not supported; allowed values: {list(APPLY_ON)}")
    weight = rr.get('weight')
    weight_ok = not isinstance(weight, bool) and isinstance(weight, (int, float)) and math.isfinite(weight) \
        and weight >= 0
    if not weight_ok:
        problems.append(f"rr.weight={weight!r} must be a finite number >= 0 (0 turns RR off)")
    if not isinstance(rr.get('gather'), bool):
        problems.append(f"rr.gather={rr.get('gather')!r} must be true or false")
    if not isinstance(rr.get('skip_nulled_text_pass', True), bool):
        problems.append(f"rr.skip_nulled_text_pass={rr.get('skip_nulled_text_pass')!r} must be true or false")
    text_cache = rr.get('text_cache', 0)
    if isinstance(text_cache, bool) or not isinstance(text_cache, int) or text_cache < 0:
        problems.append(f"rr.text_cache={text_cache!r} must be a whole number of captions >= 0 "
                        "(0 turns the cache off)")
    conditioners = cfg.get('conditioners') or {}
    if rr.get('condition') not in conditioners:
        problems.append(f"rr.condition={rr.get('condition')!r} names no conditioner; allowed values: "
                        f"{sorted(conditioners)}")
    if weight_ok and weight > 0 and isinstance(rr.get('gather'), bool):
        per_rank, mixing = lm_batch_size(cfg)
        pairs_batch = per_rank * world_size if rr.gather else per_rank
        if pairs_batch < 2:
            source = mixing or f"dataset.batch_size={cfg.dataset.batch_size * world_size} over {world_size} rank(s)"
            problems.append(
                f"rr.weight={weight} needs at least 2 samples per step to form pairs, but {source} gives "
                f"{per_rank} per rank{' and ' + str(pairs_batch) + ' gathered' if rr.gather else ''}; raise "
                f"{'dataset.train.batch_size or mix_p' if mixing else 'dataset.batch_size'}"
                f"{'' if rr.gather or world_size == 1 else ', set rr.gather=true'} or set rr.weight=0")
    return problems


def validate_rr_config(cfg: omegaconf.DictConfig, world_size: int = 1) -> None:
    """Raise one ConfigError listing every problem `rr_config_problems` finds, else nothing."""
    problems = rr_config_problems(cfg, world_size)
    if problems:
        raise ConfigError(problems)
