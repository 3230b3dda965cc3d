"""kernels/tc_tile.cuh: a warp's 16 x 8·NT tile of h_prev (rows x K) @ V (K x N) on the tensor cores,
batch rows padded to 16, on the emulator in every thread order and under the sanitizer, against a
float64 oracle of the same rounded operands within the one-product bound K·2^-23·Σ|h·v| (see
test_mma.py for the derivation)."""
import ml_dtypes
import numpy as np
import pytest

from emulator_helpers import KERNELS_ROOT, SEED, module
from tests.skips import require_sanitizer

N = 64  # tc_tile.cu: 2 warps of 8·4 columns
KINDS = {"bf16": ("tile_product<__nv_bfloat16>", np.dtype(ml_dtypes.bfloat16), 16),
         "f16": ("tile_product<__half>", np.dtype(np.float16), 16),
         "tf32": ("tile_product_tf32", np.dtype(np.float32), 8)}


def _tf32(x):
    """float32 -> TF32 in float64 (normal values): 11 significant bits, ties away from zero."""
    m, e = np.frexp(x.astype(np.float64))
    return np.ldexp(np.sign(m) * np.floor(np.abs(m) * 2.0**11 + 0.5), e - 11)


def _run(kind, rows, k_steps, order, sanitize=False):
    name, dtype, step = KINDS[kind]
    K = k_steps * step
    rng = np.random.default_rng(SEED + rows + K)
    h = rng.standard_normal((rows, K)).astype(np.float32).astype(dtype)
    V = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32).astype(dtype)
    out = np.full((rows, N), np.nan, np.float32)
    mod = module("tc_tile.cu", options=("-I", KERNELS_ROOT), sanitize=sanitize,
                 name_expressions=tuple(v[0] for v in KINDS.values()))
    mod.get_function(name)(1, 64, (h, V, out, np.int32(rows), np.int32(K)), order=order, seed=SEED)
    a, b = (_tf32(h), _tf32(V)) if kind == "tf32" else (h.astype(np.float64), V.astype(np.float64))
    bound = K * 2.0**-23 * (np.abs(a) @ np.abs(b))
    return np.abs(out - a @ b) <= bound  # NaN (an output never written) fails too


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows, k_steps", [(1, 1), (5, 3), (16, 4)])
def test_tile_product(kind, rows, k_steps, order):
    assert _run(kind, rows, k_steps, order).all()


def test_tile_product_under_the_sanitizer():
    require_sanitizer()
    for kind in KINDS:
        assert _run(kind, 7, 2, "reverse", sanitize=True).all()
