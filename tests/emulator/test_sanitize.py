"""The bounds-checking build (ASan + UBSan, run in a child process) finds out-of-bounds reads."""
import numpy as np
import pytest

from emulator_helpers import module
from gpu_bptt.emulator import KernelFault
from tests.skips import require_sanitizer


@pytest.fixture(scope="module")
def sanitized():
    require_sanitizer()
    return module("faults.cu", sanitize=True)


def test_static_shared_out_of_bounds_read_is_reported(sanitized):
    x, y = np.arange(32, dtype=np.float32), np.zeros(32, np.float32)
    with pytest.raises(KernelFault, match=r"(?s)'static_smem_oob'.*index 32 out of bounds.*faults\.cu:26") as e:
        sanitized.get_function("static_smem_oob")(1, 32, (x, y))
    assert e.value.kind == "sanitizer"


def test_dynamic_shared_out_of_bounds_read_is_reported(sanitized):
    x, y = np.arange(32, dtype=np.float32), np.zeros(32, np.float32)
    with pytest.raises(KernelFault, match=r"(?s)'dynamic_smem_oob'.*AddressSanitizer.*faults\.cu:34") as e:
        sanitized.get_function("dynamic_smem_oob")(1, 32, (x, y), shared_mem=32 * 4)
    assert e.value.kind == "sanitizer"


def test_sanitized_launch_returns_results(sanitized):
    x = np.arange(40, dtype=np.float32)
    sanitized.get_function("axpb")(2, 32, (x, np.int32(40), np.float32(3), np.float64(-1)))
    np.testing.assert_array_equal(x, 3 * np.arange(40, dtype=np.float32) - 1)
    # reads within the requested dynamic shared memory are fine (thread 30 reads an unset slot)
    y = np.zeros(32, np.float32)
    sanitized.get_function("dynamic_smem_oob")(1, 31, (np.arange(32, dtype=np.float32), y), shared_mem=32 * 4)
    np.testing.assert_array_equal(y[:30], np.arange(1, 31, dtype=np.float32))


@pytest.mark.parametrize("n", [33, 41])
def test_access_just_past_an_array_argument_is_reported(sanitized, n):
    """Arguments are copied to 256-byte aligned buffers (as cudaMalloc aligns); the slack of that
    copy is poisoned, so that one element past the array is reported as on a malloc'd buffer."""
    x = np.arange(n - 1, dtype=np.float32)
    with pytest.raises(KernelFault, match=r"(?s)'axpb'.*AddressSanitizer.*faults\.cu") as e:
        sanitized.get_function("axpb")(2, 32, (x, np.int32(n), np.float32(3), np.float64(-1)))
    assert e.value.kind == "sanitizer"


def test_launches_after_a_report_and_a_timeout_still_run(sanitized):
    """A report ends the child that runs sanitized launches; the next launch gets a new one."""
    x = np.arange(8, dtype=np.float32)
    with pytest.raises(KernelFault) as e:
        sanitized.get_function("axpb")(1, 32, (x, np.int32(9), np.float32(2), np.float64(0)))
    assert e.value.kind == "sanitizer"
    flag, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
    with pytest.raises(KernelFault, match="did not finish within") as e:
        sanitized.get_function("spin_flag")(1, 64, (flag, out, np.int32(1)), timeout=0.5)
    assert e.value.kind == "timeout"
    sanitized.get_function("axpb")(1, 32, (x, np.int32(8), np.float32(2), np.float64(1)))
    np.testing.assert_array_equal(x, 2 * np.arange(8, dtype=np.float32) + 1)
