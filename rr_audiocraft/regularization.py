"""Representation similarity regularisation (RR), arXiv 2309.08773 §3, in plain torch.

For a batch of B samples, RR compares two B x B cosine-similarity matrices: one between the pooled
text-encoder outputs of the samples' captions (eq. 3) and one between the pooled last hidden states of
the LM (eq. 4). The loss is the mean squared difference over ordered pairs b != b' (eq. 5). Nothing
here knows about AudioCraft: the solver decides which tensors go in.
"""
import typing as tp

import torch
import torch.distributed

POOLING_MODES = ('max', 'average')
# Norms below this are treated as zero vectors: their cosine similarity with anything is 0, not NaN.
_EPS = 1e-8


def masked_pool(x: torch.Tensor, mask: torch.Tensor, mode: str = 'max') -> torch.Tensor:
    """Pool a sequence over its valid positions only.

    Padded positions never take part: a padded value that would win a naive max (or shift a naive
    mean) is ignored. A row with no valid position pools to a zero vector; callers that must not use
    such rows (e.g. empty captions) filter them out with ``mask.any(dim=1)``.

        max:     P_b = max_{t: mask[b, t]} x[b, t]
        average: P_b = Σ_{t: mask[b, t]} x[b, t] / |{t: mask[b, t]}|

    The result is float32 whatever the input dtype: a half-precision sum overflows (1501 frames of 45
    are 67545, above fp16's 65504), so `average` accumulates in float32; `max` is exact in any dtype
    and is only cast.

    Args:
        x (torch.Tensor): Sequence of shape [B, T, D] (any floating dtype).
        mask (torch.Tensor): Boolean validity mask of shape [B, T].
        mode (str): 'max' (the paper's choice) or 'average'.
    Returns:
        torch.Tensor: Pooled representations of shape [B, D], float32.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"masked_pool: unknown mode {mode!r}, expected one of {POOLING_MODES}")
    if x.dim() != 3 or mask.shape != x.shape[:2]:
        raise ValueError(f"masked_pool: expected x [B, T, D] and mask [B, T], got {tuple(x.shape)} "
                         f"and {tuple(mask.shape)}")
    mask = mask.bool()
    valid = mask.unsqueeze(-1)  # [B, T, 1]
    has_valid = mask.any(dim=1, keepdim=True)  # [B, 1]
    if mode == 'max':
        # `max` keeps only the argmax indices for backward; `amax` would keep a copy of [B, T, D].
        pooled = x.masked_fill(~valid, float('-inf')).max(dim=1).values.float()
    else:
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).float()
        pooled = x.masked_fill(~valid, 0).sum(dim=1, dtype=torch.float32) / count
    # Rows without any valid position would be -inf (max): make them zero vectors instead.
    return torch.where(has_valid, pooled, torch.zeros_like(pooled))


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between all pairs of rows (eq. 3 / eq. 4).

    Args:
        x (torch.Tensor): Representations of shape [B, D].
    Returns:
        torch.Tensor: Similarities of shape [B, B]; a zero row has similarity 0 with every row.
    """
    x = x.float()
    unit = x / x.norm(dim=-1, keepdim=True).clamp(min=_EPS)
    return unit @ unit.t()


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """Entries b != b' of a square matrix [B, B], flattened to [B (B - 1)]."""
    B = m.shape[0]
    return m[~torch.eye(B, dtype=torch.bool, device=m.device)]


def rr_loss(text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """L_rr of eq. 5: Σ_{b≠b'} (cos(T_b, T_b') − cos(A_b, A_b'))² / (B (B − 1)).

    Args:
        text (torch.Tensor): Pooled text representations T of shape [B, Dt].
        audio (torch.Tensor): Pooled LM representations A of shape [B, Da] (Dt and Da may differ).
    Returns:
        torch.Tensor: Scalar loss (float32).
    """
    if text.dim() != 2 or audio.dim() != 2 or text.shape[0] != audio.shape[0]:
        raise ValueError(f"rr_loss: expected text [B, Dt] and audio [B, Da] with the same B, got "
                         f"{tuple(text.shape)} and {tuple(audio.shape)}")
    B = text.shape[0]
    if B < 2:
        raise ValueError(f"rr_loss: needs at least 2 samples to form pairs, got B={B}")
    squared = (similarity_matrix(text) - similarity_matrix(audio)).pow(2)
    # Pairs b != b' only: the diagonal is taken out (no boolean indexing of a B x B matrix).
    return (squared.sum() - squared.diagonal().sum()) / (B * (B - 1))


def similarity_correlation(text: torch.Tensor, audio: torch.Tensor) -> tp.Optional[torch.Tensor]:
    """Pearson correlation between the off-diagonal text and audio similarities (a diagnostic).

    Returns None when it is undefined (fewer than 2 pairs, or one side has constant similarities).
    """
    if text.shape[0] < 2:
        return None
    t = _off_diagonal(similarity_matrix(text.detach()))
    a = _off_diagonal(similarity_matrix(audio.detach()))
    t, a = t - t.mean(), a - a.mean()
    denom = t.norm() * a.norm()
    if t.numel() < 2 or denom <= _EPS:
        return None
    return (t * a).sum() / denom


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a per-rank tensor [B_r, D] along dim 0 across all ranks, keeping gradients.

    Every rank gets the same [sum_r B_r, D] tensor; the backward of the gather sums the gradients
    that all ranks send to each rank's slice. With the gradients then averaged across ranks (as the
    solvers do), the result equals the gradient of one process on the concatenated batch. Ranks must
    hold the same B_r. Outside of a multi-process run this is the identity.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    if torch.distributed.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class _GatherWithGrad(torch.autograd.Function):
    """`gather_with_grad` on the default process group, looked up at each call.

    Not `torch.distributed.nn.functional.all_gather`: that module binds the default group as a default argument
    when it is imported, so imported after `init_process_group` it keeps the group alive past
    `destroy_process_group`, and with it the gloo worker threads (see `rr_audiocraft.distrib`).
    """
    @staticmethod
    def forward(ctx: tp.Any, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, x)
        ctx.rows = slice(torch.distributed.get_rank() * x.shape[0], (torch.distributed.get_rank() + 1) * x.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: tp.Any, grad: torch.Tensor) -> torch.Tensor:
        # Every rank's loss reads every slice: this rank's slice gets the sum of all ranks' gradients for it.
        grad = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(grad)
        return grad[ctx.rows]
