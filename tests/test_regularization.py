"""eq. 3-5 of arXiv 2309.08773 on hand-computed cases."""
import math

import pytest
import torch

from rr_audiocraft.regularization import masked_pool, rr_loss, similarity_correlation, similarity_matrix


def test_max_pool_ignores_padding_that_would_win_a_naive_max():
    x = torch.tensor([[[1., 5.], [3., 2.], [100., 100.]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_pool(x, mask, 'max').tolist() == [[3., 5.]]
    assert x.amax(dim=1).tolist() == [[100., 100.]]  # what a naive max would have returned


def test_max_pool_of_negative_values_ignores_zeroed_padding():
    # T5Conditioner zeroes padded positions: a naive max over negative outputs would return those zeros.
    x = torch.tensor([[[-1., -2.], [-3., -1.], [0., 0.]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_pool(x, mask, 'max').tolist() == [[-1., -1.]]


def test_average_pool_counts_valid_positions_only():
    x = torch.tensor([[[1., 5.], [3., 2.], [100., 100.]],
                      [[2., 2.], [4., 4.], [6., 6.]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert masked_pool(x, mask, 'average').tolist() == [[2., 3.5], [4., 4.]]


def test_pool_of_a_row_without_valid_position_is_zero():
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[False] * 3, [True, False, False]])
    for mode in ('max', 'average'):
        pooled = masked_pool(x, mask, mode)
        assert torch.equal(pooled[0], torch.zeros(4))
        assert torch.equal(pooled[1], x[1, 0])


def test_pool_rejects_unknown_mode_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown mode 'mean'"):
        masked_pool(torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool), 'mean')
    with pytest.raises(ValueError, match=r'expected x \[B, T, D\]'):
        masked_pool(torch.zeros(1, 2, 3), torch.ones(1, 3, dtype=torch.bool), 'max')


def test_rr_loss_hand_computed():
    text = torch.tensor([[1., 0.], [0., 1.], [1., 1.]])   # cos: (0,1)=0, (0,2)=(1,2)=1/sqrt2
    audio = torch.tensor([[1., 0., 0.], [2., 0., 0.], [0., 0., 3.]])  # cos: (0,1)=1, others 0
    # ordered pairs b != b': 2 * ((0-1)^2 + (1/sqrt2)^2 + (1/sqrt2)^2) = 4, over B(B-1) = 6
    assert rr_loss(text, audio).item() == pytest.approx(4 / 6)


def test_rr_loss_is_zero_when_similarities_match_and_scale_invariant():
    text = torch.randn(5, 7)
    assert rr_loss(text, 3.0 * text).item() == pytest.approx(0.0, abs=1e-6)
    # Different widths are fine: only the B x B similarity structure is compared.
    rotation, _ = torch.linalg.qr(torch.randn(7, 7))
    assert rr_loss(text, text @ rotation).item() == pytest.approx(0.0, abs=1e-5)


def test_rr_loss_matches_the_pairwise_formula():
    torch.manual_seed(0)
    text, audio = torch.randn(6, 4), torch.randn(6, 9)
    B = 6
    total = 0.0
    for b in range(B):
        for c in range(B):
            if b != c:
                t = torch.nn.functional.cosine_similarity(text[b], text[c], dim=0)
                a = torch.nn.functional.cosine_similarity(audio[b], audio[c], dim=0)
                total += (t - a).item() ** 2
    assert rr_loss(text, audio).item() == pytest.approx(total / (B * (B - 1)), rel=1e-5)


def test_rr_loss_is_finite_with_zero_vectors_and_gradients_flow():
    text = torch.tensor([[0., 0.], [1., 0.], [0., 1.]])
    audio = torch.tensor([[0., 0., 0.], [1., 1., 0.], [1., 0., 0.]], requires_grad=True)
    loss = rr_loss(text, audio)
    loss.backward()
    assert math.isfinite(loss.item())
    assert torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0
    # A zero row has similarity 0 with every other row.
    assert similarity_matrix(text)[0].tolist() == [0., 0., 0.]


def test_rr_loss_needs_pairs_and_matching_batches():
    with pytest.raises(ValueError, match='at least 2 samples'):
        rr_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match='same B'):
        rr_loss(torch.randn(3, 3), torch.randn(4, 3))


def test_similarity_correlation():
    x = torch.randn(6, 5)
    assert similarity_correlation(x, 2 * x).item() == pytest.approx(1.0, abs=1e-5)
    assert similarity_correlation(x[:1], x[:1]) is None


def test_average_pool_of_half_precision_sums_in_float32():
    # Under fp16 (stock FSDP's default param_dtype) 1501 frames of 45 sum to 67545 > 65504, fp16's largest value.
    x = torch.full((2, 1501, 8), 45., dtype=torch.float16)
    mask = torch.ones(2, 1501, dtype=torch.bool)
    pooled = masked_pool(x, mask, 'average')
    assert pooled.dtype == torch.float32 and torch.equal(pooled, torch.full((2, 8), 45.))
    assert masked_pool(x, mask, 'max').dtype == torch.float32  # one output dtype for both modes
