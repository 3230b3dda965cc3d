"""The one tolerance table of the test suite, per dtype, and the check every comparison uses:
|x - ref| <= atol + rtol * |ref|, printing the max abs/rel error on failure."""
import numpy as np

from gpu_bptt.validate import to_host

# float32: results of length-T recurrences reordered by BLAS blocking differ by a few ulps per step.
TOLERANCES = {
    np.dtype(np.float32): dict(atol=1e-5, rtol=1e-4),
    np.dtype(np.float64): dict(atol=1e-12, rtol=1e-10),
}

# Finite differences in float64 with eps=1e-6: truncation error ~eps^2·f''' and rounding ~1e-16/eps.
GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-5)


def assert_close(name, x, ref, dtype=None, **override):
    x = np.asarray(to_host(x), dtype=np.float64)
    ref = np.asarray(to_host(ref), dtype=np.float64)
    assert x.shape == ref.shape, f"{name}: shape {x.shape} != reference {ref.shape}"
    tol = dict(TOLERANCES[np.dtype(dtype or ref.dtype)])
    tol.update(override)
    err = np.abs(x - ref)
    bad = err > tol["atol"] + tol["rtol"] * np.abs(ref)
    if bad.any():
        rel = err / np.maximum(np.abs(ref), 1e-300)
        raise AssertionError(f"{name}: {int(bad.sum())} of {bad.size} entries out of tolerance {tol}; "
                             f"max abs err {err.max():.3e}, max rel err {rel.max():.3e}")
