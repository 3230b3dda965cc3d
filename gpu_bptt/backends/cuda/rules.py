"""The cuda backend's choices, as pure functions of the request and of facts about the device
gathered first (docs/architecture.md §2): which algorithm, which kernel version, and the launch
plan that follows. Nothing here calls the backend, compiles or launches.

Rules (first guesses, to be tuned from GPU measurements with `gpu-bptt bench --tune`):
- algo "auto": persistent when B <= persistent.AUTO_MAX_BATCH and the persistent kernels can
  run (V's slice fits, they build, their grid is co-resident), else the step kernels; a fallback
  below that batch size carries its reason in `LaunchPlan.fallback` (the backend warns with it).
- reverse=True (a reversed run) follows the same rules: every kernel takes the direction per
  batch row (its flip).
- step "auto": v4 when one step's recurrent product is large (B·H·H >= V4_MIN_MACS), else v3
  (64x64 tiles) when that grid has at least two blocks per multiprocessor, else v2 (32x32).
"""
from __future__ import annotations

import numpy as np

from ..plan import LaunchPlan
from . import persistent, registry
from .registry import cdiv

V4_MIN_MACS = 1 << 26  # step "auto" takes v4 from this many multiply-adds per step's product


def step_version(choice: str, B: int, H: int, multiprocessors: int) -> tuple:
    """(version, why) of the step kernels for `choice` ("auto" or a version) at (B, H)."""
    if choice != "auto":
        return choice, f"step={choice} asked for"
    if B * H * H >= V4_MIN_MACS:
        return "v4", f"B·H·H = {B * H * H} >= {V4_MIN_MACS} multiply-adds per step"
    v3 = registry.STEP["v3"].launch
    blocks = cdiv(B, v3.rows) * cdiv(H, v3.cols)
    if blocks >= 2 * multiprocessors:
        return "v3", f"{blocks} 64x64 tiles >= 2 per multiprocessor ({multiprocessors})"
    return "v2", f"{blocks} 64x64 tiles < 2 per multiprocessor ({multiprocessors})"


def considers_persistent(algo: str, B: int) -> bool:
    """Whether the choice for `algo` at batch B depends on the persistent kernels' facts (so the
    backend gathers them only then: they cost a build and an occupancy query)."""
    return algo == "persistent" or (algo == "auto" and B <= persistent.AUTO_MAX_BATCH)


def launch_plan(algo, B, H, dtype, *, limits, kernels, step, persist, reverse=False,
                cell="elman") -> LaunchPlan:
    """The plan for a request `algo` ("auto", "step" or "persistent") at (B, H, dtype), in the
    direction `reverse`, for `cell` (the GRU follows Elman's rules; its persistent kernels need
    more shared memory: persistent.cell_plan).

    limits: the device's persistent.DeviceLimits; kernels: persistent.KernelFacts of both
    persistent kernels where considers_persistent(algo, B), else unused; step, persist:
    the backend's options. "persistent" where it cannot run raises ValueError naming the limit."""
    if algo == "step":
        return _step_plan(B, H, dtype, step, limits, "algo='step' asked for", reverse=reverse,
                          cell=cell)
    if algo == "auto" and B > persistent.AUTO_MAX_BATCH:
        return _step_plan(B, H, dtype, step, limits,
                          f"algo='auto' runs the step kernels: B={B} > "
                          f"{persistent.AUTO_MAX_BATCH} (the persistent kernels' batch limit "
                          f"for 'auto')", reverse=reverse, cell=cell)
    try:
        geo = persistent.check(limits, B, H, dtype, persist, kernels, cell)
    except ValueError as e:
        if algo == "persistent":
            raise
        return _step_plan(B, H, dtype, step, limits, "algo='auto' runs the step kernels",
                          fallback=str(e), reverse=reverse, cell=cell)
    why = ("algo='persistent' asked for" if algo == "persistent" else
           f"algo='auto' and B={B} <= {persistent.AUTO_MAX_BATCH} where it runs")
    launch = registry.PERSIST[persist].launch
    return LaunchPlan("persistent", B, H, np.dtype(dtype).name, version=persist,
                      grid=(geo.grid, 1, 1), block=launch.block, smem=geo.smem, cols=geo.cols,
                      reason=f"{why}; {geo.grid} blocks of {geo.cols} columns", reverse=reverse,
                      cell=cell)


def _step_plan(B, H, dtype, step, limits, why, fallback=None, reverse=False,
               cell="elman") -> LaunchPlan:
    version, because = step_version(step, B, H, limits.multiprocessors)
    grid, block = registry.step_geometry(version, B, H)
    return LaunchPlan("step", B, H, np.dtype(dtype).name, version=version, grid=grid,
                      block=block, product=registry.STEP[version].product,
                      reason=f"{why}; {version}: {because}", fallback=fallback, reverse=reverse,
                      cell=cell)
