"""A frozen text encoder's conditioner, made cheaper for RR, and the caption cache it owns.

With a frozen encoder (T5 or HF, only `output_proj` trained) the encoder outputs are a function of the
caption alone. The RR solver therefore turns such a conditioner, once when the model is built, into a
`FrozenTextEncoder` (`install_frozen_text_encoder`: the instance's class becomes a subclass of its own
class, so its state dict, parameters and every stock `isinstance` check are unchanged). It:

- skips the encoder pass over a batch of empty captions (a CFG-dropped step: dropout nulled them all).
  The stock conditioner encodes them only to multiply the result by their all-zero mask; here
  `output_proj(zeros) * mask` gives the same values (zeros), shape [B, T, D] and dtype, and the same
  (zero) gradients into `output_proj`, so the optimizer does exactly what it does in stock;
- hands out its pre-projection output (T before pooling, eq. 3) of the stock pass while the solver asks
  for it (`handing_out`), so the captions of normal steps fill its `caption_cache`;
- gives RR the pooled T of a batch of captions (`pooled_text`), from the cache where it can;
- with an `encoder_cache`, keeps the encoder's outputs per tokenized caption, so a batch whose captions
  were all seen runs `output_proj` only (`EncoderOutputCache`).
"""
import contextlib
import typing as tp

import torch

from audiocraft.modules.conditioners import ConditionType, T5Conditioner, TextConditioner

from ..regularization import masked_pool
from .text import HFTextConditioner, projection_input, text_representation

# Key of the tokenized inputs that carries the captions from `tokenize` to `forward`.
CAPTIONS_KEY = 'rr_captions'
# One stock pass, as handed out: captions, pre-projection outputs [B, T, Dt], mask [B, T].
TextPass = tp.Tuple[tp.List[tp.Optional[str]], torch.Tensor, torch.Tensor]


class PooledTextCache:
    """Pooled T (eq. 3) per caption, for a frozen text encoder: each caption is encoded once per run.

    A CFG-dropped step need not run the encoder again over captions already seen: the stock pass over
    the captions of normal steps (which runs anyway) fills the cache, and so do RR's own passes on
    dropped steps. Only captions that can recur are kept (`may_keep`): with AudioGen's mixing a mixed
    clip's caption is a one-off concatenation of two, which would fill the cache with strings never
    seen again. Entries are never evicted: once `capacity` captions are kept, new ones are encoded on
    each use (no LRU thrash when a dataset has more captions than the cache). Values are kept on the
    CPU in float32, `capacity` x width x 4 bytes at most (65536 captions of T5-base: 200 MB).

    Args:
        capacity (int): Most captions kept (> 0).
        pooling (str): Pooling over time of the encoder outputs ('max' or 'average', as `masked_pool`).
    """
    def __init__(self, capacity: int, pooling: str):
        self.capacity = capacity
        self.pooling = pooling
        self.entries: tp.Dict[str, tp.Optional[torch.Tensor]] = {}  # None: an empty (all-masked) caption

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, captions: tp.Sequence[tp.Optional[str]], embeddings: torch.Tensor, mask: torch.Tensor,
            may_keep: tp.Optional[tp.Sequence[bool]] = None) -> None:
        """Pool and keep the encoder outputs of captions not cached yet, while there is room.

        Nothing is pooled (no device sync) when no row is new and allowed.

        Args:
            captions (list of str or None): B captions, as given to the conditioner's `tokenize`.
            embeddings (torch.Tensor): Pre-projection encoder outputs [B, T, Dt].
            mask (torch.Tensor): Validity mask [B, T].
            may_keep (list of bool, optional): B flags, False for a caption that cannot recur.
        """
        new: tp.Dict[str, int] = {}  # caption -> its first row
        for i, caption in enumerate(captions):
            key = caption or ''
            allowed = may_keep is None or may_keep[i]
            if allowed and key not in self.entries and key not in new and len(self.entries) + len(new) < self.capacity:
                new[key] = i
        if new:
            index = torch.tensor(list(new.values()), device=embeddings.device)
            self._keep(list(new), *self._pool(embeddings[index], mask[index]))

    def _pool(self, embeddings: torch.Tensor, mask: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Pooled T [B, Dt] (float32, CPU) and whether each caption has a valid token [B]."""
        mask = mask.bool()
        return masked_pool(embeddings.detach(), mask, self.pooling).cpu(), mask.any(dim=1).cpu()

    def _keep(self, keys: tp.Sequence[str], pooled: torch.Tensor, valid: torch.Tensor) -> None:
        finite = torch.isfinite(pooled).all(dim=1)
        for row, key in enumerate(keys):
            room = len(self.entries) < self.capacity
            if room and key not in self.entries and finite[row]:  # a non-finite T is never kept: the
                self.entries[key] = pooled[row] if valid[row] else None  # step's check stops on it, once

    def lookup(self, conditioner: TextConditioner, captions: tp.Sequence[tp.Optional[str]],
               may_keep: tp.Optional[tp.Sequence[bool]] = None) -> tp.Tuple[torch.Tensor, torch.Tensor, int]:
        """Pooled T of a batch of captions, encoding only those not cached (kept if `may_keep` allows).

        Returns:
            tuple: pooled T [B, Dt] (float32, on the conditioner's device, zero rows for empty captions),
                keep mask [B] (False for empty captions), number of captions found in the cache.
        """
        keys = [c or '' for c in captions]
        found = {k: self.entries[k] for k in keys if k in self.entries}
        hits = sum(k in found for k in keys)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            pooled, valid = self._pool(*text_representation(conditioner, missing))
            recurring = {k for i, k in enumerate(keys) if may_keep is None or may_keep[i]}
            rows = [i for i, k in enumerate(missing) if k in recurring]
            self._keep([missing[i] for i in rows], pooled[rows], valid[rows])
            found.update({k: pooled[i] if valid[i] else None for i, k in enumerate(missing)})
        zero = torch.zeros(conditioner.output_proj.in_features)  # T is output_proj's input
        device = conditioner.output_proj.weight.device
        text = torch.stack([zero if found[k] is None else found[k] for k in keys]).to(device)
        keep = torch.tensor([found[k] is not None for k in keys], device=device)
        return text, keep, hits


class EncoderOutputCache:
    """Pre-projection encoder outputs per tokenized caption, for a frozen text encoder (`rr.encoder_cache_mb`).

    A frozen encoder (eval mode, no dropout) maps a caption's token ids to the same hidden states every
    time, and padding is masked out of its attention; the stock conditioner still runs it over every
    step's captions. On the reproduce LMs (all-MiniLM-L6-v2, batch 16, one CPU thread) that pass is
    0.09 s of a 0.52 s step. A batch whose captions are all here skips it: their kept outputs, zeros at
    padded positions (which the conditioner masks anyway), go to `output_proj`. A batch with any unseen
    caption runs the stock pass whole, and its new captions are kept while the byte budget lasts (no
    eviction). Keys are the valid token ids, so T5's word dropout (different tokens) is a different key.
    Values stay on the encoder output's device and dtype.

    Args:
        budget_bytes (int): Most bytes of outputs kept (> 0).
    """
    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.entries: tp.Dict[tp.Tuple[int, ...], torch.Tensor] = {}  # token ids -> outputs [len, Dt]

    @staticmethod
    def keys(input_ids: torch.Tensor, mask: torch.Tensor) -> tp.List[tp.Tuple[int, ...]]:
        """The valid token ids of each row of a tokenized batch ([B, L] ids and mask); () for an empty caption."""
        return [tuple(ids[valid].tolist()) for ids, valid in zip(input_ids, mask.bool(), strict=True)]

    def covers(self, keys: tp.Sequence[tp.Tuple[int, ...]]) -> bool:
        """Whether every non-empty caption of a batch is kept, and at least one is (its width is then known)."""
        return any(keys) and all(key in self.entries for key in keys if key)

    def add(self, keys: tp.Sequence[tp.Tuple[int, ...]], embeddings: torch.Tensor, mask: torch.Tensor) -> None:
        """Keep the outputs of captions not kept yet while the budget lasts ([B, T, Dt] and [B, T])."""
        for key, row, valid in zip(keys, embeddings, mask.bool(), strict=True):
            if not key or key in self.entries:
                continue
            value = row[valid].detach().clone()
            size = value.numel() * value.element_size()
            if self.used_bytes + size > self.budget_bytes:
                return
            self.entries[key] = value
            self.used_bytes += size

    def assemble(self, keys: tp.Sequence[tp.Tuple[int, ...]], mask: torch.Tensor) -> torch.Tensor:
        """The outputs of a covered batch, [B, T, Dt], zeros where `mask` [B, T] is False."""
        first = next(self.entries[key] for key in keys if key)
        embeddings = first.new_zeros(*mask.shape, first.shape[-1])
        for row, (key, valid) in enumerate(zip(keys, mask.bool(), strict=True)):
            if key:
                embeddings[row, valid] = self.entries[key]
        return embeddings


class FrozenTextEncoder:
    """Mixin over a frozen T5 / HF text conditioner (see the module docstring); installed by
    `install_frozen_text_encoder`, never instantiated directly.

    Attributes:
        pooling (str): Pooling of T over time ('max' | 'average').
        caption_cache (PooledTextCache or None): Pooled T per caption; None: every T is encoded afresh.
        skip_nulled_pass (bool): Skip the encoder over a batch of empty captions (False: as stock).
        encoder_cache (EncoderOutputCache or None): Encoder outputs per tokenized caption; None: the
            encoder runs on every batch, as stock.
    """
    pooling: str = 'max'
    caption_cache: tp.Optional[PooledTextCache] = None
    skip_nulled_pass: bool = True
    encoder_cache: tp.Optional[EncoderOutputCache] = None
    _handout: tp.Optional[tp.List[TextPass]] = None

    def tokenize(self, x: tp.List[tp.Optional[str]]) -> tp.Dict[str, tp.Any]:
        inputs = super().tokenize(x)  # type: ignore
        inputs[CAPTIONS_KEY] = list(x)
        return inputs

    def forward(self, inputs: tp.Dict[str, tp.Any]) -> ConditionType:
        captions = inputs.get(CAPTIONS_KEY)
        inputs = {key: value for key, value in inputs.items() if key != CAPTIONS_KEY}
        mask = inputs['attention_mask']
        if self.skip_nulled_pass and captions is not None and not any(captions):
            proj = self.output_proj  # type: ignore
            zeros = torch.zeros(*mask.shape, proj.in_features, device=proj.weight.device, dtype=proj.weight.dtype)
            return proj(zeros) * mask.unsqueeze(-1), mask
        # With T5 word dropout active the encoded text is not the caption: nothing to hand out.
        word_dropout = self.training and getattr(self, 'word_dropout', 0.) > 0  # type: ignore
        hand_out = self._handout is not None and captions is not None and not word_dropout
        cache = self.encoder_cache
        if cache is None and not hand_out:
            return super().forward(inputs)  # type: ignore
        keys = cache.keys(inputs['input_ids'], mask) if cache is not None else []
        if cache is not None and cache.covers(keys):
            # The stock forward's tail (projection, then zeros where masked) on the kept outputs.
            embeddings = cache.assemble(keys, mask)
            proj = self.output_proj  # type: ignore
            out = proj(embeddings.to(proj.weight)) * mask.unsqueeze(-1), mask
        else:
            with projection_input(self) as captured:  # type: ignore
                out = super().forward(inputs)  # type: ignore
            embeddings = captured[0]
            if cache is not None:
                cache.add(keys, embeddings, mask)
        if hand_out:
            self._handout.append((captions, embeddings, mask))  # type: ignore
        return out

    @contextlib.contextmanager
    def handing_out(self) -> tp.Iterator[tp.List[TextPass]]:
        """Collect (captions, pre-projection outputs [B, T, Dt], mask [B, T]) of the passes run inside."""
        passes: tp.List[TextPass] = []
        self._handout = passes
        try:
            yield passes
        finally:
            self._handout = None

    def pooled_text(self, captions: tp.Sequence[tp.Optional[str]], may_keep: tp.Optional[tp.Sequence[bool]] = None
                    ) -> tp.Tuple[torch.Tensor, torch.Tensor, tp.Optional[int]]:
        """Pooled T of RR for a batch of captions (eq. 3).

        Returns:
            tuple: T [B, Dt] (float32), keep [B] (False for empty captions), and the number of captions
                found in the cache (None without a cache).
        """
        if self.caption_cache is not None:
            return self.caption_cache.lookup(self, captions, may_keep)  # type: ignore
        embeddings, mask = text_representation(self, list(captions))  # type: ignore
        return masked_pool(embeddings, mask, self.pooling), mask.any(dim=1), None


class FrozenT5Conditioner(FrozenTextEncoder, T5Conditioner):
    """A frozen stock T5Conditioner for RR (`FrozenTextEncoder`)."""


class FrozenHFTextConditioner(FrozenTextEncoder, HFTextConditioner):
    """A frozen HFTextConditioner for RR (`FrozenTextEncoder`)."""


FROZEN_CLASSES: tp.Dict[type, type] = {T5Conditioner: FrozenT5Conditioner, HFTextConditioner: FrozenHFTextConditioner}


def is_frozen_text_encoder(conditioner: tp.Any) -> bool:
    """A T5 or HF conditioner whose only trainable part is `output_proj`."""
    if type(conditioner) not in FROZEN_CLASSES and not isinstance(conditioner, FrozenTextEncoder):
        return False
    projection = {id(p) for p in conditioner.output_proj.parameters()}
    return all(id(p) in projection for p in conditioner.parameters() if p.requires_grad)


def install_frozen_text_encoder(conditioner: TextConditioner, pooling: str, cache_capacity: int,
                                skip_nulled_pass: bool = True, encoder_cache_bytes: int = 0) -> bool:
    """Turn a frozen T5/HF conditioner into its `FrozenTextEncoder` in place; False (untouched) otherwise.

    Args:
        conditioner (TextConditioner): The conditioner whose encoder gives T.
        pooling (str): Pooling of T over time.
        cache_capacity (int): Captions the cache keeps (`rr.text_cache`); 0: no cache.
        skip_nulled_pass (bool): Skip the encoder over a batch of empty captions.
        encoder_cache_bytes (int): Budget of the encoder-output cache (`rr.encoder_cache_mb`); 0: no cache.
    """
    if not is_frozen_text_encoder(conditioner):
        return False
    if not isinstance(conditioner, FrozenTextEncoder):
        conditioner.__class__ = FROZEN_CLASSES[type(conditioner)]
    frozen = tp.cast(FrozenTextEncoder, conditioner)
    frozen.pooling, frozen.skip_nulled_pass = pooling, skip_nulled_pass
    frozen.caption_cache = PooledTextCache(cache_capacity, pooling) if cache_capacity else None
    frozen.encoder_cache = EncoderOutputCache(encoder_cache_bytes) if encoder_cache_bytes else None
    return True
