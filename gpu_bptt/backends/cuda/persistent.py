"""The persistent algorithm: the whole recurrence in one cooperative launch (kernels/
elman_persistent_fwd.cu and elman_persistent_bwd.cu), its limits, the "auto" rule and the launches.

Each of `grid` blocks (at most one per multiprocessor) keeps `cols = ceil(H / multiprocessors)`
columns of V (rows, backward) in shared memory for all T steps, plus one chunk of at most 8 batch
rows of the previous state, so a block needs (cols + min(B, 8)) * H * itemsize bytes of dynamic
shared memory (v2 adds 8 * 64 elements for its cross-warp sums). The algorithm runs where that
fits the device's per-block limit and the grid can be co-resident (every block resident at once,
which a grid barrier needs). Kernel versions (the backend's `persist` option,
$GPU_BPTT_PERSIST_KERNEL): v1 one warp per column; v2 (default) the block computes 8 columns at a
time with every thread splitting k (docs/persistent.md).

"auto" rule (a first guess, to be tuned from GPU measurements; see docs/persistent.md):
persistent when B <= AUTO_MAX_BATCH and the algorithm can run, otherwise the step kernels. Every
fallback below that batch size (a limit, a build error) is a RuntimeWarning with its reason,
once per cause; the batch rule itself is logged on the "gpu_bptt" logger at DEBUG level.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from ... import activations
from .. import warn_once
from .kernel_loader import PERSIST_VERSIONS, template_name

log = logging.getLogger("gpu_bptt")

THREADS = 256          # PERSIST_THREADS in persistent_common.cuh
BATCH_CHUNK = 8        # PERSIST_BATCH: batch rows per chunk of the previous state
AUTO_MAX_BATCH = 32    # "auto" takes the persistent kernels up to this batch size
DEFAULT_SMEM = 48 * 1024  # dynamic shared memory a launch gets without raising the kernel attribute
FWD_FILE = "elman_persistent_fwd.cu"
BWD_FILE = "elman_persistent_bwd.cu"
VERSIONS = PERSIST_VERSIONS
DEFAULT_VERSION = "v2"
REDUCTION = 8 * 64  # v2's cross-warp sums (PERSIST_WARPS * PERSIST_OUTS), in elements
CUPY_SHRINK = "The grid size will be reduced"  # the start of CuPy 14's warning when it does


@dataclass(frozen=True)
class DeviceLimits:
    """What the persistent algorithm needs to know about a device."""

    multiprocessors: int
    smem_per_block: int    # the most dynamic shared memory one block may use (opt-in limit)
    cooperative: bool = True
    name: str = ""


#: The devices the documented limits are worked out for (docs/persistent.md).
KNOWN_DEVICES = {
    "sm_80": DeviceLimits(108, 163 * 1024, name="A100 (sm_80)"),
    "sm_90": DeviceLimits(132, 227 * 1024, name="H100 SXM (sm_90)"),
}


@dataclass(frozen=True)
class Plan:
    grid: int   # blocks, one per multiprocessor at most
    cols: int   # columns of V per block (the last block may own fewer)
    smem: int   # dynamic shared memory per block, bytes


def _cdiv(a, b):
    return -(-a // b)


def smem_bytes(B, H, cols, itemsize, version=DEFAULT_VERSION) -> int:
    """Dynamic shared memory of one block: V's slice (cols x H), one batch chunk (bc x H) and, for
    v2, the cross-warp sums."""
    extra = REDUCTION if version == "v2" else 0
    return ((cols + min(B, BATCH_CHUNK)) * H + extra) * itemsize


def plan(limits: DeviceLimits, B, H, dtype, version=DEFAULT_VERSION, static_smem=0) -> Plan:
    """The launch geometry for a (B, H) problem; ValueError naming the limit where it cannot run."""
    itemsize = np.dtype(dtype).itemsize
    if not limits.cooperative:
        raise ValueError("algo='persistent' cannot run: the device does not support cooperative "
                         "launches")
    cols = _cdiv(H, limits.multiprocessors)
    smem = smem_bytes(B, H, cols, itemsize, version)
    if smem + static_smem > limits.smem_per_block:
        raise ValueError(
            f"algo='persistent' cannot run: V's slice does not fit on chip: H={H} needs "
            f"{smem + static_smem} bytes of shared memory per block ({cols} columns of V and "
            f"{min(B, BATCH_CHUNK)} batch rows of {H} x {itemsize} bytes, over "
            f"{limits.multiprocessors} multiprocessors), above the device's "
            f"{limits.smem_per_block} bytes per block; the largest H that fits here is "
            f"{max_hidden(limits, B, dtype, version, static_smem)}")
    return Plan(grid=_cdiv(H, cols), cols=cols, smem=smem)


def max_hidden(limits: DeviceLimits, B, dtype, version=DEFAULT_VERSION, static_smem=0) -> int:
    """The largest H the persistent kernels (of `version`) take on this device at batch size B."""
    itemsize = np.dtype(dtype).itemsize

    def fits(H):
        return smem_bytes(B, H, _cdiv(H, limits.multiprocessors), itemsize, version) \
            + static_smem <= limits.smem_per_block

    lo, hi = 0, 1
    while fits(hi):  # the need grows with H, so bisection finds the last H that fits
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def choose(backend, algo, B, H, dtype) -> str:
    """"step" or "persistent" for a resolved request (see the module docstring for "auto").
    "persistent" where it cannot run raises ValueError naming the limit. "auto" at B <= 32 where
    the persistent kernels cannot run (a limit, a build error) runs the step kernels with a
    RuntimeWarning saying why, once per cause."""
    if algo == "step":
        return "step"
    if algo == "auto" and B > AUTO_MAX_BATCH:
        log.debug("gpu_bptt: algo='auto' runs the step kernels: B=%d > %d (the persistent "
                  "kernels' batch limit for 'auto')", B, AUTO_MAX_BATCH)
        return "step"
    try:
        check(backend, B, H, dtype)
    except ValueError as e:
        if algo == "persistent":
            raise
        # attributed to the line that called elman_forward (choose < resolve_algo < elman_forward)
        warn_once(f"algo='auto' runs the step kernels: {e}", stacklevel=4)
        return "step"
    return "persistent"


def unavailable_reason(backend):
    """None when the persistent kernels build and launch here at all (the smallest problem),
    else why not: what `gpu-bptt info` reports."""
    try:
        check(backend, 1, 1, np.float32)
    except ValueError as e:
        return str(e)
    return None


def check(backend, B, H, dtype) -> Plan:
    """The plan for both directions on `backend`, after checking that the grid is co-resident."""
    limits = backend.persistent_limits()
    pl = plan(limits, B, H, dtype, version_of(backend))
    for file in (FWD_FILE, BWD_FILE):
        try:
            fn = _function(backend, file, dtype)
        except Exception as e:  # the compiler's error, whatever its class (CuPy's, NVRTC's)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(
                f"algo='persistent' cannot run: {file} does not compile here ({type(e).__name__}: "
                f"{first}); `gpu-bptt info` shows the compiler's report. The persistent kernels "
                f"include <cooperative_groups.h>: install gpu_bptt[cuda12] or [cuda13] (CUDA's "
                f"runtime headers) or set CUDA_PATH to a CUDA toolkit") from e
        per_sm = backend.persistent_blocks_per_sm(fn, pl.smem)
        if per_sm is None:
            raise ValueError(
                f"algo='persistent' cannot run: whether the grid of {pl.grid} blocks can be "
                f"co-resident is unknown (this CuPy has no occupancy query, "
                f"cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor)")
        if pl.grid > per_sm * limits.multiprocessors:
            raise ValueError(
                f"algo='persistent' cannot run: the grid of {pl.grid} blocks cannot be "
                f"co-resident ({_stem(file, version_of(backend))} fits {per_sm} block(s) of "
                f"{THREADS} threads with {pl.smem} bytes of shared memory per multiprocessor, on "
                f"{limits.multiprocessors} multiprocessors)")
    return pl


def version_of(backend) -> str:
    """The persistent kernels' version a backend runs."""
    return getattr(backend, "persist", DEFAULT_VERSION)


def _stem(file, version):
    return f"{file[:-3]}_{version}"


def _function(backend, file, dtype):
    return backend.loader.function(file, template_name(_stem(file, version_of(backend)), dtype))


def _launch(backend, file, dtype, pl, args):
    """One cooperative launch of pl.grid blocks; raises rather than let any block be missing."""
    fn = _function(backend, file, dtype)
    if pl.smem > DEFAULT_SMEM:  # CuPy's RawKernel (and the emulator's) opt in per kernel
        fn.max_dynamic_shared_size_bytes = pl.smem
    status = backend.xp.empty(1, dtype=np.int32)  # the kernel's grid check (always written)
    with warnings.catch_warnings():
        # CuPy shrinks a 1-D cooperative grid larger than its occupancy query allows, with only a
        # warning (cupy/cuda/function.pyx, _launch); every block owns fixed columns, so a shrunk
        # grid would leave some unwritten.
        warnings.filterwarnings("error", message=CUPY_SHRINK, category=UserWarning)
        try:
            fn((pl.grid, 1, 1), (THREADS, 1, 1), args + (status,), shared_mem=pl.smem)
        except UserWarning as e:
            raise RuntimeError(f"{_stem(file, version_of(backend))}: CuPy would launch fewer than "
                               f"the {pl.grid} co-resident blocks the kernel needs ({e}); "
                               "nothing was launched") from None
    ran = int(status[0])  # a 4-byte read: waits for the launch to finish
    if ran:
        raise RuntimeError(f"{_stem(file, version_of(backend))}: only {ran} of the {pl.grid} "
                           f"blocks ran ({pl.cols} columns each), too few to cover H; the kernel "
                           "wrote nothing (a runtime shrank the cooperative grid)")


def forward(backend, h, h0, V, lengths, activation):
    """The whole forward recurrence in place: h (T, B, H) holds p on entry and h on exit.
    h0 (B, H); V (H, H); lengths (B,) int32 in 1..T. All owned by the caller; h is updated."""
    T, B, H = h.shape
    operands = backend.kernels.fwd_operands(h, h0, V, lengths)
    pl = check(backend, B, H, h.dtype)
    i32 = np.int32
    _launch(backend, FWD_FILE, h.dtype, pl, operands + (i32(T), i32(B), i32(H), i32(pl.cols),
                                                       i32(activations.ACTIVATION_CODES[activation])))
    return h


def backward(backend, du, dh, dh_last, h, V, lengths, activation):
    """The whole reverse recurrence into du (T, B, H), every entry written. dh (T, B, H) or None;
    dh_last (B, H) or None; h (T, B, H) the forward outputs; V (H, H) (not transposed);
    lengths (B,) int32 in 1..T."""
    T, B, H = du.shape
    operands = backend.kernels.bwd_operands(du, dh, dh_last, h, V, "V", lengths)
    pl = check(backend, B, H, du.dtype)
    i32 = np.int32
    _launch(backend, BWD_FILE, du.dtype, pl,
            operands + (i32(T), i32(B), i32(H), i32(pl.cols),
                        i32(activations.ACTIVATION_CODES[activation])))
    return du


def describe(limits: DeviceLimits, version=DEFAULT_VERSION, reason=None) -> list:
    """Lines for `gpu-bptt info`: the persistent algorithm's limits on this device, and `reason`
    (unavailable_reason's) when it cannot run here at all."""
    h1 = {np.dtype(d).name: max_hidden(limits, 1, d, version) for d in (np.float32, np.float64)}
    h8 = {np.dtype(d).name: max_hidden(limits, BATCH_CHUNK, d, version)
          for d in (np.float32, np.float64)}
    lines = [f"persistent: {limits.multiprocessors} blocks at most (one per multiprocessor), "
             f"{limits.smem_per_block} bytes of shared memory per block, cooperative launch "
             f"{'supported' if limits.cooperative else 'NOT supported'}"]
    if limits.cooperative:
        lines.append(f"persistent ({version}): largest H: float32 {h1['float32']} at B=1, "
                     f"{h8['float32']} at B>={BATCH_CHUNK}; float64 {h1['float64']} at B=1, "
                     f"{h8['float64']} at B>={BATCH_CHUNK}")
    if reason:
        lines.append(f"persistent: UNAVAILABLE here, algo='auto' always runs the step kernels: "
                     f"{reason}")
    else:
        lines.append(f"persistent: algo='auto' takes it when B <= {AUTO_MAX_BATCH} and V's slice "
                     f"fits, else the step kernels (with a warning when B <= {AUTO_MAX_BATCH})")
    return lines
