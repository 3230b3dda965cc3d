"""Limits of the persistent algorithm without running it: the plan, the documented largest H,
errors naming the limit, the "auto" rule's fallbacks, and the ptxas report (no spills, nothing
but dynamic shared memory deciding co-residency)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpu_bptt import nvrtc
from gpu_bptt.backends.cuda import persistent as P
from gpu_bptt.backends.cuda import rules
from gpu_bptt.backends.cuda.backend import CudaBackend
from gpu_bptt.backends.cuda.kernel_loader import (CUPY_ADDED_OPTIONS, OPTIONS, kernel_source,
                                             name_expressions)
from tests.skips import NVRTC, skip

DOC = Path(__file__).resolve().parents[2] / "docs" / "persistent.md"


def test_plan_splits_columns_over_the_multiprocessors():
    limits = P.KNOWN_DEVICES["sm_90"]
    pl = P.plan(limits, 8, 1024, np.float32, "v1")
    assert (pl.grid, pl.cols, pl.smem) == (128, 8, (8 + 8) * 1024 * 4)
    pl = P.plan(limits, 8, 1024, np.float32)  # v2 adds 8 warps x 64 partial sums
    assert P.DEFAULT_VERSION == "v2" and pl.smem == ((8 + 8) * 1024 + 8 * 64) * 4
    pl = P.plan(P.DeviceLimits(4, 48 * 1024), 3, 13, np.float64)
    assert (pl.grid, pl.cols, pl.smem) == (4, 4, ((4 + 3) * 13 + 8 * 64) * 8)  # last: 1 column
    assert P.plan(P.DeviceLimits(4, 48 * 1024), 1, 6, np.float32).grid == 3


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_max_hidden_is_the_last_h_that_fits(arch):
    limits = P.KNOWN_DEVICES[arch]
    for B in (1, 8, 64):
        for dt in (np.float32, np.float64):
            for version in P.VERSIONS:
                H = P.max_hidden(limits, B, dt, version)
                P.plan(limits, B, H, dt, version)
                with pytest.raises(ValueError):
                    P.plan(limits, B, H + 1, dt, version)


def test_documented_limits_match_the_code():
    text = DOC.read_text(encoding="utf-8")
    for arch, limits in P.KNOWN_DEVICES.items():
        row = next(line for line in text.splitlines() if f"({arch})" in line and line.startswith("|"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        want = [P.max_hidden(limits, 1, np.float32), P.max_hidden(limits, 8, np.float32),
                P.max_hidden(limits, 1, np.float64), P.max_hidden(limits, 8, np.float64)]
        assert [int(c) for c in cells[-4:]] == want, row
        assert int(cells[1]) == limits.multiprocessors
        assert f"({limits.smem_per_block} B)" in cells[2]


def test_plan_error_names_the_limit():
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: V's slice does not fit "
                                         r"on chip: H=2048 .* 166912 bytes per block; the largest H "
                                         r"that fits here is 1728"):
        P.plan(P.KNOWN_DEVICES["sm_80"], 8, 2048, np.float32, "v1")
    with pytest.raises(ValueError, match=r"H=2048 needs 223232 bytes .* is 1717"):
        P.plan(P.KNOWN_DEVICES["sm_80"], 8, 2048, np.float32)  # v2: 2 KB more for its sums
    with pytest.raises(ValueError, match="cooperative launches"):
        P.plan(P.DeviceLimits(4, 1 << 20, cooperative=False), 1, 8, np.float32)


class FakeBackend(CudaBackend):
    """The cuda backend's own planning on a stand-in device: its limits, its occupancy answer
    (`per_sm`) and a loader whose kernels are their names (or fail to build with `build_error`).
    Records each fact it is asked for in `asked`."""

    kind = "fake"

    def __init__(self, limits, per_sm=1, build_error=None):
        self.limits, self.per_sm, self.build_error, self.asked = limits, per_sm, build_error, []
        self._setup(np, self, None, None, None)  # the loader is self

    def device(self):
        return "fake"

    def function(self, file, name):
        self.asked.append(("build", name))
        if self.build_error:
            raise RuntimeError(self.build_error)
        return name

    def persistent_limits(self):
        return self.limits

    def persistent_blocks_per_sm(self, fn, smem):
        self.asked.append(("occupancy", fn, smem))
        return self.per_sm


@pytest.fixture
def fresh_warnings(monkeypatch):
    from gpu_bptt.backends import notices

    monkeypatch.setattr(notices, "_warned", set())


def algo(bk, request, B, H, dtype=np.float32):
    return bk.resolve_algo(request, 1, B, H, dtype).algo


def test_auto_rule_and_warned_fallbacks(caplog, fresh_warnings):
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024))
    assert algo(bk, "step", 1, 8) == "step"
    assert algo(bk, "auto", P.AUTO_MAX_BATCH, 8) == "persistent"
    assert algo(bk, "persistent", 1000, 8) == "persistent"
    with caplog.at_level(logging.DEBUG, logger="gpu_bptt"):  # the rule itself: logged only
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert algo(bk, "auto", P.AUTO_MAX_BATCH + 1, 8) == "step"
    msgs = [r.getMessage() for r in caplog.records]
    assert any(f"B={P.AUTO_MAX_BATCH + 1} > {P.AUTO_MAX_BATCH}" in m for m in msgs), msgs
    with pytest.warns(RuntimeWarning, match="algo='auto' runs the step kernels: algo='persistent' "
                                            "cannot run: V's slice does not fit on chip: H=512"):
        assert algo(bk, "auto", 2, 512) == "step"


def test_grid_that_cannot_be_co_resident_is_an_error_or_a_fallback(fresh_warnings):
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024), per_sm=0)
    with pytest.raises(ValueError, match="cannot be co-resident"):
        algo(bk, "persistent", 2, 16)
    with pytest.warns(RuntimeWarning, match="cannot be co-resident"):
        assert algo(bk, "auto", 2, 16) == "step"


def test_unknown_co_residency_is_an_error_or_a_fallback(fresh_warnings):
    """No occupancy query (None): the launch could be shrunk or fail, so it is not attempted."""
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024), per_sm=None)
    with pytest.raises(ValueError, match="co-resident is unknown"):
        algo(bk, "persistent", 2, 16)
    with pytest.warns(RuntimeWarning, match="co-resident is unknown"):
        assert algo(bk, "auto", 2, 16) == "step"
    assert "co-resident is unknown" in P.unavailable_reason(bk)
    assert P.unavailable_reason(FakeBackend(P.DeviceLimits(4, 48 * 1024))) is None


def test_kernels_that_do_not_compile_are_an_error_or_a_warned_fallback(fresh_warnings):
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024),
                     build_error='kern.cu(65): catastrophic error: could not open source file '
                                 '"cooperative_groups.h"\nCompilation terminated.')
    with pytest.raises(ValueError, match=r"algo='persistent' cannot run: elman_persistent_fwd.cu "
                                         r"does not compile here \(RuntimeError: .*cooperative_groups"):
        algo(bk, "persistent", 2, 16)
    with pytest.warns(RuntimeWarning, match=r"algo='auto' runs the step kernels: .* does not compile"):
        assert algo(bk, "auto", 2, 16) == "step"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per cause
        assert algo(bk, "auto", 2, 16) == "step"


# -- the launch plan -------------------------------------------------------------------------------
def test_plan_is_made_once_per_problem_from_facts_gathered_first(fresh_warnings):
    """The device's facts (a build and an occupancy query per persistent kernel) are gathered once
    per problem; asking again, as the backward and the framework paths do, returns the same plan."""
    bk = FakeBackend(P.DeviceLimits(4, 48 * 1024))
    plan = bk.resolve_algo("auto", 5, 3, 24, np.float32)
    asked = [a[0] for a in bk.asked]
    assert asked == ["build", "occupancy", "build", "occupancy"], bk.asked
    assert bk.resolve_algo("auto", 5, 3, 24, np.float32) is plan and len(bk.asked) == 4
    assert (plan.algo, plan.version, plan.grid, plan.block, plan.cols) == (
        "persistent", "v2", (4, 1, 1), (P.THREADS, 1, 1), 6)
    assert plan.smem == P.smem_bytes(3, 24, 6, 4) and plan.fallback is None
    assert "B=3 <= 32" in plan.reason
    other = bk.resolve_algo("auto", 5, 3, 24, np.float64)  # another problem: its own facts
    assert other is not plan and other.smem == 2 * plan.smem and len(bk.asked) == 8
    # the step kernels need no persistent facts at all
    assert bk.resolve_algo("step", 5, 3, 24, np.float32).label == "step v2" and len(bk.asked) == 8
    assert bk.resolve_algo("auto", 5, 33, 24, np.float32).algo == "step" and len(bk.asked) == 8


def test_rules_are_a_pure_function_of_the_facts():
    """rules.launch_plan gets every fact it uses as an argument: it needs no backend at all."""
    limits = P.DeviceLimits(4, 48 * 1024)
    kernels = tuple(P.KernelFacts(f, blocks_per_sm=1) for f in P.FILES)
    plan = rules.launch_plan("auto", 3, 24, np.float64, limits=limits, kernels=kernels,
                             step="auto", persist="v1")
    assert (plan.label, plan.grid, plan.smem) == ("persistent v1", (4, 1, 1), (6 + 3) * 24 * 8)
    short = (P.KernelFacts(P.FWD_FILE, blocks_per_sm=1), P.KernelFacts(P.BWD_FILE, blocks_per_sm=0))
    plan = rules.launch_plan("auto", 3, 24, np.float64, limits=limits, kernels=short,
                             step="v3", persist="v1")
    assert (plan.label, plan.grid, plan.block) == ("step v3", (1, 1, 1), (16, 16, 1))
    assert "elman_persistent_bwd_v1 fits 0 block(s)" in plan.fallback
    with pytest.raises(LookupError, match="kernels: no KernelFacts for elman_persistent_bwd.cu"):
        rules.launch_plan("auto", 3, 24, np.float64, limits=limits, kernels=kernels[:1],
                          step="auto", persist="v1")  # a missing fact is no reason to fall back
    plan = rules.launch_plan("step", 300, 1024, np.float32, limits=limits, kernels=(),
                             step="auto", persist="v2")
    assert (plan.label, plan.product, plan.grid, plan.block) == (
        "step v4", "library", (-(-300 * 1024 // 256), 1, 1), (256, 1, 1))
    assert "B·H·H = 314572800 >= 67108864" in plan.reason


def test_describe_reports_limits_and_rule():
    lines = P.describe(P.KNOWN_DEVICES["sm_90"])
    assert "132 blocks" in lines[0] and "232448 bytes" in lines[0]
    assert "persistent (v2): largest H: float32 2640 at B=1, 2244 at B>=8" in lines[1]
    assert "float32 2641 at B=1" in P.describe(P.KNOWN_DEVICES["sm_90"], "v1")[1]
    assert f"B <= {P.AUTO_MAX_BATCH}" in lines[2]
    lines = P.describe(P.KNOWN_DEVICES["sm_90"], reason="no occupancy query")
    assert lines[2] == ("persistent: UNAVAILABLE here, algo='auto' always runs the step kernels: "
                        "no occupancy query")


@pytest.fixture(scope="module")
def ptxas():
    reason = nvrtc.unavailable_reason() or nvrtc.headers_unavailable_reason()
    if reason:
        skip(NVRTC, f"NVRTC cannot compile the persistent kernels here: {reason}")
    rows = {}
    for file in (P.FWD_FILE, P.BWD_FILE):
        for arch in ("sm_80", "sm_90"):
            report = nvrtc.resources(kernel_source(file), name=file, arch=arch,
                                     name_expressions=name_expressions(file),
                                     options=OPTIONS + CUPY_ADDED_OPTIONS)
            rows.update({(expr, arch): r for expr, r in report.items()})
    return rows


def test_ptxas_no_spills_and_only_dynamic_shared_memory(ptxas):
    for (name, arch), r in ptxas.items():
        assert not r["spill_stores"] and not r["spill_loads"], f"{name} {arch} spills: {r}"
        assert r["shared_bytes"] == 0, f"{name} {arch}: static shared memory {r['shared_bytes']}"
        # One block of 256 threads per multiprocessor (the launch bounds) must fit the 64K
        # registers of a multiprocessor, so that registers never decide co-residency.
        assert r["registers"] * P.THREADS <= 65536, f"{name} {arch}: {r['registers']} registers"


def test_documented_registers_match_ptxas(ptxas):
    text = DOC.read_text(encoding="utf-8")
    for name in {n for n, _ in ptxas}:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        got = (ptxas[(name, "sm_80")]["registers"], ptxas[(name, "sm_90")]["registers"])
        assert (int(cells[1]), int(cells[2])) == got, (
            f"docs/persistent.md lists {cells[1:3]} registers for {name}, ptxas (NVRTC "
            f"{'.'.join(map(str, nvrtc.version()))}) reports {got}: update the table")
