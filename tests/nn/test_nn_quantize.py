"""VectorQuantizer: nearest codes, STE, which parameters each loss term trains, EMA, restarts, layouts."""

import pytest
import torch

from genlib import kernels
from genlib.nn import quantize
from genlib.nn.quantize import VectorQuantizer, nearest_code, perplexity


def _vq(k=8, d=4, **kw):
    torch.manual_seed(0)
    return VectorQuantizer(k, d, init_scale=1.0, **kw)


@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (2, 4, 3, 5, 3), (3, 11, 4), (13, 4)])
def test_indices_are_the_nearest_codes_in_every_layout(shape):
    vq = _vq()
    z = torch.randn(shape)
    q = vq(z)
    assert q.z_q.shape == z.shape
    flat = z.movedim(1, -1).reshape(-1, 4) if z.ndim >= 4 else z.reshape(-1, 4)
    brute = torch.cdist(flat, vq.codebook).argmin(1)
    assert torch.equal(q.indices.reshape(-1), brute)
    assert q.indices.shape == ((shape[0], *shape[2:]) if len(shape) >= 4 else shape[:-1])
    # z_q holds the chosen codes exactly
    zq_flat = q.z_q.movedim(1, -1).reshape(-1, 4) if z.ndim >= 4 else q.z_q.reshape(-1, 4)
    assert torch.equal(zq_flat, vq.codebook[brute].detach())


def test_non_contiguous_input_matches_contiguous():
    vq = _vq()
    z = torch.randn(2, 9, 5, 4).permute(0, 3, 2, 1)  # b c h w view of a b w h c tensor, odd sizes
    assert not z.is_contiguous()
    a, b = vq(z), vq(z.contiguous())
    assert torch.equal(a.indices, b.indices) and torch.equal(a.z_q, b.z_q)


def test_embed_inverts_codes_for():
    vq = _vq()
    z = torch.randn(2, 4, 3, 5)
    idx = vq.codes_for(z)
    assert torch.equal(vq.embed(idx, "b c h w"), vq(z).z_q.detach())
    with pytest.raises(ValueError, match="b h w"):
        vq.embed(idx[0], "b c h w")


@pytest.mark.parametrize("bad", [torch.randn(2, 3, 5, 5), torch.randn(2, 6, 3), torch.randn(7, 5), torch.randn(4)])
def test_wrong_channel_count_or_rank_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="layout"):
        _vq()(bad)


def test_the_search_goes_through_kernels_vq_nearest(monkeypatch):
    calls = []
    real = kernels.vq_nearest
    monkeypatch.setattr(quantize.kernels, "vq_nearest", lambda *a, **k: calls.append(1) or real(*a, **k))
    _vq()(torch.randn(3, 4))
    assert calls == [1]


def test_straight_through_passes_the_gradient_unchanged():
    vq = _vq()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    q = vq(z)
    g = torch.randn_like(q.z_q)
    (q.z_q * g).sum().backward()
    assert torch.equal(z.grad, g)
    assert vq.codebook.grad is None  # the decoder's gradient never reaches the codebook


def test_codebook_term_moves_only_codes_and_commitment_only_the_encoder():
    vq = _vq()
    z = torch.randn(16, 4, requires_grad=True)
    q = vq(z)
    gz, ge = torch.autograd.grad(q.codebook_loss, [z, vq.codebook], allow_unused=True)
    assert gz is None and ge is not None and ge.abs().sum() > 0
    q = vq(z)
    gz, ge = torch.autograd.grad(q.commitment_loss, [z, vq.codebook], allow_unused=True)
    assert ge is None and gz is not None and gz.abs().sum() > 0
    # the loss value is (1 + beta) * mse; only the gradients differ
    mse = ((z - vq.codebook[q.indices]) ** 2).mean()
    assert torch.allclose(q.loss, (1 + vq.beta) * mse)


def test_perplexity_bounds():
    assert perplexity(torch.tensor([5, 0, 0, 0])).item() == pytest.approx(1.0)
    assert perplexity(torch.tensor([3, 3, 3, 3])).item() == pytest.approx(4.0)


def test_ema_update_moves_a_code_to_the_mean_of_its_vectors():
    vq = VectorQuantizer(2, 2, ema=True, decay=0.5, init_scale=0.1)
    assert not vq.codebook.requires_grad
    z = torch.tensor([[5.0, 5.0], [5.2, 4.8], [4.8, 5.2]])
    for _ in range(40):
        q = vq(z)
    used = q.indices[0].item()
    assert torch.allclose(vq.codebook[used], z.mean(0), atol=1e-3)
    assert q.loss.item() == pytest.approx(vq.beta * q.commitment_loss.item())


def test_dead_codes_restart_onto_data_and_are_counted():
    vq = _vq(k=6, d=2, restart_dead=True, dead_after=2)
    vq.codebook.data[:] = torch.tensor([[0.0, 0.0]] + [[100.0, 100.0]] * 5)
    z = torch.randn(64, 2)
    vq(z)
    q = vq(z)
    assert q.restarted == 5
    assert (vq.codebook.detach().abs() < 10).all()  # every code now sits among the data
    vq.eval()
    assert vq(z).restarted == 0  # nothing changes in eval mode


def test_ema_and_restarts_off_leave_codebook_alone_in_eval():
    vq = _vq(ema=True).eval()
    before = vq.codebook.detach().clone()
    vq(torch.randn(10, 4))
    assert torch.equal(before, vq.codebook.detach())


def test_nearest_code_has_no_graph():
    z = torch.randn(5, 4, requires_grad=True)
    e = torch.randn(3, 4, requires_grad=True)
    idx = nearest_code(z, e)
    assert idx.dtype == torch.int64 and not idx.requires_grad


def test_ema_codebook_follows_the_module_dtype():
    """A float64 model (used for exact gradient checks) updates its EMA codebook in float64."""
    vq = VectorQuantizer(8, 4, ema=True).double()
    q = vq(torch.randn(2, 4, 3, 3, dtype=torch.float64))
    assert q.z_q.dtype == vq.codebook.dtype == vq.ema_sum.dtype == torch.float64


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_is_an_error_not_code_0(bad):
    """A NaN vector is no distance from any code: every index once came back 0."""
    vq = _vq()
    z = torch.randn(2, 4, 3, 3)
    z[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        vq(z)
    with pytest.raises(ValueError, match="NaN or inf"):
        vq.codes_for(z)


@pytest.mark.parametrize("index", [-1, 8])
def test_embed_rejects_indices_outside_the_codebook(index):
    """``embed(-1)`` once wrapped round to the last code."""
    vq = _vq(k=8)
    with pytest.raises(ValueError, match=r"code indices must be in 0\.\.7"):
        vq.embed(torch.tensor([[[0, index]]]))
