"""Offline wiring of AudioCraft's generation metrics: FAD, KL over PaSST, CLAP text consistency.

The recipes enable the three stock metrics (`evaluate.metrics.fad/kld/text_consistency`). Each one
loads weight files at its *first evaluation*, typically many hours into a run, and tries to download
them when they are absent, which fails on an offline cluster. `check_evaluation_assets` looks for
every file an enabled metric will need before anything is built, and raises one
`EvaluationAssetError` that names each missing file and the setting that asks for it. The RR solvers
call it in their constructor; `rr_audiocraft.evaluation.required_evaluation_assets(cfg)` lists what a
config needs (docs/recipes.md has the same list for people).

What each metric reads (stock AudioCraft 1.3.0 code paths):

- `fad` (`metrics.fad.model: tf`): the TensorFlow FAD tool run as a separate process:
  `metrics.fad.tf.bin` = a google-research checkout (holds `frechet_audio_distance/`),
  `metrics.fad.tf.model_path` = the VGGish checkpoint `vggish_model.ckpt` (`//reference/...` is
  `$AUDIOCRAFT_REFERENCE_DIR/...`), env `TF_PYTHON_EXE` = the Python that has TensorFlow.
- `kld` (`metrics.kld.model: passt`): the `hear21passt` package and its AudioSet weights, which it
  fetches with `torch.hub` into `<torch.hub.get_dir()>/checkpoints/` (`$TORCH_HOME/hub/checkpoints`,
  by default `~/.cache/torch/hub/checkpoints`); the file depends on `metrics.kld.passt.pretrained_length`.
- `text_consistency` (`metrics.text_consistency.model: clap`): the `laion_clap` package, the CLAP
  checkpoint `metrics.text_consistency.clap.model_path`, and `roberta-base` (tokenizer and text tower
  that laion_clap and AudioCraft load by that hub name) in the Hugging Face cache.
"""
import dataclasses
import importlib.util
import os
import typing as tp
from pathlib import Path

import omegaconf

# PaSST AudioSet weights per `metrics.kld.passt.pretrained_length`, as chosen by AudioCraft's
# PasstKLDivergenceMetric (30 -> hear21passt.base30sec, 20 -> base20sec, anything else -> base).
PASST_RELEASES = 'https://github.com/kkoutini/PaSST/releases/download'
PASST_WEIGHTS: tp.Dict[int, tp.Tuple[str, str]] = {
    10: ('passt-s-f128-p16-s10-ap.476-swa.pt', f'{PASST_RELEASES}/v0.0.1-audioset'),
    20: ('passt-s-f128-20sec-p16-s10-ap.474-swa.pt', f'{PASST_RELEASES}/v0.0.5'),
    30: ('passt-s-f128-30sec-p16-s10-ap.473-swa.pt', f'{PASST_RELEASES}/v0.0.5'),
}
VGGISH_URL = 'https://storage.googleapis.com/audioset/vggish_model.ckpt'
CLAP_URL = 'https://huggingface.co/lukewys/laion_clap/resolve/main/'
# laion_clap builds its text tower with RobertaModel/RobertaTokenizer.from_pretrained('roberta-base').
CLAP_TEXT_MODEL = 'roberta-base'
CLAP_TEXT_FILES: tp.Tuple[tp.Tuple[str, ...], ...] = (
    ('config.json',), ('vocab.json',), ('merges.txt',), ('model.safetensors', 'pytorch_model.bin'))


class EvaluationAssetError(FileNotFoundError):
    """An enabled evaluation metric lacks a file (or package) it will load; raised before training."""


@dataclasses.dataclass
class Asset:
    """One thing an enabled metric loads.

    Attributes:
        metric (str): the `evaluate.metrics` switch that enables the metric.
        setting (str): the config key or environment variable that says where the thing is.
        path (str): the file, folder, package or cache entry expected (as resolved here).
        present (bool): whether it is there.
        hint (str): how to get it.
    """
    metric: str
    setting: str
    path: str
    present: bool
    hint: str

    def describe(self) -> str:
        return f"{self.path} (setting: {self.setting}; enabled by evaluate.metrics.{self.metric}=true). {self.hint}"


def _resolve_reference(path: str) -> Path:
    """`//reference/...` as AudioCraft resolves it, without its assertion on the reference folder."""
    if path.startswith('//reference'):
        from audiocraft.environment import AudioCraftEnvironment
        reference_dir = os.environ.get('AUDIOCRAFT_REFERENCE_DIR')
        if reference_dir is None:
            try:
                reference_dir = str(AudioCraftEnvironment.get_reference_dir())
            except Exception:  # a team config without reference_dir: leave the placeholder visible
                return Path(path)
        return Path(reference_dir + path[len('//reference'):])
    return Path(path)


def _package(metric: str, module: str, pip: str) -> Asset:
    present = importlib.util.find_spec(module) is not None
    return Asset(metric, f'evaluate.metrics.{metric}', f'Python package `{module}`', present,
                 f"Install it with: pip install {pip}")


def _hf_cached(repo_id: str, filenames: tp.Sequence[str]) -> tp.Optional[str]:
    """Path of the first of `filenames` in the local Hugging Face cache of `repo_id`, or None."""
    from huggingface_hub import try_to_load_from_cache
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and Path(found).exists():
            return found
    return None


def _fad_assets(cfg: omegaconf.DictConfig) -> tp.List[Asset]:
    fad = cfg.metrics.fad
    if fad.model != 'tf':
        return [Asset('fad', 'metrics.fad.model', repr(fad.model), False,
                      "AudioCraft 1.3.0 only has the TensorFlow FAD: set metrics.fad.model=tf")]
    assets = []
    tool = fad.tf.get('bin')
    tool_ok = bool(tool) and (Path(str(tool)) / 'frechet_audio_distance').is_dir()
    assets.append(Asset('fad', 'metrics.fad.tf.bin', f"{tool}/frechet_audio_distance/" if tool else '<not set>',
                        tool_ok, "Point it at a google-research checkout prepared as in AudioCraft's "
                        "audiocraft/metrics/fad.py docstring (it holds frechet_audio_distance/)"))
    model_path = _resolve_reference(str(fad.tf.model_path))
    assets.append(Asset('fad', 'metrics.fad.tf.model_path', str(model_path), model_path.is_file(),
                        f"Download VGGish from {VGGISH_URL} to that path (//reference/ is $AUDIOCRAFT_REFERENCE_DIR)"))
    python = os.environ.get('TF_PYTHON_EXE')
    assets.append(Asset('fad', 'env TF_PYTHON_EXE', python or '<not set>', bool(python) and Path(python).is_file(),
                        "Set it to the python executable of the environment that has TensorFlow and the FAD "
                        "tool's requirements (AudioCraft runs FAD there, in a subprocess)"))
    return assets


def _kld_assets(cfg: omegaconf.DictConfig) -> tp.List[Asset]:
    kld = cfg.metrics.kld
    if kld.model != 'passt':
        return [Asset('kld', 'metrics.kld.model', repr(kld.model), False,
                      "AudioCraft 1.3.0 only has PaSST for KL: set metrics.kld.model=passt")]
    import torch
    assets = [_package('kld', 'hear21passt',
                       "'git+https://github.com/kkoutini/passt_hear21@0.0.19#egg=hear21passt'")]
    length = kld.passt.get('pretrained_length')
    filename, release = PASST_WEIGHTS.get(int(length) if length in (20, 30) else 10)
    path = Path(torch.hub.get_dir()) / 'checkpoints' / filename
    assets.append(Asset('kld', 'metrics.kld.passt.pretrained_length', str(path), path.is_file(),
                        f"pretrained_length={length} loads this file; download {release}/{filename} there "
                        "(the folder is $TORCH_HOME/hub/checkpoints)"))
    return assets


def _clap_assets(cfg: omegaconf.DictConfig) -> tp.List[Asset]:
    text = cfg.metrics.text_consistency
    if text.model != 'clap':
        return [Asset('text_consistency', 'metrics.text_consistency.model', repr(text.model), False,
                      "AudioCraft 1.3.0 only has CLAP: set metrics.text_consistency.model=clap")]
    assets = [_package('text_consistency', 'laion_clap', 'laion_clap')]
    model_path = _resolve_reference(str(text.clap.model_path))
    assets.append(Asset('text_consistency', 'metrics.text_consistency.clap.model_path', str(model_path),
                        model_path.is_file(), f"Download {model_path.name} from {CLAP_URL}{model_path.name} "
                        "to that path (//reference/ is $AUDIOCRAFT_REFERENCE_DIR)"))
    missing = [' or '.join(names) for names in CLAP_TEXT_FILES if _hf_cached(CLAP_TEXT_MODEL, names) is None]
    assets.append(Asset('text_consistency', 'HF cache (HF_HOME / HF_HUB_CACHE)',
                        f"`{CLAP_TEXT_MODEL}` in the Hugging Face cache" +
                        (f" (missing: {', '.join(missing)})" if missing else ''), not missing,
                        f"laion_clap loads `{CLAP_TEXT_MODEL}` by hub name; fetch it once, online, with the same "
                        f"HF_HOME: python -c \"import transformers as t; t.AutoTokenizer.from_pretrained("
                        f"'{CLAP_TEXT_MODEL}'); t.AutoModel.from_pretrained('{CLAP_TEXT_MODEL}')\""))
    return assets


def required_evaluation_assets(cfg: omegaconf.DictConfig) -> tp.List[Asset]:
    """Everything the enabled generation metrics of `cfg` will load, each marked present or not.

    Args:
        cfg (DictConfig): a composed AudioCraft solver config (`evaluate.metrics`, `metrics`).
    Returns:
        list of Asset: empty when no FAD / KL / CLAP metric is enabled.
    """
    enabled = cfg.get('evaluate', {}).get('metrics', {}) or {}
    assets: tp.List[Asset] = []
    if enabled.get('fad'):
        assets += _fad_assets(cfg)
    if enabled.get('kld'):
        assets += _kld_assets(cfg)
    if enabled.get('text_consistency'):
        assets += _clap_assets(cfg)
    return assets


def check_evaluation_assets(cfg: omegaconf.DictConfig) -> None:
    """Raise one EvaluationAssetError naming every missing file of the enabled metrics, else nothing.

    Args:
        cfg (DictConfig): a composed AudioCraft solver config.
    Raises:
        EvaluationAssetError: some enabled metric lacks a file; the message lists each missing file,
            the setting that points at it, and how to get it (or to turn the metric off).
    """
    missing = [asset for asset in required_evaluation_assets(cfg) if not asset.present]
    if not missing:
        return
    metrics = sorted({asset.metric for asset in missing})
    lines = '\n'.join(f"  - {asset.describe()}" for asset in missing)
    raise EvaluationAssetError(
        f"Evaluation metric(s) {', '.join(metrics)} are enabled but {len(missing)} file(s) they load are "
        f"missing (checked before training; see docs/recipes.md, 'Evaluation offline'):\n{lines}\n"
        f"Provide them, or turn the metric off with " +
        ' '.join(f'evaluate.metrics.{m}=false' for m in metrics))
