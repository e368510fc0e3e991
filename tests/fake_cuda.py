"""A fake CUDA device on a CPU-only machine: find device mix-ups by running the code.

Most sessions of this project have no GPU, and a chapter that hands a CPU tensor to a model on the
GPU crashes only there (chapter 06 did, on an H200). This module makes such bugs show up on the
CPU. Tensors "on CUDA" are ordinary CPU tensors whose storage is tagged. Every torch call goes
through a ``TorchFunctionMode`` that (1) moves tags along (outputs of an op with a tagged input are
tagged), (2) raises :class:`FakeDeviceError` where real PyTorch would refuse to mix devices, (3)
turns ``device="cuda"`` into the CPU plus a tag, and (4) refuses ``.numpy()`` / ``__array__`` of a
tagged tensor and a CPU generator for a CUDA tensor. Read-backs of tagged tensors (``item``,
``tolist``, ``float``, ``.cpu()``, ...) are counted per call site: on a real GPU each one waits for
the GPU's queue.

``install()`` changes ``torch.cuda``'s functions for the rest of the process, so use it only in a
process of its own: ``python tests/run_fake_cuda.py chapters/07_ddpm.md ...`` runs chapters under
it (written by a review helper, session 7; it found Make-A-Video's ``inflate`` leaving its temporal
layers on the CPU). Limits: no autocast, no Triton kernels, and only the code paths of the profile
it runs in (``ci`` by default).
"""

from __future__ import annotations

import collections
import os
import sys
import traceback
import weakref

import torch
import torch.utils._pytree as pytree
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)
_tags: dict[int, tuple] = {}
_suspend = [0]
READBACKS = collections.Counter()
EVENTS: list[str] = []


class FakeDeviceError(RuntimeError):
    pass


def _storage(t):
    try:
        return t.untyped_storage()
    except Exception:
        return None


def tagged(t) -> bool:
    s = _storage(t)
    if s is None:
        return False
    e = _tags.get(id(s))
    return bool(e is not None and e[0]() is s and e[1])


def set_tag(t, value: bool) -> None:
    s = _storage(t)
    if s is None:
        return
    k = id(s)
    if value:
        _tags[k] = (weakref.ref(s, lambda _r, k=k: _tags.pop(k, None)), True)
    else:
        e = _tags.get(k)
        if e is not None and e[0]() is s:
            _tags[k] = (e[0], False)


def _is_cuda_dev(d) -> bool:
    if d is None:
        return False
    if isinstance(d, torch.Tensor):
        return tagged(d)
    try:
        return torch.device(d).type == "cuda"
    except Exception:
        return False


def _is_dev(d) -> bool:
    return isinstance(d, (torch.device, str)) and not isinstance(d, bool) and _looks_device(d)


def _looks_device(d) -> bool:
    try:
        torch.device(d)
        return True
    except Exception:
        return False


def _site() -> str:
    here = os.path.abspath(__file__)
    for fr in reversed(traceback.extract_stack()[:-2]):
        f = fr.filename
        if f == here or "/torch/" in f or "/site-packages/" in f:
            continue
        return f"{f}:{fr.lineno}"
    return "?"


def _fail(msg: str):
    raise FakeDeviceError(f"[fake-cuda] {msg}")


def _tensors(args, kwargs):
    out = []
    for x in pytree.tree_leaves((args, kwargs)):
        if isinstance(x, torch.Tensor):
            out.append(x)
    return out


META = {"result_type", "can_cast", "promote_types", "size", "dim", "numel", "stride", "data_ptr", "untyped_storage",
        "requires_grad_", "__reduce_ex__", "__deepcopy__", "__hash__", "_is_view", "storage_offset", "__repr__"}
READ_FUNCS = {"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "__format__", "__iter__", "__len__"}


class FakeCuda(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "") or ""
        if name == "__get__":
            owner = getattr(func, "__self__", None)
            prop = getattr(owner, "__name__", "")
            if prop == "device":
                return CUDA if tagged(args[0]) else func(*args, **kwargs)
            if prop == "is_cuda":
                return tagged(args[0])
            return func(*args, **kwargs)
        if name == "__set__":  # e.g. param.data = x: the storage travels with it
            return func(*args, **kwargs)
        skip = _suspend[0] > 0
        self_t = args[0] if args and isinstance(args[0], torch.Tensor) else None

        if name in ("numpy", "__array__") and self_t is not None and tagged(self_t):
            _fail(f"{name}() of a CUDA tensor at {_site()}")
        if name in READ_FUNCS and self_t is not None and tagged(self_t) and name != "__len__":
            READBACKS[(_site(), name)] += 1
            return func(*args, **kwargs)
        if name == "get_device" and self_t is not None:
            return 0 if tagged(self_t) else -1
        if name in ("pin_memory",):
            return self_t
        if name == "is_pinned":
            return False
        if name in ("cuda", "cpu", "to") and self_t is not None:
            return self._to(func, name, args, kwargs)

        # factories and anything else with device=
        dev_kw = kwargs.get("device", None)
        gen = kwargs.get("generator", None)
        ts = _tensors(args, kwargs)
        flags = [tagged(t) for t in ts]
        any_cuda = any(flags)
        if dev_kw is not None and _is_dev(dev_kw):
            to_cuda = _is_cuda_dev(dev_kw)
            if not skip and to_cuda and gen is not None and getattr(gen, "device", torch.device("cpu")).type != "cuda":
                _fail(f"{name}: a CPU generator for a CUDA tensor at {_site()}")
            if to_cuda:
                kwargs["device"] = "cpu"
            in_storages = {id(_storage(t)) for t in ts}
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                if id(_storage(out)) in in_storages and tagged(out) != to_cuda:
                    out = out.clone()
                set_tag(out, to_cuda)
            return out
        if gen is not None and any_cuda and getattr(gen, "device", torch.device("cpu")).type != "cuda":
            _fail(f"{name}: a CPU generator with CUDA inputs at {_site()}")

        if not skip and any_cuda and not all(flags) and not (name.startswith("_has_") or name.startswith("is_") or name in META):
            mixed = [t for t, f in zip(ts, flags) if not f and t.dim() > 0]
            if name == "copy_" or name.startswith("_foreach") or name.startswith("_fused"):
                mixed = []
            elif name == "__getitem__":
                if flags[0] and ts[0] is args[0]:
                    mixed = []  # CPU indices into a CUDA tensor are fine
                else:
                    _fail(f"indexing a CPU tensor with CUDA indices at {_site()}")
            elif name == "__setitem__":
                if self_t is not None and tagged(self_t):
                    val = args[2] if len(args) > 2 else None
                    if isinstance(val, torch.Tensor) and not tagged(val) and val.dim() > 0:
                        EVENTS.append(f"POSSIBLE: setitem of a CPU value into a CUDA tensor at {_site()}")
                    mixed = []
                else:
                    idx = args[1] if len(args) > 1 else None
                    if any(isinstance(x, torch.Tensor) and tagged(x) for x in pytree.tree_leaves(idx)):
                        _fail(f"setitem: a CPU tensor indexed with CUDA indices at {_site()}")
                    EVENTS.append(f"POSSIBLE: setitem of a CUDA value into a CPU tensor at {_site()}")
                    mixed = []
            if mixed:
                shapes = [(tuple(t.shape), "cuda" if f else "cpu") for t, f in zip(ts, flags)]
                _fail(f"{name} mixes devices {shapes} at {_site()}")
        out = func(*args, **kwargs)
        if name in ("copy_",) or (name.endswith("_") and not name.startswith("__") and self_t is not None):
            return out  # in place: self keeps its tag
        if name == "__setitem__":
            return out
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t is not self_t:
                set_tag(t, any_cuda)
        return out

    def _to(self, func, name, args, kwargs):
        self_t = args[0]
        src = tagged(self_t)
        if name == "cuda":
            out = self_t.clone() if not src else self_t
            set_tag(out, True)
            return out
        if name == "cpu":
            if src:
                READBACKS[(_site(), "cpu")] += 1
                out = self_t.clone()
                set_tag(out, False)
                return out
            return self_t
        target = None
        new_args = list(args)
        for i, a in enumerate(args[1:], 1):
            if isinstance(a, torch.Tensor):
                target = tagged(a)
            elif isinstance(a, (torch.device, str)):
                target = _is_cuda_dev(a)
                if target:
                    new_args[i] = torch.device("cpu")
        if kwargs.get("device") is not None:
            target = _is_cuda_dev(kwargs["device"])
            if target:
                kwargs["device"] = torch.device("cpu")
        out = func(*new_args, **kwargs)
        if target is None or target == src:
            if out is not self_t:
                set_tag(out, src)
            return out
        if src and not target:
            READBACKS[(_site(), "to(cpu)")] += 1
        if out is self_t or _storage(out) is _storage(self_t):
            out = out.clone()
        set_tag(out, target)
        return out


def _suspended(fn):
    def wrapper(*a, **k):
        _suspend[0] += 1
        try:
            return fn(*a, **k)
        finally:
            _suspend[0] -= 1
    wrapper.__wrapped__ = fn
    return wrapper


def install():
    """Pretend CUDA exists and enter the mode (for the rest of the process)."""
    torch.cuda.is_available = lambda: True
    torch.cuda.is_bf16_supported = lambda *a, **k: True
    torch.cuda.get_device_name = lambda *a, **k: "FakeCUDA"
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.manual_seed_all = lambda *a, **k: None
    torch.cuda.manual_seed = lambda *a, **k: None
    torch.cuda.get_rng_state_all = lambda: []
    torch.cuda.set_rng_state_all = lambda s: None
    torch.cuda.is_initialized = lambda: True
    import genlib.train as gt
    gt.autocast_dtype = lambda amp, device: None  # no autocast on the fake device
    for opt in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD):
        opt.step = _suspended(opt.step)
    torch.nn.utils.clip_grad_norm_ = _suspended(torch.nn.utils.clip_grad_norm_)
    mode = FakeCuda()
    mode.__enter__()
    return mode


def report(stream=sys.stdout) -> None:
    for e in dict.fromkeys(EVENTS):
        print(e, file=stream)
    for (site, name), n in sorted(READBACKS.items(), key=lambda kv: -kv[1]):
        if n >= 20:
            print(f"READBACK x{n}: {name} at {site}", file=stream)
