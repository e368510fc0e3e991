"""The fused attention kernel equals softmax(q k^T * scale) v on random ragged shapes."""

import random

import pytest
import torch
import torch.nn.functional as F

from genlib.kernels import attention, attention_reference

# (atol, rtol) of the kernel's output against the fp32 reference. Low precision: p is rounded to
# the input dtype before p @ v, and the interpreter truncates fp32 -> bf16 (1 ulp).
TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}
HEAD_DIMS = (16, 32, 40, 48, 64, 72, 80, 96, 100, 128)


def log_uniform(rng: random.Random, high: int) -> int:
    """An integer in [1, high], log-uniform: mostly short (cheap in the interpreter), some long."""
    return max(1, round(high ** rng.random()))


def random_case(rng: random.Random):
    b, h = rng.choice([(1, 1), (1, 1), (1, 1), (1, 2), (2, 1)])
    n = log_uniform(rng, 128)
    m = n if rng.random() < 0.5 else log_uniform(rng, 128)  # self- or cross-attention
    return b, h, n, m, rng.choice(HEAD_DIMS), rng.random() < 0.4


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_attention_matches_reference_on_random_shapes(dtype, force_triton):
    rng = random.Random(f"attention-{dtype}")
    gen = torch.Generator().manual_seed(0)
    atol, rtol = TOLERANCE[dtype]
    for _ in range(50):
        b, h, n, m, d, causal = case = random_case(rng)
        q = torch.randn(b, h, n, d, generator=gen).to(dtype)
        k = torch.randn(b, h, m, d, generator=gen).to(dtype)
        v = torch.randn(b, h, m, d, generator=gen).to(dtype)
        out = attention(q, k, v, causal=causal)
        ref = attention_reference(q.float(), k.float(), v.float(), causal=causal)
        assert out.dtype == dtype and out.shape == (b, h, n, d)
        torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol, msg=lambda s: f"{case}: {s}")


def test_reference_agrees_with_torch_sdpa():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 20, 24, generator=gen) for _ in range(3))
    for causal in (False, True):
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        ours = attention_reference(q, k, v, causal=causal)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_attention_takes_strided_inputs_and_a_custom_scale(force_triton):
    """q, k, v permuted from ``b n h d`` (no copy) and a scale other than 1/sqrt(d)."""
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 70, 2, 40, generator=gen).permute(0, 2, 1, 3) for _ in range(3))
    out = attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, attention_reference(q, k, v, scale=0.3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale", [-0.4, 0.0])
def test_attention_takes_a_negative_or_zero_scale(scale, force_triton):
    """The kernel scales the running max, which needs scale > 0; the launcher folds the sign into q."""
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 1, 20, 16, generator=gen) for _ in range(3))
    for causal in (False, True):
        out = attention(q, k, v, causal=causal, scale=scale)
        ref = attention_reference(q, k, v, causal=causal, scale=scale)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_temporal_attention_many_heads_short_sequences(force_triton):
    """Video temporal attention: ``(b h w) heads t d`` with t frames; many (batch, head) pairs."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(24, 2, 8, 32, generator=gen) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), attention_reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_causal_first_query_sees_only_the_first_key(force_triton):
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 1, 9, 32, generator=gen) for _ in range(3))
    out = attention(q, k, v, causal=True)
    torch.testing.assert_close(out[0, 0, 0], v[0, 0, 0], atol=1e-6, rtol=1e-6)


def test_attention_gradient_is_the_reference_gradient(force_triton):
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 19, 40, generator=gen, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(1, 2, 19, 40, generator=gen)
    out = attention(q, k, v, causal=True)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    expected = torch.autograd.grad(attention_reference(q, k, v, causal=True), (q, k, v), grad_out)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "q_shape, kv_shape, match",
    [
        ((2, 16, 32), (1, 2, 16, 32), "q of layout b h n d"),
        ((1, 2, 16, 32), (1, 2, 16, 40), "head dims differ"),
        ((1, 2, 16, 32), (1, 3, 16, 32), "same b and h"),
    ],
)
def test_attention_rejects_bad_layouts(q_shape, kv_shape, match):
    q, kv = torch.zeros(q_shape), torch.zeros(kv_shape)
    with pytest.raises(ValueError, match=match):
        attention(q, kv, kv)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_lazy_rescaling_gives_the_same_output(dtype, force_triton, monkeypatch):
    """The autotuner's LAZY_RESCALE tiles (keep the old max until it grows by 2**8) equal the
    reference, on scores large enough that the max grows across key blocks."""
    from genlib.kernels import attention_triton

    tiles = dict(BLOCK_M=16, BLOCK_N=16, num_warps=4, LAZY_RESCALE=True)
    monkeypatch.setattr(attention_triton, "_launch_plan", lambda *args: (attention_triton._attention_fwd_kernel, tiles))
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 1, 40, 16, generator=gen).to(dtype)
    k = (torch.randn(1, 1, 70, 16, generator=gen) * torch.linspace(0.1, 3, 70)[:, None]).to(dtype)
    v = torch.randn(1, 1, 70, 16, generator=gen).to(dtype)
    for causal in (False, True):
        out = attention(q, k, v, causal=causal, scale=2.0)
        ref = attention_reference(q.float(), k.float(), v.float(), causal=causal, scale=2.0)
        torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_tma_kernel_matches_reference(dtype, force_triton):
    """The TMA version of the loop (whole tiles only) on random eligible shapes, self and cross."""
    from genlib.kernels import attention_tma, attention_triton

    rng = random.Random(f"tma-{dtype}")
    gen = torch.Generator().manual_seed(6)
    atol, rtol = TOLERANCE[dtype]
    for _ in range(12):
        b, h = rng.choice([(1, 1), (1, 2), (2, 1)])
        n, m, d = rng.choice([128, 256]), rng.choice([128, 256]), rng.choice([16, 32, 64, 128])
        causal = rng.random() < 0.5
        q = torch.randn(b, h, n, d, generator=gen).to(dtype)
        k, v = (torch.randn(b, h, m, d, generator=gen).to(dtype) for _ in range(2))
        assert attention_tma.tma_eligible(q, k, v)
        out = attention_triton.attention_triton(q, k, v, causal=causal, tma=True)
        ref = attention_reference(q.float(), k.float(), v.float(), causal=causal)
        torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol, msg=lambda s: f"{(b, h, n, m, d, causal)}: {s}")


def test_tma_kernel_reads_rows_of_a_wider_tensor(force_triton, monkeypatch):
    """q, k, v split from one b h n 3d tensor: rows 3d apart. GENLIB_ATTENTION_TMA=1 turns it on."""
    from genlib.kernels import attention_tma

    monkeypatch.setenv(attention_tma.TMA_ENV_VAR, "1")
    calls = []
    original = attention_tma.launch
    monkeypatch.setattr(attention_tma, "launch", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    qkv = torch.randn(2, 2, 128, 3 * 32, generator=torch.Generator().manual_seed(7)).half()
    q, k, v = qkv.split(32, dim=-1)
    out = attention(q, k, v)
    torch.testing.assert_close(out.float(), attention_reference(q.float(), k.float(), v.float()), atol=2e-3, rtol=2e-3)
    assert calls == [1]


@pytest.mark.parametrize(
    "shape, dtype, permute",
    [
        ((1, 1, 100, 32), torch.float16, False),  # n not a multiple of 128
        ((1, 1, 128, 40), torch.float16, False),  # head dim not a power of two
        ((1, 1, 128, 32), torch.float32, False),  # fp32: the exact pointer kernel
        ((2, 128, 2, 32), torch.float16, True),  # b n h d permuted: heads are not row blocks
    ],
)
def test_tma_kernel_declines_other_shapes_and_the_pointer_kernel_runs(shape, dtype, permute, force_triton):
    from genlib.kernels import attention_tma, attention_triton

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(8)).to(dtype)
    if permute:
        x = x.permute(0, 2, 1, 3)
    assert not attention_tma.tma_eligible(x, x, x)
    out = attention_triton.attention_triton(x, x, x, tma=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(out.float(), attention_reference(x.float(), x.float(), x.float()), atol=tol, rtol=tol)


@pytest.mark.parametrize("setting, preferred, expect_tma", [("", True, True), ("", False, False),
                                                             ("0", True, False), ("1", False, True)])
def test_tma_default_follows_preferred_unless_the_environment_says(setting, preferred, expect_tma,
                                                                   force_triton, monkeypatch):
    """No GENLIB_ATTENTION_TMA: `preferred` decides (on a GPU, d = 128); "0" / "1" override it."""
    from genlib.kernels import attention_tma

    monkeypatch.setenv(attention_tma.TMA_ENV_VAR, setting)
    monkeypatch.setattr(attention_tma, "preferred", lambda q: preferred)
    calls = []
    original = attention_tma.launch
    monkeypatch.setattr(attention_tma, "launch", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    q, k, v = (torch.randn(1, 1, 128, 16, generator=torch.Generator().manual_seed(s)).half() for s in range(3))
    out = attention(q, k, v)
    torch.testing.assert_close(out.float(), attention_reference(q.float(), k.float(), v.float()), atol=2e-3, rtol=2e-3)
    assert calls == ([1] if expect_tma else [])


def test_tma_is_preferred_on_a_gpu_at_head_dim_128_only():
    from genlib.kernels import attention_tma

    assert not attention_tma.preferred(torch.zeros(1, 1, 128, 128))  # CPU tensors: never by default
    meta = torch.zeros(1, 1, 128, 128, device="meta")
    assert not attention_tma.preferred(meta)


def test_auto_dispatch_sends_head_dims_the_kernel_refuses_to_the_reference(monkeypatch):
    """Under ``auto`` a head dim above 256 runs the reference (it raised before); an explicit
    ``GENLIB_KERNELS=triton`` still gets the kernel's error."""
    from genlib.kernels import attention_triton, dispatch

    q = torch.randn(1, 1, 8, attention_triton.MAX_HEAD_DIM + 8, generator=torch.Generator().manual_seed(9))
    monkeypatch.setattr(dispatch, "use_triton", lambda *t: True)  # as if on a GPU
    monkeypatch.setenv("GENLIB_KERNELS", "auto")
    torch.testing.assert_close(attention(q, q, q), attention_reference(q, q, q))
    monkeypatch.setenv("GENLIB_KERNELS", "triton")
    with pytest.raises(ValueError, match="head dims 1..256"):
        attention(q, q, q)


def test_kernel_modules_import_one_way():
    """No import circles in genlib.kernels: the *_triton modules never import their dispatchers,
    and the two attention kernels share the online softmax through their own module."""
    import ast
    from pathlib import Path

    import genlib.kernels

    root = Path(genlib.kernels.__file__).parent
    graph = {}
    for path in root.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genlib.kernels"):
                if node.module == "genlib.kernels":
                    names |= {a.name for a in node.names}
                else:
                    names.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = names & {p.stem for p in root.glob("*.py")}

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, seen + (n,))) for n in graph.get(a, ()))

    circles = sorted(f"{a} -> ... -> {a}" for a in graph if reaches(a, a))
    assert not circles, circles
