"""The cuda backend's choices, as pure functions of the request and of facts about the device
gathered first (docs/architecture.md §2): which algorithm, which kernel version, and the launch
plan that follows. Nothing here calls the backend, compiles or launches.

Rules (first guesses, to be tuned from GPU measurements with `gpu-bptt bench --tune`):
- algo "auto": persistent when B <= persistent.AUTO_MAX_BATCH and the persistent kernels can
  run (V's slice fits, they build, their grid is co-resident), else the step kernels; a fallback
  below that batch size carries its reason in `LaunchPlan.fallback` (the backend warns with it).
- reverse=True (a reversed run) follows the same rules: every kernel takes the direction per
  batch row (its flip).
- step "auto": v4 when one step's recurrent product is large (B·H·H >= V4_MIN_MACS; a gated
  cell's B·Hs·G·H), else v3 (64x64 tiles; the LSTM's 64x32) when that grid has at least two
  blocks per multiprocessor, else v2 (32x32).
- the tensor-core modes (bfloat16, float16, float32 with TF32; tc_plan): the same algo rules
  with the tensor-core persistent kernels (Elman only: persistent.TC_CELLS) and the step
  kernels' tc1; a cell without those persistent kernels refuses "persistent" and "auto" runs tc1.
- cell: every rule is the same for each cell (registry.CELLS); an LSTM's projection (P > 0)
  adds R's slice to the persistent kernels' shared memory (persistent.plan's proj).
"""
from __future__ import annotations

import numpy as np

from ..plan import LaunchPlan
from . import persistent, registry
from .registry import cdiv

V4_MIN_MACS = 1 << 26  # step "auto" takes v4 from this many multiply-adds per step's product


def step_version(choice: str, B: int, H: int, multiprocessors: int, cell="elman", P=0) -> tuple:
    """(version, why) of the step kernels for `choice` ("auto" or a version) at (B, H) for a
    cell (registry.CELLS; P: an LSTM's proj_size, the fed-back state's size when > 0)."""
    if choice != "auto":
        return choice, f"step={choice} asked for"
    spec = registry.cell(cell)
    macs = B * (P or H) * spec.gates * H  # one step's product: (B, Hs) @ (Hs, G·H)
    if macs >= V4_MIN_MACS:
        term = "B·H·H" if spec.gates == 1 else f"B·{'P' if P else 'H'}·{spec.gates}H"
        return "v4", f"{term} = {macs} >= {V4_MIN_MACS} multiply-adds per step"
    v3 = spec.step["v3"].launch
    blocks = cdiv(B, v3.rows) * cdiv(H, v3.cols)
    tiles = f"{v3.rows}x{v3.cols} tiles"
    if blocks >= 2 * multiprocessors:
        return "v3", f"{blocks} {tiles} >= 2 per multiprocessor ({multiprocessors})"
    return "v2", f"{blocks} {tiles} < 2 per multiprocessor ({multiprocessors})"


def considers_persistent(algo: str, B: int) -> bool:
    """Whether the choice for `algo` at batch B depends on the persistent kernels' facts (so the
    backend gathers them only then: they cost a build and an occupancy query)."""
    return algo == "persistent" or (algo == "auto" and B <= persistent.AUTO_MAX_BATCH)


def launch_plan(algo, B, H, dtype, *, limits, kernels, step, persist, reverse=False,
                cell="elman", P=0) -> LaunchPlan:
    """The plan for a request `algo` ("auto", "step" or "persistent") at (B, H, dtype), in the
    direction `reverse`, for a cell (registry.CELLS; P: an LSTM's proj_size).

    limits: the device's persistent.DeviceLimits; kernels: persistent.KernelFacts of both
    persistent kernels where considers_persistent(algo, B), else unused; step, persist:
    the backend's options. "persistent" where it cannot run raises ValueError naming the limit."""
    spec = registry.cell(cell)
    same = dict(reverse=reverse, cell=cell, P=P)
    if algo == "step":
        return _step_plan(B, H, dtype, step, limits, "algo='step' asked for", **same)
    if algo == "auto" and B > persistent.AUTO_MAX_BATCH:
        return _step_plan(B, H, dtype, step, limits,
                          f"algo='auto' runs the step kernels: B={B} > "
                          f"{persistent.AUTO_MAX_BATCH} (the persistent kernels' batch limit "
                          f"for 'auto')", **same)
    try:
        geo = persistent.check(limits, B, H, dtype, persist, kernels, gates=spec.gates,
                               files=(spec.persist_fwd.file, spec.persist_bwd.file), proj=P)
    except ValueError as e:
        if algo == "persistent":
            raise
        return _step_plan(B, H, dtype, step, limits, "algo='auto' runs the step kernels",
                          fallback=str(e), **same)
    why = ("algo='persistent' asked for" if algo == "persistent" else
           f"algo='auto' and B={B} <= {persistent.AUTO_MAX_BATCH} where it runs")
    launch = registry.PERSIST[persist].launch
    return LaunchPlan("persistent", B, H, np.dtype(dtype).name, version=persist,
                      grid=(geo.grid, 1, 1), block=launch.block, smem=geo.smem, cols=geo.cols,
                      reason=f"{why}; {geo.grid} blocks of {geo.cols} columns", **same)


def _step_plan(B, H, dtype, step, limits, why, fallback=None, reverse=False, cell="elman",
               P=0) -> LaunchPlan:
    version, because = step_version(step, B, H, limits.multiprocessors, cell, P)
    table = registry.cell(cell).step
    grid, block = registry.step_geometry(version, B, H, table)
    return LaunchPlan("step", B, H, np.dtype(dtype).name, version=version, grid=grid,
                      block=block, product=table[version].product,
                      reason=f"{why}; {version}: {because}", fallback=fallback, reverse=reverse,
                      cell=cell, P=P)


# -- the precision modes on the tensor cores (docs/architecture.md §1, precision modes) -----------
def mode_name(dtype, tf32=False) -> str:
    """A precision mode in words: "bfloat16", "float16", "float32 with TF32"."""
    return np.dtype(dtype).name + " with TF32" * bool(tf32)


def tc_plan(algo, B, H, dtype, *, step, tf32=False, reverse=False, cell="elman", P=0,
            limits=None, kernels=()) -> LaunchPlan:
    """The plan of a tensor-core mode (a 16-bit dtype, or float32 with tf32), by the float rules
    of launch_plan: the persistent tensor-core kernels (persistent.tc_check's geometry, version
    persistent.TC_VERSION) for "persistent", and for "auto" where B <= AUTO_MAX_BATCH and they
    can run (else tc1, the fallback's reason in `fallback`); otherwise the step kernels' tc1
    (registry.TC_STEP). limits, kernels: as launch_plan's, the KernelFacts of
    persistent.TC_FILES (needed where the cell has them and considers_persistent(algo, B)).
    ValueError naming the option where the request asks for kernels these modes lack: the
    persistent algorithm of a cell without them (persistent.TC_CELLS), one that cannot run here
    (naming the limit), or a float step version (step= other than "auto")."""
    mode = mode_name(dtype, tf32)
    if step != "auto":
        raise ValueError(f"step: {step} runs float32 and float64; {mode} runs the tensor-core "
                         f"step kernels ({', '.join(registry.TC_STEP)}; step='auto')")
    same = dict(reverse=reverse, cell=cell, P=P, tf32=bool(tf32))
    name = np.dtype(dtype).name
    if algo == "step":
        return _tc_step_plan(B, H, name, mode, "algo='step' asked for", **same)
    if cell not in persistent.TC_CELLS:
        if algo == "persistent":
            raise ValueError(f"algo: the {cell} cell has no tensor-core persistent kernels; "
                             f"{mode} runs algo='step' (or 'auto')")
        return _tc_step_plan(B, H, name, mode, f"algo='auto' runs the step kernels (the {cell} "
                             f"cell has no persistent kernels for {mode})", **same)
    if algo == "auto" and B > persistent.AUTO_MAX_BATCH:
        return _tc_step_plan(B, H, name, mode, f"algo='auto' runs the step kernels: B={B} > "
                             f"{persistent.AUTO_MAX_BATCH} (the persistent kernels' batch limit "
                             f"for 'auto')", **same)
    try:
        geo = persistent.tc_check(limits, B, H, name, kernels)
    except ValueError as e:
        if algo == "persistent":
            raise
        return _tc_step_plan(B, H, name, mode, "algo='auto' runs the step kernels",
                             fallback=str(e), **same)
    why = ("algo='persistent' asked for" if algo == "persistent" else
           f"algo='auto' and B={B} <= {persistent.AUTO_MAX_BATCH} where it runs")
    launch = registry.PERSIST_TC[persistent.TC_VERSION].launch
    return LaunchPlan("persistent", B, H, name, version=persistent.TC_VERSION,
                      grid=(geo.grid, 1, 1), block=launch.block, smem=geo.smem, cols=geo.cols,
                      reason=f"{why}; the tensor-core persistent kernels of {mode}: {geo.grid} "
                      f"blocks of {geo.cols} columns", **same)


def _tc_step_plan(B, H, name, mode, why, **same) -> LaunchPlan:
    version = next(iter(registry.TC_STEP))
    grid, block = registry.step_geometry(version, B, H, registry.TC_STEP)
    return LaunchPlan("step", B, H, name, version=version, grid=grid, block=block,
                      reason=f"{why}; {version}: the tensor-core step kernels of {mode}", **same)
