import os

import numpy as np
import pytest

from tests import skips


def random_problem(T, B, I, H, dtype=np.float64, seed=0, bias=True, h0=True, lengths=False, scale=0.6):
    """A seeded Elman problem: dict of x, W, V, b, h0, lengths, dh, dh_last."""
    r = np.random.default_rng(seed)
    p = dict(
        x=r.standard_normal((T, B, I)),
        W=r.standard_normal((I, H)) * scale / np.sqrt(I),
        V=r.standard_normal((H, H)) * scale / np.sqrt(H),
        b=r.standard_normal(H) * 0.3 if bias else None,
        h0=r.standard_normal((B, H)) * 0.5 if h0 else None,
        dh=r.standard_normal((T, B, H)),
        dh_last=r.standard_normal((B, H)),
    )
    p = {k: (None if v is None else v.astype(dtype)) for k, v in p.items()}
    p["lengths"] = r.integers(1, T + 1, size=B) if lengths else None
    if lengths and B > 1:
        p["lengths"][0] = T  # at least one full-length example
    return p


@pytest.fixture
def problem():
    return random_problem


def _strict():
    return os.environ.get("GPU_BPTT_STRICT_SKIPS") == "1"


def _enforce(report):
    """In CI ($GPU_BPTT_STRICT_SKIPS=1, set by .ci/run) only hardware skips may pass: a missing
    NVRTC, emulator or PyTorch there is a broken install, not a reason to pass silently."""
    if not (_strict() and report.skipped):
        return
    cause = skips.cause_of(report)
    if cause not in skips.HARDWARE_CAUSES:
        reason = skips.message_of(report)
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI, where it must run (cause: {cause or 'none given'}; "
                           f"only {', '.join(skips.HARDWARE_CAUSES)} may skip): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _enforce(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _enforce(outcome.get_result())  # a module skipped whole (e.g. no PyTorch)


def pytest_terminal_summary(terminalreporter):
    """Count the skips by cause; anything but a missing GPU is a warning: those tests did not
    check what they are for."""
    counts, examples = {}, {}
    for report in terminalreporter.stats.get("skipped", []):
        cause = skips.cause_of(report)
        if cause is None:
            cause = "other"
            examples.setdefault(cause, skips.message_of(report))
        counts[cause] = counts.get(cause, 0) + 1
    if not counts:
        return
    tw = terminalreporter
    missing = {c: n for c, n in counts.items() if c not in skips.HARDWARE_CAUSES}
    tw.section("skipped tests by cause", sep="=", yellow=bool(missing), bold=bool(missing))
    for cause, n in sorted(counts.items(), key=lambda kv: (kv[0] not in missing, -kv[1])):
        what = skips.CAUSES.get(cause) or f"no cause given, e.g. {examples[cause]}"
        tw.line(f"{n:5d} skipped: {what}", red=cause in missing)
    if missing:
        n = sum(missing.values())
        tw.line(f"WARNING: {n} skip(s) above are not about the GPU: this machine lacks tools the "
                f"tests need, so they passed without checking anything. Install what is named "
                f"above (CI fails on these: $GPU_BPTT_STRICT_SKIPS=1).", red=True, bold=True)
