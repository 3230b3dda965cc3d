"""Correct kernels give NumPy's answers in every thread order."""
import numpy as np
import pytest

from emulator_helpers import SEED, module


def matmul(A, B, order, kernel="matmul"):
    M, K = A.shape
    N = B.shape[1]
    C = np.full((M, N), np.nan, np.float32)
    k = module("matmul.cu").get_function(kernel)
    k(((N + 15) // 16, (M + 15) // 16), (16, 16), (A, B, C, np.int32(M), np.int32(N), np.int32(K)),
      order=order, seed=SEED)
    return C


@pytest.mark.parametrize("M,N,K", [(33, 47, 29), (1, 17, 70), (64, 64, 64)])
def test_tiled_matmul(order, M, N, K):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    C = matmul(A, B, order)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    np.testing.assert_allclose(C, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_sum_shuffle(order, dtype):
    rng = np.random.default_rng(1)
    n, threads = 1000, 256
    blocks = (n + threads - 1) // threads
    x = rng.standard_normal(n).astype(dtype)
    out = np.zeros(blocks, dtype)
    name = "block_sum<float>" if dtype == np.float32 else "block_sum<double>"
    mod = module("warp_reduce.cu", name_expressions=("block_sum<float>", "block_sum<double>"))
    mod.get_function(name)(blocks, threads, (x, out, np.int32(n)),
                           shared_mem=threads // 32 * np.dtype(dtype).itemsize, order=order, seed=SEED)
    ref = np.add.reduceat(x.astype(np.float64), np.arange(0, n, threads))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


def test_scan_ballot_xor(order):
    mod = module("warp_reduce.cu", name_expressions=("block_sum<float>", "block_sum<double>"))
    rng = np.random.default_rng(2)
    n = 100
    x = rng.integers(-5, 5, n).astype(np.int32)
    y = np.zeros(n, np.int32)
    mod.get_function("warp_scan")(2, 64, (x, y, np.int32(n)), order=order, seed=SEED)
    xp = np.concatenate([x, np.zeros(128 - n, np.int32)]).reshape(4, 32)
    np.testing.assert_array_equal(y, np.cumsum(xp, axis=1).ravel()[:n])

    f = rng.standard_normal(n).astype(np.float32)
    count = np.zeros(1, np.int32)
    mod.get_function("count_positive")(2, 64, (f, count, np.int32(n)), order=order, seed=SEED)
    assert count[0] == int((f > 0).sum())

    g = rng.standard_normal(96).astype(np.float32)
    h = np.zeros(96, np.float32)
    mod.get_function("max_xor")(1, 96, (g, h), order=order, seed=SEED)
    np.testing.assert_array_equal(h, np.repeat(g.reshape(3, 32).max(axis=1), 32))


def test_grid_sync_persistent_elman(order):
    mod = module("grid_sync.cu", enable_cooperative_groups=True)
    rng = np.random.default_rng(3)
    T, H = 7, 100
    p = rng.standard_normal((T, H), dtype=np.float32)
    V = (rng.standard_normal((H, H)) / np.sqrt(H)).astype(np.float32)
    h0 = rng.standard_normal(H, dtype=np.float32)
    h = np.zeros((T, H), np.float32)
    mod.get_function("elman_persistent")(4, 32, (p, V, h0, h, np.int32(T), np.int32(H)),
                                         order=order, seed=SEED)
    ref, prev = np.zeros((T, H)), h0.astype(np.float64)
    for t in range(T):
        prev = ref[t] = np.tanh(p[t] + prev @ V.astype(np.float64))
    np.testing.assert_allclose(h, ref, rtol=1e-5, atol=1e-5)


def test_grid_sync_total_and_block_sync(order):
    mod = module("grid_sync.cu", enable_cooperative_groups=True)
    rng = np.random.default_rng(4)
    n, threads = 1500, 256
    blocks = (n + threads - 1) // threads
    x = rng.standard_normal(n)
    partial = np.zeros(blocks)
    total = np.zeros(1)
    mod.get_function("grid_total")(blocks, threads, (x, partial, total, np.int32(n)), order=order, seed=SEED)
    assert total[0] == pytest.approx(x.sum(), rel=1e-12, abs=1e-12)


def test_spin_wait_on_atomic_flag(order):
    flag, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
    module("faults.cu").get_function("spin_flag")(1, 64, (flag, out, np.int32(0)), order=order, seed=SEED)
    assert out[0] == 1 and flag[0] == 1


def test_unaligned_views_and_aliasing():
    """A view that is not 256-byte aligned is copied in and out; the same buffer twice stays one."""
    k = module("faults.cu").get_function("axpb")
    base = np.arange(20, dtype=np.float32)
    view = base[3:13]
    assert view.ctypes.data % 256
    k(1, 32, (view, np.int32(10), np.float32(2.0), np.float64(1.0)))
    np.testing.assert_array_equal(base[3:13], 2 * np.arange(3, 13, dtype=np.float32) + 1)
    np.testing.assert_array_equal(base[:3], np.arange(3, dtype=np.float32))
