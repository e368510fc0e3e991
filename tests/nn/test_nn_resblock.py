import pytest
import torch
import torch.nn.functional as F

from genlib.nn.resblock import GroupNormSiLU, ResBlock


def test_fresh_block_is_its_skip_path():
    torch.manual_seed(0)
    block = ResBlock(8, 8, 16, groups=4)
    x, emb = torch.randn(2, 8, 6, 6), torch.randn(2, 16)
    assert torch.equal(block(x, emb), x)
    proj = ResBlock(8, 12, 16, groups=4)
    assert torch.allclose(proj(x, emb), proj.skip(x))


def test_groupnorm_silu_matches_torch():
    torch.manual_seed(0)
    norm = GroupNormSiLU(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 8, 5, 5)
    assert torch.allclose(norm(x), F.silu(F.group_norm(x, 4, norm.weight, norm.bias, norm.eps)), atol=1e-6)


def test_time_embedding_changes_output_after_training_init():
    torch.manual_seed(0)
    block = ResBlock(8, 8, 16, groups=4)
    torch.nn.init.normal_(block.conv2.weight, std=0.1)
    x = torch.randn(2, 8, 4, 4)
    e1, e2 = torch.randn(2, 16), torch.randn(2, 16)
    assert not torch.allclose(block(x, e1), block(x, e2))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    block = ResBlock(8, 16, 16, groups=4, dropout=0.1)
    torch.nn.init.normal_(block.conv2.weight, std=0.1)
    block(torch.randn(2, 8, 4, 4), torch.randn(2, 16)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_bad_inputs():
    block = ResBlock(8, 8, 16, groups=4)
    with pytest.raises(ValueError, match="b c h w"):
        block(torch.randn(8, 4, 4), torch.randn(1, 16))
    with pytest.raises(ValueError, match="emb of layout b e"):
        block(torch.randn(2, 8, 4, 4), torch.randn(3, 16))
    with pytest.raises(ValueError, match="divisible by groups"):
        ResBlock(6, 8, 16, groups=4)
