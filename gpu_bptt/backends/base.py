"""The interface every backend implements, and the xp-generic parts they share.

A functional cell (gpu_bptt.cells.elman) validates inputs and drives a backend through these
methods. Only the recurrence is backend-specific; the products outside the time loop default to
`xp.matmul` (NumPy's BLAS, or cuBLAS through CuPy) and a backend may override them. The
cell-specific methods are named after their cell (`elman_fwd_seq`, `lstm_bwd_seq`, ...). The
reductions after the time loop are generic over the G gates: `gradients` serves Elman (G = 1) and
LSTM (G = 4), `lstm_gradients` adds the projection's dR, `gru_gradients` handles GRU's separate
recurrent bias.
"""
from __future__ import annotations

import numpy as np

from ..precision import FLOAT32, is_half, round_tf32
from .plan import LaunchPlan, PairPlan, check_directions


class Backend:
    name: str = "?"
    #: values of `algo` this backend honours ("auto" always included)
    algos: tuple = ("auto", "step")
    #: whether the backend reads strided views (transposed weights, say) as they are; kernels
    #: that index dense row-major buffers need them made contiguous first (validate.check_array)
    takes_strided: bool = False
    #: the storage dtypes this backend runs (docs/architecture.md §1, precision modes)
    dtypes: tuple = ("float32", "float64")
    #: whether it runs float32 products on TF32 operands (allow_tf32=True)
    tf32: bool = False

    def __init__(self, xp):
        self.xp = xp

    # -- arrays ------------------------------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """Array on this backend (no copy when already there with that dtype)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        from ..validate import to_host

        return to_host(a)

    def carry_refusal(self, plan):
        """None where the *_bwd_seq methods take the carry of a later segment (du_next,
        dc_next, dh_next) for `plan`: what memory="recompute" needs (cells/recompute.py); else
        why not."""
        return f"the {self.name} backend's recurrences take no carry across segments"

    def check_algo(self, algo: str):
        """ValueError unless this backend honours `algo`."""
        if algo not in self.algos:
            raise ValueError(f"algo: {algo!r} is not supported by the {self.name} backend "
                             f"(supported: {self.algos})")

    def check_mode(self, dtype, tf32=False, cell=None):
        """TypeError naming `dtype` unless this backend runs that storage dtype; ValueError naming
        `allow_tf32` where TF32 is asked for arrays other than float32 or of a backend without
        it. No silent upcast, no silently ignored setting. cell: also that the cell's kernels
        run the mode (a backend whose kernels lack it for some cells checks; see cell_dtypes)."""
        if not isinstance(tf32, (bool, np.bool_)):
            raise TypeError(f"allow_tf32: expected a bool, got {type(tf32).__name__}")
        name = np.dtype(dtype).name
        if name not in self.dtypes:
            raise TypeError(f"dtype: the {self.name} backend runs {', '.join(self.dtypes)}; the "
                            f"arrays are {name} (convert them, or use a backend that runs "
                            f"{name}: numpy runs every storage dtype)")
        if tf32 and name != "float32":
            raise ValueError(f"allow_tf32: TF32 rounds float32 operands; the arrays are {name}")
        if tf32 and not self.tf32:
            raise ValueError(f"allow_tf32: the {self.name} backend has no TF32 mode (numpy has)")

    def cell_dtypes(self, cell: str) -> tuple:
        """The storage dtypes this backend runs for `cell` ("elman", "lstm", "gru"): `dtypes`,
        or fewer where a cell's kernels lack a mode (resolve_algo refuses it naming the cell)."""
        return self.dtypes

    def resolve_algo(self, algo: str, T: int, B: int, H: int, dtype, reverse=False,
                     cell="elman", P=0, tf32=False) -> LaunchPlan:
        """The LaunchPlan for a request ("auto" made concrete) in a direction (reverse: each
        example from its last valid step down to 0), for a cell ("elman", "lstm", "gru"; P: the
        LSTM's projection size, 0 for none), in a precision mode (dtype, tf32: check_mode);
        ValueError naming the limit where the requested algorithm cannot run."""
        self.check_algo(algo)
        self.check_mode(dtype, tf32)
        return LaunchPlan("step" if algo == "auto" else algo, B, H, np.dtype(dtype).name,
                          reason=f"the {self.name} backend runs a step loop",
                          reverse=bool(reverse), cell=cell, P=int(P), tf32=bool(tf32))

    #: 32-bit words per chunk of `digest`: bounds its temporaries (three uint64 arrays this long)
    digest_chunk: int = 1 << 20

    def digest(self, a):
        """A fingerprint of float array `a`: Σ_i word_i·(2i+1) mod 2^64 over its 32-bit words
        (16-bit ones for a 16-bit dtype, whose arrays may hold an odd number of elements).
        Any change within one word shows (an odd weight is invertible modulo 2^64), and so does a
        swap of two float32 elements in arrays under 2^32 words. Computed in chunks so that the
        temporaries stay small; stays on the device (no sync). elman_forward keeps the digests of
        x and h, and elman_backward compares them."""
        xp = self.xp
        words = xp.ascontiguousarray(a).reshape(-1)
        words = words.view(xp.uint16 if words.dtype.itemsize == 2 else xp.uint32)
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
    # In a 16-bit storage dtype each product accumulates in float32 and its result is rounded
    # once to the arrays' dtype; with tf32 its operands are TF32-rounded (precision.py).
    def product(self, a, b, tf32=False):
        """a @ b accumulated in the work dtype and not rounded: 16-bit operands upcast to
        float32 (exact), TF32-rounded operands where tf32; float32/float64 as they are."""
        if is_half(a.dtype):
            a, b = a.astype(FLOAT32), b.astype(FLOAT32)
        elif tf32:
            a, b = round_tf32(a, self.xp), round_tf32(b, self.xp)
        return self.xp.matmul(a, b)

    def input_projection(self, x, W, b, tf32=False):
        """p = x @ W + b for all T at once: x (T, B, I), W (I, N), b (N,) or None -> (T, B, N)
        (N = H, or G·H for a cell with G gates), in x's dtype."""
        T, B, I = x.shape
        p = self.product(x.reshape(T * B, I), W, tf32).reshape(T, B, W.shape[1])
        if b is not None:
            p += b
        return p.astype(x.dtype, copy=False)

    def gradients(self, x, W, V, h0, h, du, need_db: bool, need_dx: bool = True, *,
                  lengths=None, reverse=False, tf32=False):
        """dx, dW, dV, db, dh0 from du (T, B, N), the gradient on the pre-activations (N = G·H:
        H for Elman, 4H for LSTM), and the states h (T, B, Hs) the recurrence fed back (Hs = H, or
        the LSTM's projection size): one reduction over T·B each (docs/architecture.md §1).
        db is None unless need_db, dx None unless need_dx (one GEMM saved). reverse: the
        direction the forward ran (lengths (B,) or None, needed then). tf32: the plan's.
        Each result in du's dtype, accumulated in float32 for a 16-bit one."""
        T, B, I = x.shape
        dt = du.dtype
        du2 = du.reshape(T * B, du.shape[2])
        dW = self.product(x.reshape(T * B, I).T, du2, tf32).astype(dt, copy=False)
        dV, first = self.recurrent_gradient(h0, h, du, lengths, reverse, tf32)
        dx = self.product(du2, W.T, tf32).reshape(T, B, I).astype(dt, copy=False) \
            if need_dx else None
        dh0 = self.product(first, V.T, tf32).astype(dt, copy=False)
        return dx, dW, dV, column_sum(du2) if need_db else None, dh0

    def recurrent_gradient(self, h0, h, du, lengths=None, reverse=False, tf32=False):
        """(dV, first): dV = Σ_t h_prev[t].T @ du[t] (Hs, N), and the rows of du at each
        example's first step (B, N). The state before step t is h0 at each example's first step,
        else h[t-1] (h[t+1] reversed): two GEMMs avoid building that array (h is 0 at padded
        steps, du too). dV in du's dtype, accumulated in float32 for a 16-bit one."""
        xp = self.xp
        T, B, N = du.shape
        Hs = h.shape[2]
        first = first_step_rows(xp, du, lengths, reverse)
        dV = self.product(h0.T, first, tf32)
        if T > 1:
            prev, cur = (h[1:], du[:-1]) if reverse else (h[:-1], du[1:])
            dV += self.product(prev.reshape((T - 1) * B, Hs).T, cur.reshape((T - 1) * B, N),
                               tf32)
        return dV.astype(du.dtype, copy=False), first

    def lstm_gradients(self, x, W, V, h0, h, c, gates, du, dhs, need_db: bool,
                       need_dx: bool = True, *, lengths=None, reverse=False, tf32=False):
        """dx, dW, dV, db, dh0 as `gradients` (du (T, B, 4H)), and dR = Σ_t m[t].T @ dhs[t]
        (H, P) with m = o·tanh(c) recomputed from the saved c and gates (T, B, 4H); dR is None
        when dhs is None (no projection). c is in the work dtype (precision.work_dtype); m is
        rounded to du's dtype as it was where the forward multiplied it by R."""
        xp = self.xp
        dx, dW, dV, db, dh0 = self.gradients(x, W, V, h0, h, du, need_db, need_dx,
                                             lengths=lengths, reverse=reverse, tf32=tf32)
        if dhs is None:
            return dx, dW, dV, db, dh0, None
        T, B, H = c.shape
        m = xp.tanh(c)
        m *= gates[:, :, 3 * H:].astype(m.dtype, copy=False)  # 0 at padded steps, as the gates
        m = m.astype(du.dtype, copy=False)
        dR = self.product(m.reshape(T * B, H).T, dhs.reshape(T * B, dhs.shape[2]), tf32)
        return dx, dW, dV, db, dh0, dR.astype(du.dtype, copy=False)

    def gru_gradients(self, x, W, V, h0, h, gates, dgx, need_db_x: bool, need_db_h: bool,
                      need_dx: bool = True, *, lengths=None, reverse=False, tf32=False):
        """dx, dW, dV, db_x, db_h from dgx (T, B, 3H), the gradient on [xr|xz|xn]: dW, dx, db_x
        from dgx; then dgx is turned, in place, into dgh = the gradient on [hr|hz|hn] (its n block
        times r, from gates (T, B, 4H) = [r|z|n|hn]), which gives dV and db_h. dgx is consumed.
        db_x/db_h are None unless asked for, dx None unless need_dx. In a 16-bit dtype the
        n block of dgh is rounded once (a product of two 16-bit values, computed exactly in
        float32), as the backward's step rounds it."""
        T, B, I = x.shape
        H = h.shape[2]
        dt = dgx.dtype
        d2 = dgx.reshape(T * B, 3 * H)
        dW = self.product(x.reshape(T * B, I).T, d2, tf32).astype(dt, copy=False)
        dx = self.product(d2, W.T, tf32).reshape(T, B, I).astype(dt, copy=False) \
            if need_dx else None
        db_x = column_sum(d2) if need_db_x else None
        dgx[:, :, 2 * H:] *= gates[:, :, :H]  # now dgh
        dV, _ = self.recurrent_gradient(h0, h, dgx, lengths, reverse, tf32)
        db_h = column_sum(dgx.reshape(T * B, 3 * H)) if need_db_h else None
        return dx, dW, dV, db_x, db_h

    # -- the recurrence (backend-specific) ---------------------------------------------------------
    def elman_fwd_seq(self, p, V, h0, activation, lengths, plan):
        """h[t] = f(p[t] + h[t-1] @ V) for t = 0..T-1, with h[-1] = h0 and h[t, b] = 0 for
        t >= lengths[b]. p (T, B, H) is owned by the callee (it may be overwritten and returned).
        plan.reverse: h[t] = f(p[t] + h[t+1] @ V) from t = lengths[b]-1 (h0 before it) down to 0,
        each example from its own last valid step (docs/architecture.md §1)."""
        raise NotImplementedError

    def elman_bwd_seq(self, dh, dh_last, h, V, activation, lengths, plan, du_next=None):
        """du[t] = (dh[t] + du[t+1] @ V.T) * f'(u[t]), dh_last entering at each example's last
        valid step, du[t, b] = 0 for padded steps whatever dh holds there (NaN and inf included).
        dh may be None (zeros). Returns du (T, B, H). plan.reverse: du[t] takes du[t-1] @ V.T
        (du of the next step processed) and dh_last enters at t = 0.
        du_next (B, H) or None: the carry from the steps after this sequence (a later segment of
        one run, cells/recompute.py): the du of the step after each example's first step
        processed here (t = T-1; reversed, its t = 0), which takes it as du[t+1] (du[t-1]).
        Lengths may be 0 here (an example with no step in the segment). Only where
        carry_refusal(plan) is None."""
        raise NotImplementedError

    def lstm_fwd_seq(self, p, V, h0, c0, lengths, plan, R=None):
        """The LSTM recurrence (docs/architecture.md §1): u[t] = p[t] + h[t-1] @ V with p
        (T, B, 4H) = x @ W + b (owned by the callee: it may be overwritten and returned as the
        gates); [i|f|g|o] = [σ|σ|tanh|σ](u); c[t] = f·c[t-1] + i·g; h[t] = o·tanh(c[t]) (@ R
        (H, P) when given). h0 (B, Hs), c0 (B, H) with Hs = P or H. Every returned array is 0 at
        padded steps. plan.reverse: as elman_fwd_seq. Returns h (T, B, Hs), c (T, B, H), gates
        (T, B, 4H) = the activated [i|f|g|o]."""
        raise NotImplementedError

    def lstm_bwd_seq(self, dh, dh_last, dc_last, h, c, gates, c0, V, lengths, plan, R=None,
                     du_next=None, dc_next=None):
        """BPTT through the LSTM recurrence. dh (T, B, Hs), dh_last (B, Hs), dc_last (B, H): the
        gradients from above (each may be None; dh's padded steps are ignored, NaN included;
        dh_last/dc_last enter at each example's last valid step in the run's direction).
        du_next (B, 4H), dc_next (B, H): the carry of a later segment, as elman_bwd_seq's (dc_next:
        the gradient on c entering the same step).
        Returns du (T, B, 4H), the gradient on u (0 at padded steps); dc0 (B, H); and
        dhs (T, B, Hs), the total gradient on h[t] (for dR), when R is given, else None."""
        raise NotImplementedError

    def gru_fwd_seq(self, p, V, b_h, h0, lengths, plan):
        """The GRU recurrence (docs/architecture.md §1): p (T, B, 3H) = x @ W + b_x (owned by the
        callee), b_h (3H,) or None, h0 (B, H); [hr|hz|hn] = h[t-1] @ V + b_h, r = σ(p_r + hr),
        z = σ(p_z + hz), n = tanh(p_n + r·hn), h[t] = (1-z)·n + z·h[t-1]. Every returned array
        is 0 at padded steps. plan.reverse: as elman_fwd_seq. Returns h (T, B, H) and
        gates (T, B, 4H) = [r|z|n|hn]."""
        raise NotImplementedError

    def gru_bwd_seq(self, dh, dh_last, h, h0, gates, V, lengths, plan, dh_next=None):
        """BPTT through the GRU recurrence. dh (T, B, H), dh_last (B, H): as lstm_bwd_seq's.
        dh_next (B, H): the carry of a later segment, the gradient on the state before it (its
        call's dh0), entering as elman_bwd_seq's du_next does.
        Returns dgx (T, B, 3H), the gradient on p (0 at padded steps), and dh0 (B, H), the whole
        gradient on h0 (through V and through z·h0)."""
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


    # -- both directions of a bidirectional LSTM or GRU level together -----------------------------
    SEQS = ("lstm_fwd_seq", "lstm_bwd_seq", "gru_fwd_seq", "gru_bwd_seq")

    def seq_pair(self, name, fwd, rev):
        """Both directions' recurrences of one gated level: name is one of SEQS; fwd, rev are the
        positional arguments of that method for each direction (each with its own plan).
        Returns (fwd's result, rev's), bit for bit what two calls return. Here: in turn; a
        backend that can run them side by side overrides this."""
        seq = getattr(self, check_seq(self, name))
        return tuple(seq(*args) for args in (fwd, rev))


def column_sum(a):
    """a (M, N) summed over its rows (db), in a's dtype: accumulated in float32 for a 16-bit
    one and rounded once."""
    if is_half(a.dtype):
        return a.sum(axis=0, dtype=FLOAT32).astype(a.dtype)
    return a.sum(axis=0)


def check_seq(bk, name) -> str:
    """name, after checking that it is one of bk.SEQS (seq_pair's methods)."""
    if name not in bk.SEQS:
        raise ValueError(f"name: expected one of {', '.join(bk.SEQS)}, got {name!r}")
    return name


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

