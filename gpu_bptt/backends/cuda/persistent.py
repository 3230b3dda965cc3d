"""The persistent algorithm's limits: the whole recurrence in one cooperative launch (kernels/
<cell>_persistent_fwd.cu and <cell>_persistent_bwd.cu). Pure functions of the device's facts
(DeviceLimits, KernelFacts), gathered by the backend first; the launches are launchers.py's and
the "auto" rule is rules.py's.

Each of `grid` blocks (at most one per multiprocessor) keeps `cols = ceil(H / multiprocessors)`
columns of V (rows, backward) in shared memory for all T steps, plus one chunk of at most 8 batch
rows of the previous state, so a block needs (cols + min(B, 8)) * H * itemsize bytes of dynamic
shared memory (v2 adds 8 * 64 elements for its cross-warp sums). A cell of G gates (the LSTM's 4,
kernels/lstm_persistent_*.cu) keeps all G gate columns of its units: forward G·cols columns of
length H and a chunk of H, backward cols rows of V of length G·H and a chunk of G·H; both
launches take the larger (plan's `gates`). An LSTM's projection (proj_size P) adds a second
phase per step, with R's slice on chip too (plan's `proj`; see _need). The algorithm runs where that
fits the device's per-block limit and the grid can be co-resident (every block resident at once,
which a grid barrier needs). Kernel versions (the backend's `persist` option,
$GPU_BPTT_PERSIST_KERNEL): v1 one warp per column; v2 (default) the block computes 8 columns at a
time with every thread splitting k (docs/persistent.md).

The constants shared with persistent_common.cuh (threads, batch chunk, v2's sums) are the
registry's (registry.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import registry
from .registry import cdiv

THREADS = registry.PERSIST_CONSTANTS["PERSIST_THREADS"]
BATCH_CHUNK = registry.PERSIST_CONSTANTS["PERSIST_BATCH"]  # batch rows per chunk of the state
DEFAULT_SMEM = 48 * 1024  # dynamic shared memory a launch gets without raising the kernel attribute
FILES = (registry.PERSIST_FWD.file, registry.PERSIST_BWD.file)  # in launch order
FWD_FILE, BWD_FILE = FILES


VERSIONS = tuple(registry.PERSIST)
DEFAULT_VERSION = "v2"
AUTO_MAX_BATCH = 32    # "auto" takes the persistent kernels up to this batch size (rules.py)


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
class Geometry:
    grid: int   # blocks, one per multiprocessor at most
    cols: int   # columns of V per block (the last block may own fewer)
    smem: int   # dynamic shared memory per block, bytes


def smem_bytes(B, K, ncols, itemsize, version=DEFAULT_VERSION) -> int:
    """Dynamic shared memory of one block: `ncols` columns of V each K long (the block's slice),
    one batch chunk (bc x K) of the previous state and, for v2, the cross-warp sums."""
    extra = registry.PERSIST_REDUCTION[version]
    return ((ncols + min(B, BATCH_CHUNK)) * K + extra) * itemsize


def proj_cols(P, H, cols) -> int:
    """An LSTM projection's columns of h (of P) per block: P over the grid of ceil(H / cols)."""
    return cdiv(P, cdiv(H, cols))


def _need(B, H, K, cols, itemsize, version, gates, proj=0) -> int:
    """The larger direction's shared memory: the forward holds G·cols columns of V of length K
    (the fed-back state's size) and a chunk of K; the backward cols rows of V of length G·H and a
    chunk of G·H. Elman (G = 1, K = H): both the same. With an LSTM's projection (proj = P = K)
    each also holds its slice of R: forward pcols columns of length H, backward cols rows of
    length P, and the forward's V slice pcols rows of V (P, 4H) in the backward; the chunk is the
    longer of the two phases' states."""
    if not proj:
        return max(smem_bytes(B, K, gates * cols, itemsize, version),
                   smem_bytes(B, gates * H, cols, itemsize, version))
    bc, pcols = min(B, BATCH_CHUNK), proj_cols(proj, H, cols)
    fwd = gates * cols * K + pcols * H + bc * max(K, H)
    bwd = pcols * gates * H + cols * K + bc * max(gates * H, K)
    return (max(fwd, bwd) + registry.PERSIST_REDUCTION[version]) * itemsize


def plan(limits: DeviceLimits, B, H, dtype, version=DEFAULT_VERSION, static_smem=0, *, gates=1,
         K=None, proj=0) -> Geometry:
    """The launch geometry for a (B, H) problem of a cell with `gates` gates whose fed-back
    state is K long (H when None; an LSTM's projection `proj` = P sets K = P and adds R's slice);
    ValueError naming the limit where it cannot run."""
    itemsize = np.dtype(dtype).itemsize
    K = (proj or H) if K is None else K
    if not limits.cooperative:
        raise ValueError("algo='persistent' cannot run: the device does not support cooperative "
                         "launches")
    cols = cdiv(H, limits.multiprocessors)
    smem = _need(B, H, K, cols, itemsize, version, gates, proj)
    if smem + static_smem > limits.smem_per_block:
        what = (f"{cols} columns of V and {min(B, BATCH_CHUNK)} batch rows of {H} x {itemsize} "
                f"bytes" if gates == 1 else
                f"the {gates} gates' columns of V for {cols} units"
                f"{f' and a slice of R (proj_size={proj})' if proj else ''} and "
                f"{min(B, BATCH_CHUNK)} batch rows, of {itemsize}-byte elements")
        raise ValueError(
            f"algo='persistent' cannot run: V's slice does not fit on chip: H={H} needs "
            f"{smem + static_smem} bytes of shared memory per block ({what}, over "
            f"{limits.multiprocessors} multiprocessors), above the device's "
            f"{limits.smem_per_block} bytes per block; the largest H that fits here is "
            f"{max_hidden(limits, B, dtype, version, static_smem, gates=gates, proj=proj)}")
    return Geometry(grid=cdiv(H, cols), cols=cols, smem=smem)


def max_hidden(limits: DeviceLimits, B, dtype, version=DEFAULT_VERSION, static_smem=0, *,
               gates=1, proj=0) -> int:
    """The largest H the persistent kernels (of `version`, for a cell of `gates` gates fed back
    its H-long state, or an LSTM's projection of size `proj`) take on this device at batch B."""
    itemsize = np.dtype(dtype).itemsize

    def fits(H):
        return _need(B, H, proj or H, cdiv(H, limits.multiprocessors), itemsize, version, gates,
                     proj) + static_smem <= limits.smem_per_block

    return _last_fitting(fits)


def _last_fitting(fits) -> int:
    """The largest H >= 0 with fits(H), for a need that grows with H (bisection)."""
    lo, hi = 0, 1
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def cell_files(cell="elman") -> tuple:
    """The persistent kernel files of `cell` (registry.CELLS), in launch order."""
    spec = registry.cell(cell)
    return (spec.persist_fwd.file, spec.persist_bwd.file)


def cell_plan(limits: DeviceLimits, B, H, dtype, version=DEFAULT_VERSION, cell="elman",
              P=0) -> Geometry:
    """plan for `cell`'s kernels (both launches get the larger shared memory); P: proj_size."""
    return plan(limits, B, H, dtype, version, gates=registry.cell(cell).gates, proj=P)


def cell_max_hidden(limits: DeviceLimits, B, dtype, version=DEFAULT_VERSION, cell="elman",
                    P=0) -> int:
    """The largest H both of `cell`'s persistent kernels take on this device at batch size B."""
    return max_hidden(limits, B, dtype, version, gates=registry.cell(cell).gates, proj=P)


@dataclass(frozen=True)
class KernelFacts:
    """What the backend found out about one persistent kernel for a problem: the compiler's error
    (its class and first line) where it does not build here, else how many of its blocks fit on
    one multiprocessor at the plan's shared memory (None: unknown, no occupancy query)."""

    file: str
    compile_error: Optional[str] = None
    blocks_per_sm: Optional[int] = None


def check(limits: DeviceLimits, B, H, dtype, version, kernels, *, gates=1, files=FILES,
          proj=0) -> Geometry:
    """The geometry for both directions, after checking that V's slice fits, that each kernel
    (of `files`: a cell's two, in launch order) builds and that its grid can be co-resident,
    from `kernels` (KernelFacts; after a build error, the later files' may be missing);
    ValueError naming the limit otherwise."""
    geo = plan(limits, B, H, dtype, version, gates=gates, proj=proj)
    _check_kernels(limits, geo, version, kernels, files)
    return geo


def _check_kernels(limits: DeviceLimits, geo: Geometry, version, kernels, files):
    """ValueError naming the limit unless each kernel of `files` builds and its grid of geo.grid
    blocks can be co-resident (from `kernels`, KernelFacts at geo.smem)."""
    facts = {k.file: k for k in kernels}
    for file in files:
        if file not in facts:  # the caller's omission, not a limit: never an "auto" fallback
            raise LookupError(f"kernels: no KernelFacts for {file}")
        k = facts[file]
        if k.compile_error is not None:
            raise ValueError(
                f"algo='persistent' cannot run: {k.file} does not compile here ({k.compile_error}"
                f"); `gpu-bptt info` shows the compiler's report. The persistent kernels include "
                f"<cooperative_groups.h>: install gpu_bptt[cuda12] or [cuda13] (CUDA's runtime "
                f"headers) or set CUDA_PATH to a CUDA toolkit")
        if k.blocks_per_sm is None:
            raise ValueError(
                f"algo='persistent' cannot run: whether the grid of {geo.grid} blocks can be "
                f"co-resident is unknown (this CuPy has no occupancy query, "
                f"cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor)")
        if geo.grid > k.blocks_per_sm * limits.multiprocessors:
            raise ValueError(
                f"algo='persistent' cannot run: the grid of {geo.grid} blocks cannot be "
                f"co-resident ({registry.family(k.file).entry(version)} fits {k.blocks_per_sm} "
                f"block(s) of {THREADS} threads with {geo.smem} bytes of shared memory per "
                f"multiprocessor, on {limits.multiprocessors} multiprocessors)")


def pair_unfit(limits: DeviceLimits, grid, version, kernels):
    """None where both directions of a bidirectional layer fit one cooperative launch of the pair
    kernels (2 * grid blocks co-resident, from `kernels`: KernelFacts of the pair kernels at the
    plan's shared memory), else why not (the backend then launches each direction on a stream of
    its own)."""
    need = 2 * grid
    for k in kernels:
        name = registry.family(k.file).entry(version, pair=True)
        if k.blocks_per_sm is None:
            return (f"whether {name}'s {need} blocks can be co-resident is unknown (no occupancy "
                    f"query)")
        if need > k.blocks_per_sm * limits.multiprocessors:
            return (f"{name}'s 2 * {grid} = {need} blocks cannot be co-resident ({k.blocks_per_sm} "
                    f"block(s) of {THREADS} threads per multiprocessor, on "
                    f"{limits.multiprocessors} multiprocessors)")
    return None


def unavailable_reason(backend):
    """None when the persistent kernels build and launch on `backend` at all (the smallest
    problem), else why not: what `gpu-bptt info` reports."""
    try:
        backend.resolve_algo("persistent", 1, 1, 1, np.float32)
    except ValueError as e:
        return str(e)
    return None


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
    for name in (c for c in registry.CELLS if c != "elman") if limits.cooperative else ():
        g = {(np.dtype(d).name, B): cell_max_hidden(limits, B, d, version, name)
             for d in (np.float32, np.float64) for B in (1, BATCH_CHUNK)}
        lines.append(f"persistent, {name.upper()} ({version}): largest H: float32 "
                     f"{g['float32', 1]} at B=1, {g['float32', BATCH_CHUNK]} at "
                     f"B>={BATCH_CHUNK}; float64 {g['float64', 1]} at B=1, "
                     f"{g['float64', BATCH_CHUNK]} at B>={BATCH_CHUNK}")
    return lines


# -- the tensor-core kernels: 16-bit storage, or float32 in TF32 mode (kernels/elman_persistent_tc_*.cu)
# Each block keeps its units' columns of V (bfloat16, float16, or float32 holding TF32 operands)
# with every row padded to whole 32-byte k-steps and 16 bytes more (bank groups; persistent_tc.cuh),
# a chunk of min(B, 16) batch rows (mma's m is 16) and 8 x 128 float32 partial tiles. The grid
# and columns per block are the float kernels'; only the bytes differ. Elman only; one version.
TC_CONSTANTS = registry.PERSIST_TC_CONSTANTS
TC_BATCH_CHUNK = TC_CONSTANTS["PTC_BATCH"]
TC_FILES = (registry.PERSIST_TC_FWD.file, registry.PERSIST_TC_BWD.file)  # in launch order
TC_VERSION = "v1"
TC_CELLS = ("elman",)  # the cells with tensor-core persistent kernels
#: bytes per element by the storage dtype's name (float32: the TF32 kernels)
TC_ITEMSIZE = {"bfloat16": 2, "float16": 2, "float32": 4}


def _tc_itemsize(dtype) -> int:
    if dtype not in TC_ITEMSIZE:
        raise ValueError(f"dtype: the tensor-core persistent kernels take {tuple(TC_ITEMSIZE)}, "
                         f"got {dtype!r}")
    return TC_ITEMSIZE[dtype]


def tc_row(K, dtype) -> int:
    """Elements per row of the slice and of the chunk: K padded to whole k-steps, plus 16 bytes."""
    size = _tc_itemsize(dtype)
    step = TC_CONSTANTS["PTC_KSTEP"] // size
    return cdiv(K, step) * step + TC_CONSTANTS["PTC_PAD"] // size


def tc_smem_bytes(B, K, ncols, dtype) -> int:
    """Dynamic shared memory of one tensor-core block: `ncols` rows of the slice and min(B, 16)
    rows of the chunk, each tc_row(K) elements, and the float32 partial tiles."""
    return ((ncols + min(B, TC_BATCH_CHUNK)) * tc_row(K, dtype) * _tc_itemsize(dtype)
            + TC_CONSTANTS["PTC_RED"] * 4)


def tc_plan(limits: DeviceLimits, B, H, dtype) -> Geometry:
    """The launch geometry of the tensor-core kernels for a (B, H) problem in storage dtype
    `dtype` ("bfloat16", "float16", or "float32" for TF32); ValueError naming the limit where
    V's slice does not fit."""
    if not limits.cooperative:
        raise ValueError("algo='persistent' cannot run: the device does not support cooperative "
                         "launches")
    cols = cdiv(H, limits.multiprocessors)
    smem = tc_smem_bytes(B, H, cols, dtype)
    if smem > limits.smem_per_block:
        raise ValueError(
            f"algo='persistent' cannot run: V's slice does not fit on chip: H={H} needs {smem} "
            f"bytes of shared memory per block ({cols} columns of V and {min(B, TC_BATCH_CHUNK)} "
            f"batch rows of {tc_row(H, dtype)} x {_tc_itemsize(dtype)} bytes, over "
            f"{limits.multiprocessors} multiprocessors), above the device's "
            f"{limits.smem_per_block} bytes per block; the largest H that fits here is "
            f"{tc_max_hidden(limits, B, dtype)}")
    return Geometry(grid=cdiv(H, cols), cols=cols, smem=smem)


def tc_max_hidden(limits: DeviceLimits, B, dtype) -> int:
    """The largest H the tensor-core kernels take on this device at batch B in `dtype`."""
    return _last_fitting(lambda H: tc_smem_bytes(B, H, cdiv(H, limits.multiprocessors), dtype)
                         <= limits.smem_per_block)


def tc_check(limits: DeviceLimits, B, H, dtype, kernels) -> Geometry:
    """check for the tensor-core kernels: tc_plan's geometry, after checking that both kernels
    build and their grid can be co-resident (`kernels`: KernelFacts of TC_FILES at its
    shared memory); ValueError naming the limit otherwise."""
    geo = tc_plan(limits, B, H, dtype)
    _check_kernels(limits, geo, TC_VERSION, kernels, TC_FILES)
    return geo
