import pytest
import torch
from einops import rearrange

from genlib.nn.attention import AttentionBlock2d, MultiHeadAttention


def test_multi_head_equals_concatenated_single_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, heads=3)
    x = torch.randn(2, 5, 12)
    q, k, v = mha.to_q(x), mha.to_k(x), mha.to_v(x)
    outs = []
    for h in range(3):
        sl = slice(4 * h, 4 * h + 4)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, -1)
        outs.append(w @ v[..., sl])
    assert torch.allclose(mha(x), mha.to_out(torch.cat(outs, -1)), atol=1e-5)


def test_attention_map_rows_sum_to_one_and_causal_mask():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, heads=2, causal=True)
    a = mha.attention_map(torch.randn(1, 4, 8))
    assert torch.allclose(a.sum(-1), torch.ones(1, 2, 4))
    assert torch.all(a.triu(1) == 0)


def test_cross_attention_uses_context():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, heads=2, context_dim=6)
    x = torch.randn(2, 4, 8)
    assert mha(x, torch.randn(2, 3, 6)).shape == (2, 4, 8)
    assert not torch.allclose(mha(x, torch.randn(2, 3, 6)), mha(x, torch.randn(2, 3, 6)))


@pytest.mark.parametrize("context_dim", [None, 5])
def test_fresh_block_is_identity(context_dim):
    torch.manual_seed(0)
    block = AttentionBlock2d(8, heads=2, groups=4, context_dim=context_dim)
    x = torch.randn(2, 8, 3, 4)
    ctx = None if context_dim is None else torch.randn(2, 7, context_dim)
    assert torch.allclose(block(x, ctx), x)


def test_block_is_permutation_equivariant_over_positions():
    torch.manual_seed(0)
    block = AttentionBlock2d(8, heads=2, groups=4)
    torch.nn.init.normal_(block.self_attn.to_out.weight)
    x = torch.randn(1, 8, 2, 3)
    perm = torch.randperm(6)
    tokens = rearrange(x, "b c h w -> b c (h w)")
    y = rearrange(block(x), "b c h w -> b c (h w)")
    y_perm = rearrange(block(rearrange(tokens[..., perm], "b c (h w) -> b c h w", h=2)), "b c h w -> b c (h w)")
    assert torch.allclose(y[..., perm], y_perm, atol=1e-5)


def test_bad_inputs():
    mha = MultiHeadAttention(8, heads=2, context_dim=6)
    with pytest.raises(ValueError, match="b n d"):
        mha(torch.randn(4, 8))
    with pytest.raises(ValueError, match="needs a context"):
        mha(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="context of layout b m d"):
        mha(torch.randn(1, 4, 8), torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="divisible by heads"):
        MultiHeadAttention(10, heads=3)
    with pytest.raises(ValueError, match="b c h w"):
        AttentionBlock2d(8, heads=2, groups=4)(torch.randn(2, 4, 3, 3))


def test_axial_attention_reads_the_whole_grid_only_after_both_passes():
    from genlib.nn.attention import AxialAttention2d

    torch.manual_seed(0)
    axial = AxialAttention2d(8, heads=2)
    x = torch.randn(1, 4, 5, 8, requires_grad=True)
    (grad_full,) = torch.autograd.grad(axial(x)[0, 0, 0].sum(), x)
    assert (grad_full[0].abs().sum(-1) > 0).all(), "output (0, 0) depends on every position"
    rows = x.reshape(4, 5, 8)  # the row pass alone: output (0, 0) sees row 0 only
    (grad_row,) = torch.autograd.grad(axial.row(rows)[0, 0].sum(), x)
    reach = grad_row[0].abs().sum(-1) > 0
    assert reach[0].all() and not reach[1:].any()
    with pytest.raises(ValueError, match="b h w d with d=8"):
        axial(torch.zeros(1, 4, 5, 6))
