"""The one tolerance table of the test suite, per dtype, and the check every comparison uses:
|x - ref| <= atol + rtol * |ref|, printing the max abs/rel error on failure."""
import numpy as np

from gpu_bptt.validate import to_host

# float32: kernels and BLAS sum the dot products in different orders (tiles, blocking), a few ulps
# per step, compounded through the recurrence over up to 33 steps in the tests.
TOLERANCES = {
    np.dtype(np.float32): dict(atol=2e-5, rtol=2e-4),
    np.dtype(np.float64): dict(atol=1e-12, rtol=1e-10),
}

# Finite differences in float64 with eps=1e-6: truncation error ~eps^2·f''' and rounding ~1e-16/eps.
GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-5)


def assert_close(name, x, ref, dtype=None, **override):
    """Fail, printing the max abs/rel error and the worst entry, unless x matches ref within the
    dtype's tolerance (dtype defaults to ref's); `override` sets atol/rtol where a test's own
    contract is stated differently (e.g. "within 1e-10")."""
    x = np.asarray(to_host(x))
    ref = np.asarray(to_host(ref))
    assert x.shape == ref.shape, f"{name}: shape {x.shape} != reference {ref.shape}"
    tol = {**TOLERANCES[np.dtype(dtype or ref.dtype)], **override}
    err = np.abs(x.astype(np.float64) - ref.astype(np.float64))
    bound = tol["atol"] + tol["rtol"] * np.abs(ref.astype(np.float64))
    if not np.all(err <= bound):  # NaN in x fails here too
        rel = err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
        worst = np.unravel_index(np.nanargmax(err - bound), err.shape)
        raise AssertionError(
            f"{name}: {np.sum(~(err <= bound))} of {err.size} entries out of tolerance {tol}; "
            f"max abs error {np.nanmax(err):.3e}, max rel error {np.nanmax(rel):.3e}; "
            f"worst at {worst}: got {x[worst]!r}, expected {ref[worst]!r}")
