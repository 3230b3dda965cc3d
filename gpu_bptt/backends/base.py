"""The interface every backend implements, and the xp-generic parts they share.

A functional cell (gpu_bptt.cells.elman) validates inputs and drives a backend through these
methods. Only the recurrence is backend-specific; the products outside the time loop default to
`xp.matmul` (NumPy's BLAS, or cuBLAS through CuPy) and a backend may override them. The
cell-specific methods are named after their cell (`elman_fwd_seq`, `elman_bwd_seq`; `gradients`
holds Elman's reductions); a new cell adds its own beside them.
"""
from __future__ import annotations

import numpy as np

from .plan import LaunchPlan, PairPlan, check_directions


class Backend:
    name: str = "?"
    #: values of `algo` this backend honours ("auto" always included)
    algos: tuple = ("auto", "step")
    #: whether the backend reads strided views (transposed weights, say) as they are; kernels
    #: that index dense row-major buffers need them made contiguous first (validate.check_array)
    takes_strided: bool = False

    def __init__(self, xp):
        self.xp = xp

    # -- arrays ------------------------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Array on this backend (no copy when already there with that dtype)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        from ..validate import to_host

        return to_host(a)

    def check_algo(self, algo: str):
        """ValueError unless this backend honours `algo`."""
        if algo not in self.algos:
            raise ValueError(f"algo: {algo!r} is not supported by the {self.name} backend "
                             f"(supported: {self.algos})")

    def resolve_algo(self, algo: str, T: int, B: int, H: int, dtype, reverse=False) -> LaunchPlan:
        """The LaunchPlan for a request ("auto" made concrete) in a direction (reverse: each
        example from its last valid step down to 0); ValueError naming the limit where the
        requested algorithm cannot run."""
        self.check_algo(algo)
        return LaunchPlan("step" if algo == "auto" else algo, B, H, np.dtype(dtype).name,
                          reason=f"the {self.name} backend runs a step loop",
                          reverse=bool(reverse))

    #: 32-bit words per chunk of `digest`: bounds its temporaries (three uint64 arrays this long)
    digest_chunk: int = 1 << 20

    def digest(self, a):
        """A fingerprint of float array `a`: Σ_i word_i·(2i+1) mod 2^64 over its 32-bit words.
        Any change within one word shows (an odd weight is invertible modulo 2^64), and so does a
        swap of two float32 elements in arrays under 2^32 words. Computed in chunks so that the
        temporaries stay small; stays on the device (no sync). elman_forward keeps the digests of
        x and h, and elman_backward compares them."""
        xp = self.xp
        words = xp.ascontiguousarray(a).reshape(-1).view(xp.uint32)
        n = words.size
        chunk = min(self.digest_chunk, n)
        weights = xp.arange(1, 2 * chunk, 2, dtype=xp.uint64)
        sums = xp.empty(-(-n // chunk), dtype=xp.uint64)
        for k, start in enumerate(range(0, n, chunk)):
            c = words[start:start + chunk].astype(xp.uint64)
            # array arithmetic throughout: uint64 wraps modulo 2^64 there without a warning
            sums[k] = (c * (weights[:c.size] + xp.uint64(2 * start))).sum()
        return sums.sum()

    # -- products outside the time loop ------------------------------------------------------------
    def input_projection(self, x, W, b):
        """p = x @ W + b for all T at once: x (T, B, I), W (I, N), b (N,) or None -> (T, B, N)
        (N = H, or G·H for a cell with G gates)."""
        T, B, I = x.shape
        p = self.xp.matmul(x.reshape(T * B, I), W).reshape(T, B, W.shape[1])
        if b is not None:
            p += b
        return p

    def gradients(self, x, W, V, h0, h, du, need_db: bool, need_dx: bool = True, *,
                  lengths=None, reverse=False):
        """dx, dW, dV, db, dh0 from du (T, B, H): one reduction over T·B each (docs/architecture.md §1).
        db is None unless need_db, dx None unless need_dx (one GEMM saved). reverse: the
        direction the forward ran (lengths (B,) or None, needed then)."""
        xp = self.xp
        T, B, I = x.shape
        H = V.shape[0]
        du2 = du.reshape(T * B, H)
        dW = xp.matmul(x.reshape(T * B, I).T, du2)
        # The state before step t is h0 at each example's first step, else h[t-1] (h[t+1]
        # reversed): two GEMMs avoid building that array (h is 0 at padded steps, du too).
        first = first_step_rows(xp, du, lengths, reverse)
        dV = xp.matmul(h0.T, first)
        if T > 1:
            prev, cur = (h[1:], du[:-1]) if reverse else (h[:-1], du[1:])
            dV += xp.matmul(prev.reshape((T - 1) * B, H).T, cur.reshape((T - 1) * B, H))
        dx = xp.matmul(du2, W.T).reshape(T, B, I) if need_dx else None
        dh0 = xp.matmul(first, V.T)
        db = du2.sum(axis=0) if need_db else None
        return dx, dW, dV, db, dh0

    # -- the recurrence (backend-specific) ---------------------------------------------------------
    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        """h[t] = f(p[t] + h[t-1] @ V) for t = 0..T-1, with h[-1] = h0 and h[t, b] = 0 for
        t >= lengths[b]. p (T, B, H) is owned by the callee (it may be overwritten and returned).
        plan.reverse: h[t] = f(p[t] + h[t+1] @ V) from t = lengths[b]-1 (h0 before it) down to 0,
        each example from its own last valid step (docs/architecture.md §1)."""
        raise NotImplementedError

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan):
        """du[t] = (dh[t] + du[t+1] @ V.T) * f'(u[t]), dh_last entering at each example's last
        valid step, du[t, b] = 0 for padded steps whatever dh holds there (NaN and inf included).
        dh may be None (zeros). Returns du (T, B, H). plan.reverse: du[t] takes du[t-1] @ V.T
        (du of the next step processed) and dh_last enters at t = 0."""
        raise NotImplementedError


    # -- both directions of a bidirectional Elman layer together -----------------------------------
    def resolve_pair(self, forward: LaunchPlan, reverse: LaunchPlan) -> PairPlan:
        """How the two directions' plans (resolve_algo's for one request, reverse=False and
        True) run together. Here: one after the other."""
        check_directions(forward, reverse)
        return PairPlan(forward, reverse, "in turn",
                        f"the {self.name} backend runs one direction after the other")

    def elman_fwd_pair(self, fwd, rev, activation, lengths, pair: PairPlan):
        """Both directions' recurrences: fwd, rev are (p, V, h0) as elman_fwd_seq takes them (p
        owned by the callee); pair: resolve_pair's. Returns (h_fwd, h_rev), bit for bit what two
        elman_fwd_seq calls return. A backend that can run them side by side overrides this."""
        return tuple(self.elman_fwd_seq(p, V, h0, activation, lengths, plan)
                     for (p, V, h0), plan in zip((fwd, rev), (pair.forward, pair.reverse)))

    def elman_bwd_pair(self, fwd, rev, activation, lengths, pair: PairPlan):
        """Both directions' backward recurrences: fwd, rev are (dh, dh_last, h, V) as
        elman_bwd_seq takes them. Returns (du_fwd, du_rev), as two elman_bwd_seq calls."""
        return tuple(self.elman_bwd_seq(dh, dl, h, V, activation, lengths, plan)
                     for (dh, dl, h, V), plan in zip((fwd, rev), (pair.forward, pair.reverse)))


def first_step_rows(xp, s, lengths, reverse=False):
    """The rows (B, H) of s (T, B, H) at each example's first step in the direction of the run:
    s[0] forward (a view); s[lengths[b]-1, b] reversed (a new array)."""
    if not reverse:
        return s[0]
    return last_step_rows(xp, s, lengths)


def last_step_rows(xp, s, lengths, reverse=False):
    """The rows (B, H) of s (T, B, H) at each example's last step in the direction of the run:
    s[lengths[b]-1, b] forward (s[T-1] without lengths), s[0] reversed. A new array."""
    if reverse:
        return s[0].copy()
    T, B = s.shape[:2]
    if lengths is None:
        return s[T - 1].copy()
    return s[lengths - 1, xp.arange(B)]

