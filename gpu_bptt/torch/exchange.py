"""Tensor <-> backend array exchange without copies, and the device context the core runs in.

CPU tensors become NumPy arrays through DLPack (`np.from_dlpack`): a view of the tensor's memory
that holds no extra reference to its storage object, unlike `Tensor.numpy()` (which was seen
breaking FSDP2's storage resizing). NumPy has no bfloat16: a bfloat16 tensor crosses as its bits
(int16) and is viewed as ml_dtypes' bfloat16, the same bits, and back. CUDA tensors become CuPy arrays through DLPack, and CuPy runs on
PyTorch's current stream with PyTorch's caching allocator, so no stream synchronization is needed
and every buffer the core allocates (outputs included) comes from PyTorch's memory pool.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import torch

from ..backends import ENV_VAR, get_backend
from ..precision import BFLOAT16

# Backends whose arrays are NumPy arrays: they serve CPU tensors.
CPU_BACKENDS = ("numpy", "emulator")


def backend_name(device: torch.device, backend=None) -> str:
    """The concrete backend name for tensors on `device`.

    backend: a name or None. None means: on CPU, $GPU_BPTT_BACKEND when it names a CPU backend,
    else "numpy"; on CUDA, "cuda"."""
    if backend is None:
        if device.type == "cpu":
            env = (os.environ.get(ENV_VAR) or "").strip().lower()
            return env if env in CPU_BACKENDS else "numpy"
        if device.type == "cuda":
            return "cuda"
        raise NotImplementedError(f"gpu_bptt.torch: tensors on {device.type!r} are not supported "
                                  "(only cpu and cuda)")
    name = str(backend).strip().lower()
    bk = get_backend(name)
    on_host = bk.xp is np
    if (device.type == "cpu") != on_host:
        raise ValueError(f"backend: {name!r} works on {'CPU' if on_host else 'CUDA'} arrays, "
                         f"but the tensors are on {device}")
    return name


def to_array(t):
    """A backend array viewing tensor `t` (None passes through). Never copies."""
    if t is None:
        return None
    t = t.detach()
    if t.device.type == "cpu":
        if t.dtype == torch.bfloat16:
            return np.from_dlpack(t.view(torch.int16)).view(BFLOAT16)
        return np.from_dlpack(t)
    import cupy

    return cupy.from_dlpack(t)


def to_tensor(a):
    """A tensor viewing backend array `a` (None passes through). Never copies."""
    if a is None:
        return None
    if a.dtype == BFLOAT16:
        return torch.from_dlpack(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_dlpack(a)


def _torch_allocator(device_index: int):
    """A CuPy allocator that takes memory from PyTorch's caching allocator on `device_index`."""
    import cupy

    def alloc(nbytes):
        buf = torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=f"cuda:{device_index}")
        # The CuPy pointer owns `buf`: PyTorch gets the block back when CuPy drops the array.
        mem = cupy.cuda.UnownedMemory(buf.data_ptr(), nbytes, buf, device_index)
        return cupy.cuda.MemoryPointer(mem, 0)

    return alloc


@contextlib.contextmanager
def running_on(device: torch.device):
    """Run the core for tensors on `device`: on CUDA, CuPy uses PyTorch's current stream and
    allocator of that device; on CPU, nothing changes."""
    if device.type != "cuda":
        yield
        return
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)
    with cupy.cuda.Device(index), \
            cupy.cuda.ExternalStream(stream.cuda_stream, index), \
            cupy.cuda.using_allocator(_torch_allocator(index)):
        yield
