"""genlib.nn.transformer: the block's layouts, the GPT's causality, its loss and its sampler."""

import math

import pytest
import torch

from genlib.nn.transformer import GPT, GPTConfig, TransformerBlock


def test_block_keeps_the_layout_and_checks_its_context():
    block = TransformerBlock(16, 4, context_dim=8)
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 3, 8)
    assert block(x, ctx).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="pass a context"):
        block(x)
    with pytest.raises(ValueError, match="no cross-attention"):
        TransformerBlock(16, 4)(x, ctx)


def test_gpt_is_causal():
    """Changing token j changes no logit at positions before j."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=11, block_size=12, dim=16, heads=2, layers=2)).eval()
    tokens = torch.randint(11, (3, 12))
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 11
    a, b = gpt(tokens), gpt(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-4


def test_gpt_loss_starts_near_log_vocab_and_learns_a_pattern():
    torch.manual_seed(1)
    cfg = GPTConfig(vocab_size=7, block_size=8, dim=32, heads=4, layers=1)
    gpt = GPT(cfg)
    tokens = (torch.arange(8)[None] + torch.arange(16)[:, None]) % 7  # each token is the previous + 1
    start = gpt.loss(tokens).item()
    assert abs(start - math.log(7)) < 0.5, "an untrained model is near uniform"
    opt = torch.optim.Adam(gpt.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        gpt.loss(tokens).backward()
        opt.step()
    assert gpt.loss(tokens).item() < 0.1
    out = gpt.generate(torch.tensor([[3]]), 10, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert out.tolist() == [[(3 + i) % 7 for i in range(11)]], "the learned rule, continued past block_size"


def test_generate_is_seeded_windowed_and_checked():
    torch.manual_seed(2)
    gpt = GPT(GPTConfig(vocab_size=5, block_size=4, dim=8, heads=2, layers=1))
    prefix = torch.zeros(2, 1, dtype=torch.long)
    a = gpt.generate(prefix, 9, generator=torch.Generator().manual_seed(3))
    b = gpt.generate(prefix, 9, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 10) and torch.equal(a, b) and int(a.max()) < 5
    greedy = gpt.generate(prefix, 3, top_k=1)
    assert torch.equal(greedy, gpt.generate(prefix, 3, top_k=1, generator=torch.Generator().manual_seed(9)))
    with pytest.raises(ValueError, match="1 <= n <= block_size = 4"):
        gpt(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        gpt(torch.full((1, 2), 5))
    with pytest.raises(ValueError, match="temperature > 0"):
        gpt.generate(prefix, 2, temperature=0)
    with pytest.raises(ValueError, match="dim divisible by heads"):
        GPTConfig(vocab_size=5, dim=10, heads=4)


def test_loss_leaves_out_padding():
    torch.manual_seed(3)
    gpt = GPT(GPTConfig(vocab_size=6, block_size=6, dim=8, heads=2, layers=1))
    tokens = torch.tensor([[1, 3, 4, 2, 0, 0, 0]])[:, :6]
    logits = gpt(tokens[:, :3])
    expected = torch.nn.functional.cross_entropy(logits[0], tokens[0, 1:4])
    torch.testing.assert_close(gpt.loss(tokens, ignore_index=0), expected)


def test_top_k_keeps_exactly_k_tokens_even_with_ties():
    gpt = GPT(GPTConfig(vocab_size=6, block_size=4, dim=8, heads=2, layers=1))
    with torch.no_grad():  # all logits equal: every token ties
        gpt.head.weight.zero_()
    draws = gpt.generate(torch.zeros(200, 1, dtype=torch.long), 1, top_k=2, generator=torch.Generator().manual_seed(0))
    assert len(set(draws[:, 1].tolist())) == 2


def test_attention_maps_are_causal_weights_per_block():
    torch.manual_seed(4)
    gpt = GPT(GPTConfig(vocab_size=9, block_size=6, dim=16, heads=4, layers=3))
    maps = gpt.attention_maps(torch.randint(9, (2, 6)))
    assert len(maps) == 3 and all(m.shape == (2, 4, 6, 6) for m in maps)
    assert all(m.triu(1).abs().max() == 0 and torch.allclose(m.sum(-1), torch.ones(2, 4, 6)) for m in maps)
