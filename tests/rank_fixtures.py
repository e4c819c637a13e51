"""RR's loss term on a toy 'LM', for the rank tests: two gloo processes (tests/test_reliability.py) and two
Slurm tasks (tests_cluster/). One place, so both compare ranks against the same one-process reference.
"""
import typing as tp

import torch


def rr_term(net: torch.nn.Module, text: torch.Tensor, text_mask: torch.Tensor, frames: torch.Tensor,
            frame_mask: torch.Tensor, gather: bool) -> torch.Tensor:
    """The RR solver's L_rr computation (`RRSolverMixin._compute_cross_entropy`) on a toy 'LM'.

    `net` maps frames [B, T, 6] to hidden states [B, T, 5]; text embeddings [B, Tt, 4] have no grad.
    """
    from rr_audiocraft.regularization import gather_with_grad, masked_pool, rr_loss
    text_pooled, keep = masked_pool(text, text_mask, 'max'), text_mask.any(dim=1)
    audio = masked_pool(net(frames), frame_mask, 'max')
    if gather:
        text_pooled, audio = gather_with_grad(text_pooled), gather_with_grad(audio)
        keep = gather_with_grad(keep.float()).bool()
    return rr_loss(text_pooled[keep], audio[keep])


def toy_batch(batch: int = 8) -> tp.Tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(batch, 7, 4, generator=generator)
    text_mask = torch.rand(batch, 7, generator=generator) > 0.3
    text_mask[:, 0] = True
    text_mask[batch - 1] = False  # an empty caption, on the last rank: left out of the pairs everywhere
    frames = torch.randn(batch, 9, 6, generator=generator)
    frame_mask = torch.rand(batch, 9, generator=generator) > 0.2
    frame_mask[:, 0] = True
    return text, text_mask, frames, frame_mask


def toy_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5))


def single_process(batch: tp.Sequence[torch.Tensor]) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
    net = toy_net()
    loss = rr_term(net, *batch, gather=True)  # not distributed here: the gather is the identity
    loss.backward()
    return loss.detach(), [p.grad for p in net.parameters()]
