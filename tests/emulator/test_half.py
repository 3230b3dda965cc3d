"""The emulator's 16-bit types (gpu_bptt/emulator/cuda_bf16.h, cuda_fp16.h) convert bit for bit as
CUDA does, checked against ml_dtypes (bfloat16) and NumPy (float16): every float32 bit pattern in
the slow test, a large random sample with the special values in the default run, and every
16-bit pattern back to float32. mma.cuh's to_tf32 (cvt.rna) against a float64 rounding by hand.

CUDA turns every NaN into the canonical NaN 0x7fff (cvt.rn.bf16.f32 / cvt.rn.f16.f32, and the host
code of cuda_bf16.hpp / cuda_fp16.hpp); ml_dtypes and NumPy keep the sign and payload, so a NaN
only has to stay a NaN in the comparison and its bits are checked against 0x7fff separately."""
import ml_dtypes
import numpy as np
import pytest

from gpu_bptt.emulator import RawModule

from emulator_helpers import KERNELS_ROOT, module

BF16 = np.dtype(ml_dtypes.bfloat16)
CANONICAL_NAN = 0x7FFF


def _half():
    return module("half.cu", options=("-I", KERNELS_ROOT))


def _assert_same_bits(got, x, dtype, what):
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are expected results
        ref = x.astype(dtype).view(np.uint16)
    nan = np.isnan(x)
    bad = np.flatnonzero((got != ref) & ~nan)
    assert bad.size == 0, (f"{what}: {bad.size} mismatches, e.g. float32 0x{x[bad[0]].view(np.uint32):08x} "
                           f"-> 0x{got[bad[0]]:04x}, expected 0x{ref[bad[0]]:04x}")
    assert np.all(got[nan] == CANONICAL_NAN), f"{what}: a NaN is not CUDA's canonical NaN 0x7fff"


def _specials():
    bits = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000,          # ±0, ±inf
            0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF812345, 0x7FFFFFFF,  # NaNs, signalling too
            0x00000001, 0x807FFFFF, 0x00400000,                      # float32 subnormals
            0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF,          # near the top (bf16 overflow)
            0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0xC77FF000,  # 65504 .. 65520 (f16 overflow)
            0x38800000, 0x387FFFFF, 0x387FF000, 0x387FE000,          # 2^-14, f16's normal boundary
            0x33000000, 0x33000001, 0xB3000000, 0x33C00000, 0x34200000]  # 2^-25, f16 subnormal ties
    for e in (0x00800000, 0x3F800000, 0x3F000000, 0x47000000, 0x00000000):  # bf16 and f16 ties
        for low in (0x8000, 0x18000, 0x7FFF, 0x8001, 0x1000, 0x3000, 0x0FFF, 0x1001):
            bits += [e | low, 0x80000000 | e | low]
    return np.array(bits, np.uint32)


def _sample():
    rng = np.random.default_rng(16)
    random = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    # values in f16's range, where the random patterns above seldom land, and their ties
    small = (rng.uniform(-70000, 70000, 1 << 16).astype(np.float32)).view(np.uint32)
    tiny = (rng.uniform(-2**-13, 2**-13, 1 << 16).astype(np.float32)).view(np.uint32)
    ties = np.concatenate([small & ~np.uint32(0x1FFF) | np.uint32(0x1000),
                           small & ~np.uint32(0xFFFF) | np.uint32(0x8000)])
    return np.concatenate([_specials(), random, small, tiny, ties]).view(np.float32)


def test_conversions_of_a_sample_match_ml_dtypes():
    x = _sample()
    n = x.size
    out = np.zeros((6, n), np.uint16)
    tf32 = np.zeros(n, np.uint32)
    _half().get_function("convert_sample")(64, 256, (x, np.int32(n), out, tf32))
    for k, what in enumerate(("__float2bfloat16_rn", "__float2bfloat16", "__floats2bfloat162_rn")):
        _assert_same_bits(out[k], x, BF16, what)
    for k, what in enumerate(("__float2half_rn", "__float2half", "__floats2half2_rn")):
        _assert_same_bits(out[3 + k], x, np.float16, what)


def test_widening_every_16_bit_pattern_is_exact():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    n = bits.size
    out = np.zeros((4, n), np.float32)
    _half().get_function("widen")(64, 256, (bits, np.int32(n), out))
    for k, dtype in ((0, BF16), (2, BF16), (1, np.float16), (3, np.float16)):
        ref = bits.view(dtype).astype(np.float32)
        np.testing.assert_array_equal(out[k].view(np.uint32), ref.view(np.uint32))


def _tf32_by_hand(x):
    """Round float32 values to TF32 in float64 (exact): 11 significant bits, ties away from zero;
    below 2^-126 the grid is fixed at 2^-136 (TF32 subnormals: float32's, with 10 mantissa bits)."""
    x = x.astype(np.float64)
    e = np.maximum(np.frexp(x)[1], -125)  # |x| = m·2^e, m in [0.5, 1)
    q = np.ldexp(1.0, e - 11)             # the spacing of TF32 values there
    return np.sign(x) * np.floor(np.abs(x) / q + 0.5) * q


def test_to_tf32_rounds_to_nearest_ties_away():
    x = _sample()
    finite = np.isfinite(x) & (np.abs(x) < np.float32(3e38))  # clear of the rounding to inf
    tf32 = np.zeros(x.size, np.uint32)
    _half().get_function("convert_sample")(64, 256, (x, np.int32(x.size), np.zeros((6, x.size), np.uint16), tf32))
    got = tf32.view(np.float32)
    np.testing.assert_array_equal(got[finite].astype(np.float64), _tf32_by_hand(x[finite]))
    assert np.all(tf32[~np.isnan(x)] & 0x1FFF == 0)
    assert np.all(np.isnan(got[np.isnan(x)])) and np.all(got[np.isinf(x)] == x[np.isinf(x)])
    # the ties: 1 + 2^-11 goes away from zero to 1 + 2^-10, and so does its negative
    tie = np.float32(1 + 2**-11)
    assert _tf32_by_hand(np.array([tie, -tie])).tolist() == [1 + 2**-10, -(1 + 2**-10)]


def _f16_by_hand(bits):
    """float32 bits -> float16 bits by hand where NumPy's cast is slow (it pays a floating-point
    exception per overflowing or underflowing value, about 65 ns each): NaN -> 0x7fff, |x| >= 65520
    (half-way past 65504) -> inf, |x| < 2^-13 -> rounded to nearest even in units of 2^-24 (np.rint
    on the exact float64 value; the subnormals and the lowest binade share that spacing and
    encoding). Elsewhere the result is meaningless (see _f16_reference)."""
    a = bits & np.uint32(0x7FFFFFFF)
    sign = (bits >> np.uint32(16)).astype(np.uint16) & np.uint16(0x8000)
    small = np.minimum(a, np.uint32(0x39000000)).view(np.float32).astype(np.float64)
    out = np.where(a >= 0x477FF000, np.uint16(0x7C00), np.rint(small * 2.0**24).astype(np.uint16)) | sign
    return np.where(a > 0x7F800000, np.uint16(CANONICAL_NAN), out)


def _f16_reference(bits):
    """float16 bits of float32 `bits`: NumPy's cast where the result is a normal number above
    2^-13, _f16_by_hand elsewhere."""
    a = bits & np.uint32(0x7FFFFFFF)
    mid = (a >= 0x39000000) & (a < 0x477FF000)
    if mid.all():
        return bits.view(np.float32).astype(np.float16).view(np.uint16)
    out = _f16_by_hand(bits)
    out[mid] = bits[mid].view(np.float32).astype(np.float16).view(np.uint16)
    return out


@pytest.mark.slow
def test_every_float32_converts_as_ml_dtypes_says():
    """All 2^32 float32 bit patterns, in chunks of 2^24: bfloat16 against ml_dtypes, float16 against
    _f16_reference (NumPy, and the rounding by hand that test_f16_by_hand_agrees_with_numpy checks)."""
    k = _half().get_function("convert_range")
    chunk, blocks = 1 << 24, 16
    bf, hf = np.zeros(chunk, np.uint16), np.zeros(chunk, np.uint16)
    offsets = np.arange(chunk, dtype=np.uint32)
    bits = np.empty(chunk, np.uint32)
    x = bits.view(np.float32)
    for start in range(0, 1 << 32, chunk):
        k(blocks, 1, (np.uint32(start), np.uint32(chunk // blocks), bf, hf))
        np.add(offsets, np.uint32(start), out=bits)
        with np.errstate(over="ignore", invalid="ignore"):
            same = np.array_equal(bf, x.astype(BF16).view(np.uint16))
        if not same:  # NaNs differ by design
            _assert_same_bits(bf, x, BF16, f"__float2bfloat16_rn from 0x{start:08x}")
        ref = _f16_reference(bits)
        if not np.array_equal(hf, ref):
            bad = np.flatnonzero(hf != ref)
            pytest.fail(f"__float2half_rn: {bad.size} mismatches, e.g. 0x{bits[bad[0]]:08x} -> "
                        f"0x{hf[bad[0]]:04x}, expected 0x{ref[bad[0]]:04x}")


def test_f16_by_hand_agrees_with_numpy():
    x = _sample()
    bits = x.view(np.uint32)
    a = bits & np.uint32(0x7FFFFFFF)
    by_hand = (a < 0x39000000) | ((a >= 0x477FF000) & (a <= 0x7F800000))
    with np.errstate(over="ignore", under="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    assert by_hand.sum() > 1000
    np.testing.assert_array_equal(_f16_by_hand(bits)[by_hand], ref[by_hand])
    np.testing.assert_array_equal(_f16_reference(bits)[~np.isnan(x)], ref[~np.isnan(x)])


PARAMS = """#include <cuda_bf16.h>
#include <cuda_fp16.h>
__global__ void take(const __nv_bfloat16* b, __half* h) {}
"""


@pytest.mark.parametrize("b, h", [(np.zeros(2, BF16), np.zeros(2, np.float16)),
                                  (np.zeros(2, np.uint16), np.zeros(2, np.uint16))])
def test_16_bit_parameters_take_their_dtype_or_the_bits(b, h):
    RawModule(PARAMS).get_function("take")(1, 1, (b, h))


@pytest.mark.parametrize("b, h, pattern", [
    (np.zeros(2, np.float32), np.zeros(2, np.float16), r"parameter 0 \(b: const __nv_bfloat16\*\).*float32"),
    (np.zeros(2, np.float16), np.zeros(2, np.float16), r"parameter 0 \(b: const __nv_bfloat16\*\).*float16"),
    (np.zeros(2, BF16), np.zeros(2, BF16), r"parameter 1 \(h: __half\*\).*bfloat16")])
def test_16_bit_parameters_refuse_other_dtypes(b, h, pattern):
    with pytest.raises(TypeError, match=pattern):
        RawModule(PARAMS).get_function("take")(1, 1, (b, h))
