"""The skip rule (tests/conftest.py): in CI only hardware skips pass, by cause code, not by the
message's wording; elsewhere every skip is counted by cause in a warning block at the end."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TESTS = '''
import pytest
from tests.skips import EMULATOR, GPU, GPU_PRESENT, GPU_SIZE, skip

def test_no_gpu():
    skip(GPU, "nothing to see")

def test_gpu_present():
    skip(GPU_PRESENT, "a CUDA device is present: the missing-GPU error cannot be provoked here")

def test_too_small():
    skip(GPU_SIZE, "H=9000 does not fit this device's shared memory")

def test_no_compiler():
    skip(EMULATOR, "no CUDA device: g++ is missing")  # the old text rule let this pass

def test_same_words_other_cause():
    skip(EMULATOR, "nothing to see")

def test_plain():
    pytest.skip("no CUDA device, says the text")

def test_runs():
    assert True
'''

MODULE = '''
from tests.skips import TORCH, import_or_skip
import_or_skip("no_such_module_here", TORCH, "PyTorch is not installed")

def test_never_collected():
    pass
'''


def _pytest(tmp_path, strict):
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F401,F403\n")
    (tmp_path / "test_some.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "test_module.py").write_text(textwrap.dedent(MODULE))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GPU_BPTT_STRICT_SKIPS", None)
    if strict:
        env["GPU_BPTT_STRICT_SKIPS"] = "1"
    out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-rA", "-p", "no:cacheprovider",
                          "--continue-on-collection-errors",
                          str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    return out.stdout + out.stderr


def _outcomes(text):
    """{test name: PASSED/FAILED/SKIPPED} from the verbose lines, and {module: ERROR}."""
    got = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "::" in parts[0] and parts[1] in ("PASSED", "FAILED", "SKIPPED"):
            got[parts[0].split("::")[-1]] = parts[1]
        elif len(parts) >= 2 and parts[0] == "ERROR" and parts[1].endswith(".py"):
            got[parts[1]] = "ERROR"
    return got


def test_ci_allows_only_hardware_skips(tmp_path):
    text = _pytest(tmp_path, strict=True)
    got = _outcomes(text)
    assert got.get("test_runs") == "PASSED", text
    for name in ("test_no_gpu", "test_gpu_present", "test_too_small"):
        assert got.get(name) == "SKIPPED", text
    for name in ("test_no_compiler", "test_same_words_other_cause", "test_plain"):
        assert got.get(name) == "FAILED", text
    assert "skipped in CI, where it must run (cause: emulator" in text
    assert "skipped in CI, where it must run (cause: none given" in text
    assert got.get("test_module.py") == "ERROR", text  # a module skipped whole fails too


def test_summary_counts_skips_by_cause(tmp_path):
    text = _pytest(tmp_path, strict=False)
    summary = text[text.index("skipped tests by cause"):]
    assert "2 skipped: the kernel emulator cannot run" in summary, summary
    assert "1 skipped: PyTorch (or a feature of it) is missing" in summary, summary
    assert "1 skipped: no cause given, e.g. no CUDA device, says the text" in summary, summary
    for what in ("no usable CUDA device", "a CUDA device is present",
                 "the CUDA device is too small for the case"):
        assert f"1 skipped: {what}" in summary, summary
    assert "WARNING: 4 skip(s) above are not about the GPU" in summary, summary
