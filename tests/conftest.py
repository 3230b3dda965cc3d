import os

import pytest

from tests import executors, skips


def pytest_configure(config):
    config.addinivalue_line("markers", "executors(*names): run the test on these executors only "
                                       "(tests/executors.py; default: all of them)")
    config.addinivalue_line("markers", "backend_options(**choices): run the test's `backend` with "
                                       "each combination of these options (tests/executors.py)")


def pytest_generate_tests(metafunc):
    executors.generate(metafunc)


@pytest.fixture
def executor(request):
    """The executor of this run (an executors.Executor); skips, with its cause, where it cannot
    run here (cuda without a device: cause GPU, the one CI allows)."""
    ex = executors.Executor(request.param)
    ex.require()
    return ex


@pytest.fixture
def backend(executor, backend_options):
    """The executor's backend with this run's options (parametrized by executors.generate)."""
    return executor.backend(**backend_options)


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
