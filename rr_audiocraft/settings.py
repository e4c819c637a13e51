"""Start-up check of an RR run's settings: every problem of the `rr` group (and the settings RR depends
on) in one message, before anything is built.

The RR solvers call `validate_rr_config` first thing in their constructor; `train.main` prints a
`ConfigError` (and the other start-up refusals, see `STARTUP_ERRORS`) as one message without a
traceback and exits non-zero.
"""
import math
import os
import typing as tp

import omegaconf

from .assets import STATE_FILE
from .regularization import POOLING_MODES

APPLY_ON = ('cfg', 'all')
# optim.lr at or above this is a D-Adaptation multiplier (stock musicgen_base_32khz: dadam at lr 1); below it, an
# Adam/AdamW step size (stock 1e-4 for MusicGen, 5e-4 for AudioGen; the fine-tuning recipes 1e-5). Four decades
# separate the largest AdamW rate any recipe uses from dadam's 1: either side of 0.1 is the other optimizer's value.
DADAPT_MIN_LR = 0.1
# What the fine-tuning recipes' `finetune.source` folder must hold: the layout of a released model on the hub.
PRETRAINED_LM_FILE = 'state_dict.bin'
PRETRAINED_COMPRESSION_FILE = STATE_FILE


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


def loaded_batch_size(cfg: omegaconf.DictConfig) -> int:
    """Items the train loader yields per step: `dataset.train.batch_size`, else `dataset.batch_size`."""
    return (cfg.dataset.get('train') or {}).get('batch_size', None) or cfg.dataset.batch_size


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
    loaded = loaded_batch_size(cfg)
    aug_p, mix_p = train.get('aug_p', 0) or 0, train.get('mix_p', 0) or 0
    if aug_p > 0 and mix_p > 0:
        kept = int(mix_p * loaded)
        return kept, f"dataset.train.mix_p={mix_p} of {loaded} loaded per rank (AudioGen mixing, aug_p={aug_p})"
    return loaded, None


def optimizer_problems(cfg: omegaconf.DictConfig) -> tp.List[str]:
    """An optimizer and learning rate that cannot be meant together: dadam at an Adam step size, or Adam/AdamW at
    a D-Adaptation multiplier (the trap of setting one of `optim.optimizer` / `optim.lr` over the stock recipes)."""
    optim = cfg.get('optim') or {}
    name, lr = optim.get('optimizer'), optim.get('lr')
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        return []
    if name == 'dadam' and lr < DADAPT_MIN_LR:
        return [f"optim.optimizer=dadam with optim.lr={lr}: D-Adaptation estimates the step size itself and optim.lr "
                f"only multiplies it (stock: lr=1), so every step would be {1 / lr:g}x smaller than D-Adaptation's. "
                f"Set optim.lr=1 to keep dadam, or optim.optimizer=adamw to use {lr} as an AdamW learning rate"]
    if name in ('adam', 'adamw') and lr >= DADAPT_MIN_LR:
        return [f"optim.optimizer={name} with optim.lr={lr}: that is a D-Adaptation multiplier (stock "
                f"musicgen_base_32khz: dadam at lr=1), not an {name} learning rate, which diverges at {lr}. "
                f"Set optim.lr=1e-4 (training from scratch, as stock) or optim.lr=1e-5 (fine-tuning, as "
                f"solver=rr_musicgen/finetune_small), or optim.optimizer=dadam to keep lr={lr}"]
    return []


def finetune_problems(cfg: omegaconf.DictConfig) -> tp.List[str]:
    """A model to fine-tune from (`finetune.source`, `continue_from`) or its compression model that cannot load.

    A hub name is left to stock (it downloads). A local folder must be absolute (Dora runs in the XP folder, so a
    relative one would resolve elsewhere) and hold the hub layout: stock takes a `//pretrained/` path that does not
    exist for a hub name and fails in the download with a message about repository ids. A released AudioGen's
    EnCodec loads from a local copy only: stock reads `//pretrained/NAME` of a compression model as a transformers
    EnCodec, which that hub repository does not hold.
    """
    problems = []
    source = (cfg.get('finetune') or {}).get('source')
    if source and not os.path.isabs(str(source)):
        if os.path.isdir(str(source)):
            problems.append(f"finetune.source={source} is a relative folder; Dora runs in the XP folder, so give its "
                            f"absolute path: finetune.source={os.path.abspath(str(source))}")
        elif cfg.get('compression_model_checkpoint') == f'//pretrained/{source}':
            problems.append(f"finetune.source={source}: stock AudioCraft cannot load this model's compression model by "
                            f"hub name (it reads //pretrained/{source} as a transformers EnCodec). Download the "
                            f"repository folder (`huggingface-cli download {source} --local-dir /abs/dir`) and set "
                            f"finetune.source=/abs/dir")
    for key, file_in_folder in (('continue_from', PRETRAINED_LM_FILE),
                                ('compression_model_checkpoint', PRETRAINED_COMPRESSION_FILE)):
        reference = cfg.get(key)
        if not isinstance(reference, str) or not reference.startswith('//pretrained//'):
            continue
        path = reference[len('//pretrained/'):]
        file = os.path.join(path, file_in_folder) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            problems.append(f"{key}={reference}: {file} does not exist; a local model folder needs the hub layout "
                            f"({PRETRAINED_LM_FILE} + {PRETRAINED_COMPRESSION_FILE}, as `python -m "
                            f"rr_audiocraft.export` writes and the hub repository holds)")
    return problems


def rr_config_problems(cfg: omegaconf.DictConfig, world_size: int = 1) -> tp.List[str]:
    """Every problem of the `rr` group and of what RR relies on, each naming the key and what it allows.

    `cfg.dataset.batch_size` is the per-rank batch, as the solvers receive it from `train.get_solver`.
    """
    problems = optimizer_problems(cfg) + finetune_problems(cfg)
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


class CheckpointMismatchError(ConfigError):
    """Weights to continue from that do not fit the model the config builds; raised before any training step."""


# LM settings that change no tensor shape: weights trained with other values load without complaint and compute
# something else. Compared with the checkpoint's own config where it carries one (`xp.cfg`, as released models do).
SHAPELESS_LM_KEYS = ('transformer_lm.num_heads', 'transformer_lm.norm_first', 'transformer_lm.positional_embedding',
                     'transformer_lm.max_period', 'codebooks_pattern.modeling', 'codebooks_pattern.delay.delays')
# How many tensors each config key lists before the rest are counted: a wrong `transformer_lm.dim` touches every
# tensor of the LM (hundreds for a released model).
MISMATCHES_LISTED_PER_KEY = 6


def _format_shape(shape: tp.Sequence[int]) -> str:
    return '[' + ', '.join(str(size) for size in shape) + ']'


def _conditioner_key(cfg: omegaconf.DictConfig, condition: str) -> str:
    """The config key of a conditioner's encoder, e.g. `conditioners.description.t5.name`."""
    node = (cfg.get('conditioners') or {}).get(condition) or {}
    model = node.get('model')
    if model is None:
        return f'conditioners.{condition} (conditioner=...)'
    settings = node.get(model) or {}
    return f'conditioners.{condition}.{model}.name' if 'name' in settings else f'conditioners.{condition}.{model}'


def _key_of_tensor(name: str, loaded: tp.Sequence[int], expected: tp.Sequence[int], cfg: omegaconf.DictConfig) -> str:
    """The config key that sets the shape of the LM tensor `name`, given its checkpoint and model shapes."""
    parts = name.split('.')
    first_differs = len(loaded) == len(expected) and len(loaded) > 0 and loaded[0] != expected[0]
    last_differs = len(loaded) == len(expected) and len(loaded) > 0 and loaded[-1] != expected[-1]
    if parts[0] == 'condition_provider' and len(parts) > 3 and parts[1] == 'conditioners':
        if parts[3] == 'output_proj' and (parts[-1] == 'bias' or (first_differs and not last_differs)):
            return 'transformer_lm.dim'  # the projection's output is the LM width
        return _conditioner_key(cfg, parts[2])  # its input is the encoder width (t5-base 768, t5-large 1024)
    if parts[0] in ('emb', 'linears') and first_differs:
        return 'transformer_lm.card'  # embeddings: card + 1 rows; output heads: card rows
    if ('linear1' in parts and first_differs and not last_differs) or \
            ('linear2' in parts and last_differs and not first_differs):
        return 'transformer_lm.hidden_scale'  # the feed-forward width, hidden_scale x dim
    return 'transformer_lm.dim'


def _layer_index(name: str) -> tp.Optional[int]:
    """i of a tensor `transformer.layers.i.*`, else None."""
    parts = name.split('.')
    if len(parts) > 2 and parts[:2] == ['transformer', 'layers'] and parts[2].isdigit():
        return int(parts[2])
    return None


def _without_mha(name: str) -> str:
    """A tensor's name without the `mha.` of torch's attention module (`transformer_lm.memory_efficient=false`)."""
    return name.replace('.mha.', '.')


def _key_of_missing(name: str, other: tp.Collection[str], cfg: omegaconf.DictConfig) -> str:
    """The config key that makes one side (checkpoint or model) have the tensor `name` and the other lack it.

    `other` are the other side's tensor names: a tensor of a transformer layer it lacks is a layer count, one it
    has under torch's attention module names (`.mha.`) is the attention implementation.
    """
    parts = name.split('.')
    layer = _layer_index(name)
    if layer is not None and layer not in {_layer_index(other_name) for other_name in other}:
        return 'transformer_lm.num_layers'
    if _without_mha(name) in {_without_mha(other_name) for other_name in other}:
        return 'transformer_lm.memory_efficient'  # stock copies the best state by name, without its mha renaming
    if 'cross_attention' in parts or 'norm_cross' in parts:
        return 'fuser.cross (the conditioner config: conditioner=...)'
    if parts[0] in ('emb', 'linears'):
        return 'transformer_lm.n_q'
    if parts[0] == 'condition_provider':
        return 'conditioner (conditioners.*: which text encoder)' if len(parts) < 3 \
            else _conditioner_key(cfg, parts[2])
    if parts[-1] == 'bias':
        return 'transformer_lm.bias_ff / bias_attn / bias_proj'
    return 'the model config (model/lm/model_scale, transformer_lm.*)'


def checkpoint_mismatch_problem(source: str, loaded: tp.Mapping[str, tp.Sequence[int]],
                                expected: tp.Mapping[str, tp.Sequence[int]], cfg: omegaconf.DictConfig,
                                checkpoint_cfg: tp.Optional[omegaconf.DictConfig] = None) -> tp.Optional[str]:
    """One message listing every LM tensor of `loaded` that the model built from `cfg` cannot take, by config key,
    and every setting of `SHAPELESS_LM_KEYS` that differs from the checkpoint's own config.

    Args:
        source (str): Where the weights come from (`continue_from`), for the message.
        loaded (dict): Tensor name -> shape of the checkpoint's LM state.
        expected (dict): Tensor name -> shape of the model's state.
        cfg (DictConfig): The XP config, to name the keys.
        checkpoint_cfg (DictConfig, optional): The config the checkpoint was trained with, when it carries one.
    Returns:
        The message, or None when every tensor is there with its shape and no compared setting differs.
    """
    by_key: tp.Dict[str, tp.List[str]] = {}
    for key in SHAPELESS_LM_KEYS if checkpoint_cfg is not None else ():
        theirs = omegaconf.OmegaConf.select(checkpoint_cfg, key, default=None)
        ours = omegaconf.OmegaConf.select(cfg, key, default=None)
        if theirs is not None and ours is not None and theirs != ours:
            if isinstance(theirs, omegaconf.ListConfig):
                theirs = list(theirs)
            by_key[key] = [f"the checkpoint was trained with {key}={theirs}; no tensor shape shows it, so its "
                           "weights would load and compute something else"]
    for name, shape in loaded.items():
        if name not in expected:
            by_key.setdefault(_key_of_missing(name, expected, cfg), []).append(
                f"{name} {_format_shape(shape)} in the checkpoint, absent from the model")
        elif tuple(shape) != tuple(expected[name]):
            by_key.setdefault(_key_of_tensor(name, shape, expected[name], cfg), []).append(
                f"{name}: checkpoint {_format_shape(shape)}, model {_format_shape(expected[name])}")
    for name, shape in expected.items():
        if name not in loaded:
            by_key.setdefault(_key_of_missing(name, loaded, cfg), []).append(
                f"{name} {_format_shape(shape)} in the model, absent from the checkpoint")
    if not by_key:
        return None
    lines = [f"continue_from={source} does not fit the model this config builds; stock AudioCraft does not read the "
             "checkpoint's config, so set these keys to the checkpoint's values:"]
    for key, entries in by_key.items():
        setting = omegaconf.OmegaConf.select(cfg, key, default=None)
        if isinstance(setting, omegaconf.ListConfig):
            setting = list(setting)
        shown = f"{key}={setting}" if setting is not None and not isinstance(setting, omegaconf.DictConfig) else key
        listed = entries[:MISMATCHES_LISTED_PER_KEY]
        more = len(entries) - len(listed)
        lines.append(f"  {shown}:")
        lines.extend(f"    {entry}" for entry in listed)
        if more:
            lines.append(f"    ... and {more} more tensor(s) set by the same key")
    return '\n'.join(lines)
