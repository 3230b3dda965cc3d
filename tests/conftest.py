import numpy as np
import pytest


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
