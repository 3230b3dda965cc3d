"""kernels/mma.cuh on the emulator: mma.sync (bf16, f16, tf32) and ldmatrix as warp collectives
with the PTX fragment layouts, against a float64 oracle of the same rounded inputs, in every thread
order and under the sanitizer; and the planted bugs they must catch.

Tolerance (the precision contract): the products of 16-bit or TF32 values are exact in float32, and
the K products plus C are summed in float32, so |D - A·B - C| <= K·2^-23·(|A|·|B| + |C|) (the
float32 sum of K+1 terms is within (K)·2^-24 of the sum of their magnitudes; a factor 2 is left
for the hardware's unspecified order). D is float32, so no output rounding is added."""
import ml_dtypes
import numpy as np
import pytest

from emulator_helpers import KERNELS_ROOT, SEED, module
from gpu_bptt.emulator import KernelFault
from tests.skips import require_sanitizer

BF16 = np.dtype(ml_dtypes.bfloat16)
CTYPES = {"bf16": ("__nv_bfloat16", BF16), "f16": ("__half", np.dtype(np.float16))}
INSTANCES = tuple(
    [f"mma16816_direct<{c}, {bug}>" for c, _ in CTYPES.values() for bug in (0, 1)]
    + ["mma16816_from_float<0>", "mma16816_from_float<1>", "mma1688_tf32_direct", "mma_tiled64_tf32",
       "mma_half_warp_exits"]
    + [f"mma_tiled64<__nv_bfloat16, {bug}>" for bug in (0, 1, 2, 3)] + ["mma_tiled64<__half, 0>"])


def _module(sanitize=False):
    return module("mma.cu", options=("-I", KERNELS_ROOT), name_expressions=INSTANCES, sanitize=sanitize)


def _tf32(x):
    """float32 -> TF32 by hand in float64 (normal values): 11 significant bits, ties away."""
    m, e = np.frexp(x.astype(np.float64))
    return np.ldexp(np.sign(m) * np.floor(np.abs(m) * 2.0**11 + 0.5), e - 11)


def _excess(D, A, B, C):
    """max over elements of |D - (A·B + C)| / (K·2^-23·(|A|·|B| + |C|)): <= 1 is within the bound."""
    a, b, c = (np.asarray(v, np.float64) for v in (A, B, C))
    bound = a.shape[1] * 2.0**-23 * (np.abs(a) @ np.abs(b) + np.abs(c))
    err = np.abs(D.astype(np.float64) - (a @ b + c))
    return float(np.max(err / np.maximum(bound, np.finfo(np.float64).tiny)))


def _operands(m, k, n, dtype, seed=SEED, c=True):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)).astype(np.float32).astype(dtype)
    B = rng.standard_normal((k, n)).astype(np.float32).astype(dtype)
    C = rng.standard_normal((m, n)).astype(np.float32) if c else np.zeros((m, n), np.float32)
    return A, B, C


def _direct(kind, bug, order, sanitize=False):
    cname, dtype = CTYPES[kind]
    A, B, C = _operands(16, 16, 8, dtype)
    D = np.zeros((16, 8), np.float32)
    _module(sanitize).get_function(f"mma16816_direct<{cname}, {bug}>")(1, 32, (A, B, C, D), order=order, seed=SEED)
    return _excess(D, A, B, C)


def _tiled(kind, bug, order, sanitize=False):
    cname, dtype = CTYPES[kind]
    A, B, C = _operands(64, 64, 64, dtype, c=False)
    D = np.zeros((64, 64), np.float32)
    _module(sanitize).get_function(f"mma_tiled64<{cname}, {bug}>")(1, 128, (A, B, D), order=order, seed=SEED)
    return _excess(D, A, B, C)


@pytest.mark.parametrize("kind", CTYPES)
def test_m16n8k16_from_registers(kind, order):
    assert _direct(kind, 0, order) <= 1


@pytest.mark.parametrize("kind", CTYPES)
def test_m16n8k16_tiled_with_ldmatrix(kind, order):
    assert _tiled(kind, 0, order) <= 1


def test_m16n8k8_tf32_from_registers(order):
    A, B, C = _operands(16, 8, 8, np.float32)
    D = np.zeros((16, 8), np.float32)
    _module().get_function("mma1688_tf32_direct")(1, 32, (A, B, C, D), order=order, seed=SEED)
    assert _excess(D, _tf32(A), _tf32(B), C) <= 1
    assert _excess(D, A, B, C) > 1  # the operands were rounded to TF32: float32's own product is off


def test_m16n8k8_tf32_tiled_with_ldmatrix(order):
    A, B, C = _operands(64, 64, 64, np.float32, c=False)
    D = np.zeros((64, 64), np.float32)
    _module().get_function("mma_tiled64_tf32")(1, 128, (A, B, D), order=order, seed=SEED)
    assert _excess(D, _tf32(A), _tf32(B), C) <= 1


def test_bf16_converted_in_registers(order):
    A, B, C = _operands(16, 16, 8, BF16)
    A32 = np.random.default_rng(3).standard_normal((16, 16)).astype(np.float32)
    D = np.zeros((16, 8), np.float32)
    _module().get_function("mma16816_from_float<0>")(1, 32, (A32, B, C, D), order=order, seed=SEED)
    assert _excess(D, A32.astype(BF16), B, C) <= 1


@pytest.fixture(scope="module")
def sanitized():
    require_sanitizer()
    return _module(sanitize=True)


def test_under_the_sanitizer(sanitized):
    for kind in CTYPES:
        assert _direct(kind, 0, "reverse", sanitize=True) <= 1
        assert _tiled(kind, 0, "reverse", sanitize=True) <= 1
    A, B, C = _operands(64, 64, 64, np.float32, c=False)
    D = np.zeros((64, 64), np.float32)
    sanitized.get_function("mma_tiled64_tf32")(1, 128, (A, B, D), order="reverse", seed=SEED)
    assert _excess(D, _tf32(A), _tf32(B), C) <= 1


# ---------------------------------------------------------------- planted bugs
@pytest.mark.parametrize("kind", CTYPES)
def test_swapped_fragment_registers_give_a_wrong_product(kind):
    assert _direct(kind, 1, "forward") > 1000


def test_float_bits_passed_as_bf16_give_a_wrong_product():
    A, B, C = _operands(16, 16, 8, BF16)
    A32 = np.random.default_rng(3).standard_normal((16, 16)).astype(np.float32)
    D = np.zeros((16, 8), np.float32)
    _module().get_function("mma16816_from_float<1>")(1, 32, (A32, B, C, D))
    assert not np.allclose(D, A32.astype(np.float64) @ B.astype(np.float64) + C, rtol=0.1, atol=0.1)


def test_misaligned_ldmatrix_address_is_reported(order):
    with pytest.raises(KernelFault, match=r"ldmatrix.*x4.*mma\.cu:\d+.*lane \d+'s row address .* is not "
                                          r"16-byte aligned") as e:
        _tiled("bf16", 1, order)
    assert e.value.kind == "address"


def test_ldmatrix_from_global_memory_is_reported():
    with pytest.raises(KernelFault, match=r"ldmatrix.*row address .* is not in shared memory") as e:
        _tiled("bf16", 3, "forward")
    assert e.value.kind == "address"


@pytest.mark.parametrize("bug, pattern", [(1, "is not 16-byte aligned"), (3, "is not in shared memory")])
def test_bad_ldmatrix_addresses_are_reported_by_the_sanitizer_build(sanitized, bug, pattern):
    with pytest.raises(KernelFault, match=pattern) as e:
        _tiled("bf16", bug, "reverse", sanitize=True)
    assert e.value.kind == "address"


def test_fragment_loaded_by_half_a_warp_is_reported(order):
    # lanes 0..15 wait in ldmatrix, lanes 16..31 in the mma that follows it
    with pytest.raises(KernelFault, match=r"divergent warp operation.*(ldmatrix|mma)") as e:
        _tiled("bf16", 2, order)
    assert e.value.kind == "divergent_barrier"


def test_mma_by_half_a_warp_is_reported(order):
    with pytest.raises(KernelFault, match=r"divergent warp operation: mma\.sync.*mma\.cu:\d+.*lanes "
                                          r"0x0000ffff only") as e:
        _module().get_function("mma_half_warp_exits")(1, 32, (np.zeros((16, 8), np.float32),), order=order)
    assert e.value.kind == "divergent_barrier"


def test_mma_in_a_block_smaller_than_a_warp_is_reported():
    with pytest.raises(KernelFault, match=r"lanes 0x000000ff only") as e:
        _module().get_function("mma_half_warp_exits")(1, 8, (np.zeros((16, 8), np.float32),))
    assert e.value.kind == "divergent_barrier"
