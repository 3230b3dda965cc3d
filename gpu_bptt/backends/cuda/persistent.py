"""The persistent algorithm's limits: the whole recurrence in one cooperative launch (kernels/
<cell>_persistent_fwd.cu and <cell>_persistent_bwd.cu). Pure functions of the device's facts
(DeviceLimits, KernelFacts), gathered by the backend first; the launches are launchers.py's and
the "auto" rule is rules.py's.

Each of `grid` blocks (at most one per multiprocessor) owns `cols = ceil(H / multiprocessors)`
hidden units and keeps their columns of V (rows, backward) in shared memory for all T steps, plus
one chunk of at most 8 batch rows of the previous state, so a block needs
(cols + min(B, 8)) * H * itemsize bytes of dynamic shared memory for Elman (v2 adds 8 * 64
elements for its cross-warp sums). A cell with G gates keeps all G gate columns of its units:
(G * cols + min(B, 8)) * H forward, and (cols + min(B, 8)) * G * H backward (rows of V, G·H long,
and a chunk of the gates' gradients), the larger of which the plan holds (CELL_SLICES). The
algorithm runs where that fits the device's per-block limit and the grid can be co-resident
(every block resident at once, which a grid barrier needs). Kernel versions (the backend's `persist` option,
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


def cell_files(cell="elman") -> tuple:
    """The persistent kernel files of `cell`, in launch order."""
    if cell not in registry.PERSIST_BY_CELL:
        raise ValueError(f"cell: expected one of {tuple(registry.PERSIST_BY_CELL)}, got {cell!r}")
    return tuple(f.file for f in registry.PERSIST_BY_CELL[cell])
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
    """Dynamic shared memory of one block: `ncols` columns of V (rows, backward), each K long, one
    batch chunk (bc x K) and, for v2, the cross-warp sums (Elman: ncols = cols, K = H)."""
    extra = registry.PERSIST_REDUCTION[version]
    return ((ncols + min(B, BATCH_CHUNK)) * K + extra) * itemsize


def plan(limits: DeviceLimits, B, H, dtype, version=DEFAULT_VERSION, static_smem=0, *, gates=1,
         K=None) -> Geometry:
    """The launch geometry for a (B, H) problem; ValueError naming the limit where it cannot run.
    Each block owns cols hidden units and keeps `gates` columns of V per unit, each K long (K = H
    by default): a gated cell's forward has gates = G, its backward gates = 1 and K = G·H."""
    itemsize = np.dtype(dtype).itemsize
    K = H if K is None else K
    if not limits.cooperative:
        raise ValueError("algo='persistent' cannot run: the device does not support cooperative "
                         "launches")
    cols = cdiv(H, limits.multiprocessors)
    smem = smem_bytes(B, K, gates * cols, itemsize, version)
    if smem + static_smem > limits.smem_per_block:
        largest = max_hidden(limits, B, dtype, version, static_smem, gates=gates, k_per_h=K / H)
        raise ValueError(
            f"algo='persistent' cannot run: V's slice does not fit on chip: H={H} needs "
            f"{smem + static_smem} bytes of shared memory per block ({gates * cols} columns of V "
            f"and {min(B, BATCH_CHUNK)} batch rows of {K} x {itemsize} bytes, over "
            f"{limits.multiprocessors} multiprocessors), above the device's "
            f"{limits.smem_per_block} bytes per block; the largest H that fits here is {largest}")
    return Geometry(grid=cdiv(H, cols), cols=cols, smem=smem)


def max_hidden(limits: DeviceLimits, B, dtype, version=DEFAULT_VERSION, static_smem=0, *,
               gates=1, k_per_h=1) -> int:
    """The largest H the persistent kernels (of `version`) take on this device at batch size B,
    for `gates` columns of V per unit, each k_per_h·H long (plan's gates and K)."""
    itemsize = np.dtype(dtype).itemsize

    def fits(H):
        return smem_bytes(B, math.ceil(k_per_h * H), gates * cdiv(H, limits.multiprocessors),
                          itemsize, version) + static_smem <= limits.smem_per_block

    lo, hi = 0, 1
    while fits(hi):  # the need grows with H, so bisection finds the last H that fits
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


#: each cell's two persistent launches as (gates, K / H) of plan: the forward keeps G columns of V
#: per hidden unit, each H long; the backward the unit's row of V, G·H long (both give the same
#: grid and cols; the plan holds the larger shared memory, which both launches get)
CELL_SLICES = {"elman": ((1, 1), (1, 1)), "gru": ((3, 1), (1, 3))}


def cell_max_hidden(limits: DeviceLimits, B, dtype, version=DEFAULT_VERSION, cell="elman") -> int:
    """The largest H both of `cell`'s persistent kernels take on this device at batch size B."""
    if cell not in CELL_SLICES:
        raise ValueError(f"cell: expected one of {tuple(CELL_SLICES)}, got {cell!r}")
    return min(max_hidden(limits, B, dtype, version, gates=g, k_per_h=k)
               for g, k in CELL_SLICES[cell])


def cell_plan(limits: DeviceLimits, B, H, dtype, version=DEFAULT_VERSION,
              cell="elman") -> Geometry:
    """plan for the launch of `cell` that needs the most shared memory (so both fit)."""
    if cell not in CELL_SLICES:
        raise ValueError(f"cell: expected one of {tuple(CELL_SLICES)}, got {cell!r}")
    cols = cdiv(H, limits.multiprocessors)
    gates, k = max(CELL_SLICES[cell], key=lambda s: smem_bytes(B, s[1] * H, s[0] * cols, 1, version))
    return plan(limits, B, H, dtype, version, gates=gates, K=k * H)


@dataclass(frozen=True)
class KernelFacts:
    """What the backend found out about one persistent kernel for a problem: the compiler's error
    (its class and first line) where it does not build here, else how many of its blocks fit on
    one multiprocessor at the plan's shared memory (None: unknown, no occupancy query)."""

    file: str
    compile_error: Optional[str] = None
    blocks_per_sm: Optional[int] = None


def check(limits: DeviceLimits, B, H, dtype, version, kernels, cell="elman") -> Geometry:
    """The geometry for both directions of `cell`, after checking that V's slice fits, that each
    kernel builds and that its grid can be co-resident, from `kernels` (KernelFacts; after a build
    error, the later files' may be missing); ValueError naming the limit otherwise."""
    geo = cell_plan(limits, B, H, dtype, version, cell)
    facts = {k.file: k for k in kernels}
    for file in cell_files(cell):
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
    return geo


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
    if limits.cooperative:
        g = {(np.dtype(d).name, B): cell_max_hidden(limits, B, d, version, "gru")
             for d in (np.float32, np.float64) for B in (1, BATCH_CHUNK)}
        lines.append(f"persistent, GRU ({version}): largest H: float32 {g['float32', 1]} at B=1, "
                     f"{g['float32', BATCH_CHUNK]} at B>={BATCH_CHUNK}; float64 {g['float64', 1]} "
                     f"at B=1, {g['float64', BATCH_CHUNK]} at B>={BATCH_CHUNK}")
    return lines
