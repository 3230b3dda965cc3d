"""Launchers: one Python function per kernel, validating its arguments before the launch.
Grids and blocks come from the kernel registry (registry.py); the persistent launches take the
launch plan the backend resolved (rules.py).

They run on an array module `xp` (cupy, or numpy under the emulator) and a KernelLoader, the two
seams of the cuda backend (docs/architecture.md §2). Launches go to CuPy's current stream. Errors name the
argument: ValueError for shapes, TypeError for dtypes, ValueError for non-contiguous arrays.
"""
from __future__ import annotations

import warnings

import numpy as np

from ... import activations
from ...validate import format_shape
from . import registry
from .lstm_launchers import LstmLaunchers
from .persistent import DEFAULT_SMEM
from .registry import MAX_GRID_Y, cdiv

CUPY_SHRINK = "The grid size will be reduced"  # the start of CuPy 14's warning when it does


def _i32(v):
    return np.int32(v)


def _check_persistent(plan, B, H, dtype, cell="elman"):
    if plan.algo != "persistent":
        raise ValueError(f"plan: expected a persistent plan, got {plan.label}")
    plan.check_problem(B, H, np.dtype(dtype).name, cell=cell)


class Launchers(LstmLaunchers):
    def __init__(self, xp, loader):
        self.xp = xp
        self.loader = loader
        self._dummies = {}

    # -- checks ------------------------------------------------------------------------------------
    def check(self, name, a, shape, dtype):
        """Raise naming `name` unless `a` is a contiguous array of this backend with that shape
        (None entries are free) and dtype."""
        if not isinstance(a, self.xp.ndarray):
            raise TypeError(f"{name}: expected a {self.xp.__name__} array, got {type(a).__name__}")
        if np.dtype(a.dtype) != np.dtype(dtype):
            raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {a.dtype}")
        if len(shape) != a.ndim or any(s is not None and s != g for s, g in zip(shape, a.shape)):
            want = format_shape("*" if s is None else s for s in shape)
            raise ValueError(f"{name}: expected shape {want}, got {format_shape(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous")
        return a

    def _dummy(self, dtype):
        """A valid one-element buffer passed where an optional array is absent (flag = 0), one per
        dtype and device (a kernel must not get another device's pointer)."""
        key = (np.dtype(dtype), self.loader.device())
        if key not in self._dummies:
            self._dummies[key] = self.xp.zeros(1, dtype=key[0])
        return self._dummies[key]

    # -- kernels -----------------------------------------------------------------------------------
    def elman_fwd_step(self, h, h0, V, lengths, t, activation, version="v2", scratch=None, *,
                       flip=False, state=None):
        """Step t of the forward recurrence, in place: h[t] = f(h[t] + h[t-1] @ V) (h[t] holds
        p[t] on entry; h[-1] = h0), zero where t >= lengths[b].
        h (T, B, H) owned by the caller and updated; h0 (B, H); V (H, H); lengths (B,) int32;
        scratch: optional (B, H) buffer for v4's product (allocated when None).
        flip=True: step t of a reversed run (see fwd_stepper)."""
        self._check_t(t, h.shape[0])
        self.fwd_stepper(h, h0, V, lengths, activation, version, scratch, flip=flip,
                         state=state)(t)

    def fwd_stepper(self, h, h0, V, lengths, activation, version="v2", scratch=None, *,
                    flip=False, state=None):
        """A function of s that launches forward step s (as elman_fwd_step), for a whole sequence:
        the operands are checked and the kernel looked up once, not at every step (the per-step
        Python work is what bounds a step loop at small sizes). s must be in 0..T-1, in order.
        flip=True: a reversed run, step s working on t = lengths[b]-1-s for batch row b (then its
        padded steps; kernels/elman_fwd_step.cu); v4 keeps the last step's state in `state`
        (B, H), allocated when None, for its product."""
        T, B, H = h.shape
        self.fwd_operands(h, h0, V, lengths)
        grid, block = registry.step_geometry(version, B, H)
        fn = self.loader.function(registry.STEP_FWD.file,
                                  registry.STEP_FWD.expression(version, h.dtype))
        tail = (_i32(flip), _i32(B), _i32(H), _i32(activations.ACTIVATION_CODES[activation]))
        if registry.STEP[version].product == "library":  # the product by cuBLAS, the rest ours
            acc = self._scratch(scratch, B, H, h.dtype)
            held = self._state(state, flip, B, H, h.dtype)
            matmul = self.xp.matmul

            def launch(s):
                matmul(h0 if s == 0 else held if flip else h[s - 1], V, out=acc)
                fn(grid, block, (h, acc, held, lengths, _i32(s)) + tail)
            return launch
        head = (h, h0, V, lengths)
        return lambda s: fn(grid, block, head + (_i32(s),) + tail)

    def _state(self, state, flip, B, H, dtype):
        """v4's (B, H) state of a reversed run (the caller's, checked: a later segment's carry,
        or zeros, as a new one); a dummy, never written, in the forward direction. (B, G·H) for
        a gated cell's dgh: H = G·H. A padded step leaves a row's state as it is: the carry its
        first step's product reads."""
        if not flip:
            return self._dummy(dtype)
        if state is None:
            return self.xp.zeros((B, H), dtype=dtype)
        return self.check("state", state, (B, H), dtype)

    def _check_t(self, t, T):
        if not 0 <= t < T:
            raise ValueError(f"t: expected 0 <= t < T = {T}, got {t}")

    def _scratch(self, scratch, B, H, dtype):
        """v4's (B, H) product buffer (B, G·H for a gated cell's forward: H = G·H), the caller's
        (checked) or a new one."""
        if scratch is None:
            return self.xp.empty((B, H), dtype=dtype)
        return self.check("scratch", scratch, (B, H), dtype)

    def fwd_operands(self, h, h0, V, lengths):
        """Check the operands shared by the forward kernels (step and persistent): h (T, B, H),
        h0 (B, H), V (H, H) of h's dtype, lengths (B,) int32; return them in kernel order."""
        T, B, H = h.shape
        self.check("h", h, (T, B, H), h.dtype)
        self.check("h0", h0, (B, H), h.dtype)
        self.check("V", V, (H, H), h.dtype)
        self.check("lengths", lengths, (B,), np.int32)
        return h, h0, V, lengths

    def bwd_operands(self, du, dh, dh_last, h, M, m_name, lengths):
        """Check the operands shared by the backward kernels (step and persistent) and return them
        as the kernels' leading arguments: du, dh, has_dh, dh_last, has_dh_last, h, M, lengths.
        M is V.T (step) or V (persistent), named m_name in errors; absent gradients become dummies."""
        T, B, H = du.shape
        dt = du.dtype
        self.check("du", du, (T, B, H), dt)
        if dh is not None:
            self.check("dh", dh, (T, B, H), dt)
        if dh_last is not None:
            self.check("dh_last", dh_last, (B, H), dt)
        self.check("h", h, (T, B, H), dt)
        self.check(m_name, M, (H, H), dt)
        self.check("lengths", lengths, (B,), np.int32)
        d = self._dummy(dt)
        return (du, d if dh is None else dh, _i32(dh is not None),
                d if dh_last is None else dh_last, _i32(dh_last is not None), h, M, lengths)

    def elman_bwd_step(self, du, dh, dh_last, h, VT, lengths, t, activation, version="v2",
                       scratch=None, *, flip=False, state=None):
        """Step t of the reverse recurrence: du[t] = (dh[t] + [t == lengths[b]-1] dh_last +
        du[t+1] @ VT) * f'(h[t]), zero where t >= lengths[b]; du[T] = 0.
        du (T, B, H) owned by the caller, row t written (row t+1 read); dh (T, B, H) or None;
        dh_last (B, H) or None; h (T, B, H); VT (H, H) = V.T contiguous; lengths (B,) int32;
        scratch: optional (B, H) buffer for v4's product. flip=True: step t of the backward of
        a reversed run (see bwd_stepper)."""
        self._check_t(t, du.shape[0])
        self.bwd_stepper(du, dh, dh_last, h, VT, lengths, activation, version, scratch,
                         flip=flip, state=state)(t)

    def bwd_stepper(self, du, dh, dh_last, h, VT, lengths, activation, version="v2", scratch=None,
                    *, flip=False, state=None):
        """A function of s that launches backward step s (as elman_bwd_step), operands checked
        and kernel looked up once per sequence (see fwd_stepper). s must be in 0..T-1, from T-1
        down. flip=True: the backward of a reversed run, step s working on t = lengths[b]-1-s
        (then its padded steps), dh_last entering at t = 0; v4 keeps the last step's du rows in
        `state` (B, H) for its product (kernels/elman_bwd_step.cu)."""
        T, B, H = du.shape
        operands = self.bwd_operands(du, dh, dh_last, h, VT, "VT", lengths)
        grid, block = registry.step_geometry(version, B, H)
        fn = self.loader.function(registry.STEP_BWD.file,
                                  registry.STEP_BWD.expression(version, du.dtype))
        act = _i32(activations.ACTIVATION_CODES[activation])
        if registry.STEP[version].product == "library":  # the product by cuBLAS, the rest ours
            du_, dh_, has_dh, dl_, has_dl, h_, _, lens = operands
            acc = self._scratch(scratch, B, H, du.dtype)
            held = self._state(state, flip, B, H, du.dtype)
            none = self._dummy(du.dtype)
            matmul = self.xp.matmul
            tail = (_i32(flip), _i32(B), _i32(H), act)

            def launch(s):
                more = s + 1 < T
                if more:
                    matmul(held if flip else du[s + 1], VT, out=acc)
                fn(grid, block, (du_, acc if more else none, _i32(more), held, dh_, has_dh, dl_,
                                 has_dl, h_, lens, _i32(s)) + tail)
            return launch
        tail = (_i32(flip), _i32(T), _i32(B), _i32(H), act)
        return lambda s: fn(grid, block, operands + (_i32(s),) + tail)

    # -- the tensor-core step kernels (kernels/elman_{fwd,bwd}_step_tc.cu; registry.TC_STEP) --------
    def _tc_function(self, family, version, dtype):
        """The tensor-core kernel of `family` for arrays of `dtype`: bfloat16 and float16 as
        stored, float32 with TF32 operands (these launchers are only for those modes)."""
        ctype = registry.tc_ctype(dtype, tf32=True)
        if ctype is None:
            raise TypeError(f"dtype: the tensor-core kernels take bfloat16, float16 or float32 "
                            f"(TF32), got {np.dtype(dtype)}")
        return self.loader.function(family.file, family.expression(version, ctype))

    def tc_fwd_stepper(self, h, h0, V, lengths, activation, version="tc1", *, flip=False):
        """fwd_stepper's twin on the tensor cores: a function of s launching forward step s in
        the array's precision mode (bfloat16, float16: products of the stored values; float32:
        TF32 operands), h[t] rounded once on store. Arguments as fwd_stepper's."""
        T, B, H = h.shape
        head = self.fwd_operands(h, h0, V, lengths)
        grid, block = registry.step_geometry(version, B, H, registry.TC_STEP)
        fn = self._tc_function(registry.TC_STEP_FWD, version, h.dtype)
        tail = (_i32(flip), _i32(B), _i32(H), _i32(activations.ACTIVATION_CODES[activation]))
        return lambda s: fn(grid, block, head + (_i32(s),) + tail)

    def tc_bwd_stepper(self, du, dh, dh_last, h, VT, lengths, activation, version="tc1", *,
                       flip=False):
        """bwd_stepper's twin on the tensor cores (see tc_fwd_stepper): du[t] rounded once on
        store. Arguments as bwd_stepper's; s from T-1 down."""
        T, B, H = du.shape
        operands = self.bwd_operands(du, dh, dh_last, h, VT, "VT", lengths)
        grid, block = registry.step_geometry(version, B, H, registry.TC_STEP)
        fn = self._tc_function(registry.TC_STEP_BWD, version, du.dtype)
        tail = (_i32(flip), _i32(T), _i32(B), _i32(H),
                _i32(activations.ACTIVATION_CODES[activation]))
        return lambda s: fn(grid, block, operands + (_i32(s),) + tail)

    def tc_gru_fwd_stepper(self, h, gates, p, h0, V, b_h, lengths, version="tc1", *, flip=False):
        """gru_fwd_stepper's twin on the tensor cores (kernels/gru_fwd_step_tc.cu), as
        tc_fwd_stepper: h[t] and gates[t] rounded once on store. Arguments as gru_fwd_stepper's."""
        T, B, H = h.shape
        ops = self.gru_fwd_operands(h, gates, p, h0, V, b_h, lengths)
        grid, block = registry.step_geometry(version, B, H, registry.TC_STEP)
        fn = self._tc_function(registry.TC_GRU_STEP_FWD, version, h.dtype)
        tail = (_i32(flip), _i32(B), _i32(H))
        return lambda s: fn(grid, block, ops + (_i32(s),) + tail)

    def tc_gru_bwd_stepper(self, dg, gn, zd, dh, dh_last, h, h0, gates, VT, lengths,
                           version="tc1", *, flip=False):
        """gru_bwd_stepper's twin on the tensor cores (kernels/gru_bwd_step_tc.cu): each stored
        value rounded once. Arguments as gru_bwd_stepper's; s from T-1 down."""
        T, B, H = h.shape
        ops = self.gru_bwd_operands(dg, gn, zd, dh, dh_last, h, h0, gates, VT, (3 * H, H), "VT",
                                    lengths)
        grid, block = registry.step_geometry(version, B, H, registry.TC_STEP)
        fn = self._tc_function(registry.TC_GRU_STEP_BWD, version, h.dtype)
        tail = (_i32(flip), _i32(T), _i32(B), _i32(H))
        return lambda s: fn(grid, block, ops + (_i32(s),) + tail)

    def gemm(self, a, b, *, trans_a=False, trans_b=False, bias=None, out=None, accumulate=False):
        """out = op(a) @ op(b) [+ bias] [+ out], with op = transpose where asked (not both).
        a, b: 2-D contiguous; bias (N,) or None; out (M, N) or None (allocated; accumulate needs
        it). Returns out."""
        if a.ndim != 2:
            raise ValueError(f"a: expected a 2-D array, got shape {tuple(a.shape)}")
        if b.ndim != 2:
            raise ValueError(f"b: expected a 2-D array, got shape {tuple(b.shape)}")
        dt = a.dtype
        self.check("a", a, a.shape, dt)
        self.check("b", b, b.shape, dt)
        if trans_a and trans_b:
            raise ValueError("trans_a, trans_b: the variant with both operands transposed is not provided")
        M, K = a.shape[::-1] if trans_a else a.shape
        Kb, N = b.shape[::-1] if trans_b else b.shape
        if Kb != K:
            raise ValueError(f"b: inner dimension {Kb} does not match a's {K}")
        if bias is not None:
            self.check("bias", bias, (N,), dt)
        if out is None:
            if accumulate:
                raise ValueError("out: accumulate=True needs an output to add to")
            out = self.xp.empty((M, N), dtype=dt)
        else:
            self.check("out", out, (M, N), dt)
        gemm = registry.GEMM
        fn = self.loader.function(gemm.file, gemm.expression("v1", dt, bool(trans_a), bool(trans_b)))
        # M (T·B for p and dx) goes on grid.x: grid.y takes at most MAX_GRID_Y blocks
        tile = gemm.versions["v1"].launch
        grid, block = tile.geometry(M, N)
        if grid[1] > MAX_GRID_Y:
            raise ValueError(f"b: N = {N} columns exceed the GEMM's {MAX_GRID_Y * tile.cols}")
        fn(grid, block, (a, b, out, self._dummy(dt) if bias is None else bias,
                             _i32(bias is not None), _i32(accumulate), _i32(M), _i32(N), _i32(K),
                             _i32(a.shape[1]), _i32(b.shape[1]), _i32(N)))
        return out

    def column_sum(self, x, rows_per_chunk=None):
        """Σ over rows of x (R, N) -> (N,), deterministically (two fixed-order passes)."""
        if x.ndim != 2:
            raise ValueError(f"x: expected a 2-D array, got shape {tuple(x.shape)}")
        self.check("x", x, x.shape, x.dtype)
        R, N = x.shape
        if rows_per_chunk is None:
            rows_per_chunk = max(64, cdiv(R, 256))
        fn = self.loader.function(registry.COLUMN_SUM.file,
                                  registry.COLUMN_SUM.expression("v1", x.dtype))
        tile = registry.COLUMN_SUM.versions["v1"].launch  # a block per COLSUM_COLS columns
        out = self.xp.empty(N, dtype=x.dtype)
        chunks = cdiv(R, rows_per_chunk)
        if chunks > 1:
            part = self.xp.empty((chunks, N), dtype=x.dtype)
            fn((cdiv(N, tile.cols), chunks, 1), tile.block,
               (x, part, _i32(R), _i32(N), _i32(rows_per_chunk)))
            x, R, rows_per_chunk = part, chunks, chunks
        fn((cdiv(N, tile.cols), 1, 1), tile.block, (x, out, _i32(R), _i32(N), _i32(rows_per_chunk)))
        return out

    # -- the persistent kernels: one cooperative launch per direction ------------------------------
    def persistent_fwd(self, h, h0, V, lengths, activation, plan):
        """The whole forward recurrence in place, as `plan` (a persistent LaunchPlan for h's
        problem) says: h (T, B, H) holds p on entry and h on exit. h0 (B, H); V (H, H);
        lengths (B,) int32 in 1..T. All owned by the caller; h is updated. plan.reverse: a
        reversed run, each batch row at its own time index (the kernel's flip)."""
        self.queue_persistent_fwd(h, h0, V, lengths, activation, plan)()
        return h

    def queue_persistent_fwd(self, h, h0, V, lengths, activation, plan):
        """persistent_fwd's launch, queued: returns the check to call once every launch that
        should run beside it is queued too (it reads the kernel's status word, which waits)."""
        T, B, H = h.shape
        _check_persistent(plan, B, H, h.dtype)
        operands = self.fwd_operands(h, h0, V, lengths)
        return self._cooperative(registry.PERSIST_FWD, plan, h.dtype, operands + (
            _i32(T), _i32(B), _i32(H), _i32(plan.cols),
            _i32(activations.ACTIVATION_CODES[activation]), _i32(plan.reverse)))

    def persistent_bwd(self, du, dh, dh_last, h, V, lengths, activation, plan, carry=False):
        """The whole reverse recurrence into du (T, B, H), every entry written, as `plan` says.
        dh (T, B, H) or None; dh_last (B, H) or None; h (T, B, H) the forward outputs; V (H, H)
        (not transposed); lengths (B,) int32 in 0..T. plan.reverse: the backward of a reversed
        run. carry: du, dh and h have T + 1 rows, du's last a later segment's carry (the du
        after each row's first step; CudaBackend._carried)."""
        self.queue_persistent_bwd(du, dh, dh_last, h, V, lengths, activation, plan, carry)()
        return du

    def queue_persistent_bwd(self, du, dh, dh_last, h, V, lengths, activation, plan,
                             carry=False):
        """persistent_bwd's launch, queued; returns its check (see queue_persistent_fwd)."""
        T, B, H = du.shape
        _check_persistent(plan, B, H, du.dtype)
        operands = self.bwd_operands(du, dh, dh_last, h, V, "V", lengths)
        return self._cooperative(registry.PERSIST_BWD, plan, du.dtype, operands + (
            _i32(T - carry), _i32(B), _i32(H), _i32(plan.cols),
            _i32(activations.ACTIVATION_CODES[activation]), _i32(plan.reverse), _i32(carry)))

    # -- the persistent kernels on the tensor cores (kernels/elman_persistent_tc_*.cu) -------------
    # plan: a persistent LaunchPlan of version "v1" with persistent.tc_plan's geometry, its dtype
    # "bfloat16" or "float16" (the arrays in that dtype), or "float32" with tf32 (the TF32 kernels).
    def persistent_tc_fwd(self, h, h0, V, lengths, activation, plan):
        """persistent_fwd on the tensor cores: h (T, B, H) holds p on entry and h on exit (in the
        plan's storage dtype); h0 (B, H); V (H, H); lengths (B,) int32 in 1..T."""
        self.queue_persistent_tc_fwd(h, h0, V, lengths, activation, plan)()
        return h

    def queue_persistent_tc_fwd(self, h, h0, V, lengths, activation, plan):
        """persistent_tc_fwd's launch, queued; returns its check (see queue_persistent_fwd)."""
        T, B, H = h.shape
        _check_persistent(plan, B, H, h.dtype)
        operands = self.fwd_operands(h, h0, V, lengths)
        return self._cooperative(registry.PERSIST_TC_FWD, plan, self._tc_ctype(plan), operands + (
            _i32(T), _i32(B), _i32(H), _i32(plan.cols),
            _i32(activations.ACTIVATION_CODES[activation]), _i32(plan.reverse)))

    def persistent_tc_bwd(self, du, dh, dh_last, h, V, lengths, activation, plan):
        """persistent_bwd on the tensor cores: du (T, B, H) written in full, in the plan's storage
        dtype; dh, dh_last or None; h the forward outputs; V (H, H) not transposed."""
        self.queue_persistent_tc_bwd(du, dh, dh_last, h, V, lengths, activation, plan)()
        return du

    def queue_persistent_tc_bwd(self, du, dh, dh_last, h, V, lengths, activation, plan):
        """persistent_tc_bwd's launch, queued; returns its check (see queue_persistent_fwd)."""
        T, B, H = du.shape
        _check_persistent(plan, B, H, du.dtype)
        operands = self.bwd_operands(du, dh, dh_last, h, V, "V", lengths)
        return self._cooperative(registry.PERSIST_TC_BWD, plan, self._tc_ctype(plan), operands + (
            _i32(T), _i32(B), _i32(H), _i32(plan.cols),
            _i32(activations.ACTIVATION_CODES[activation]), _i32(plan.reverse)))

    @staticmethod
    def _tc_ctype(plan):
        """The tensor-core kernels' element type for `plan`: bfloat16, float16, or float32 in
        TF32 mode (float32 without TF32 runs the float kernels)."""
        if plan.dtype == "float32" and not plan.tf32:
            raise ValueError("plan: the tensor-core persistent kernels take float32 only with tf32")
        if plan.dtype not in registry.TC_CTYPES:
            raise ValueError(f"plan: the tensor-core persistent kernels take "
                             f"{tuple(registry.TC_CTYPES)}, got dtype {plan.dtype}")
        return registry.TC_CTYPES[plan.dtype]

    # -- both directions of a bidirectional layer in one cooperative launch ------------------------
    def persistent_fwd_pair(self, fwd, rev, lengths, activation, pair):
        """Both directions' forward in one launch of the pair kernel, grid (g, 2, 1): fwd, rev
        are (h, h0, V) of each direction as persistent_fwd takes them (h updated in place);
        pair: a "one launch" PairPlan of persistent plans for h's problem."""
        T, B, H = fwd[0].shape
        plan = self._pair_plan(pair, fwd[0], rev[0])
        ops = [self.fwd_operands(h, h0, V, lengths)[:3] for h, h0, V in (fwd, rev)]
        self._cooperative(registry.PERSIST_FWD, plan, fwd[0].dtype, ops[0] + ops[1] + (
            lengths, _i32(T), _i32(B), _i32(H), _i32(plan.cols),
            _i32(activations.ACTIVATION_CODES[activation])), pair=pair)()
        return fwd[0], rev[0]

    def persistent_bwd_pair(self, fwd, rev, lengths, activation, pair):
        """Both directions' backward in one launch of the pair kernel: fwd, rev are (du, dh,
        dh_last, h, V) of each direction as persistent_bwd takes them (du written)."""
        T, B, H = fwd[0].shape
        plan = self._pair_plan(pair, fwd[0], rev[0])
        ops = [self.bwd_operands(du, dh, dl, h, V, "V", lengths)[:7]
               for du, dh, dl, h, V in (fwd, rev)]
        self._cooperative(registry.PERSIST_BWD, plan, fwd[0].dtype, ops[0] + ops[1] + (
            lengths, _i32(T), _i32(B), _i32(H), _i32(plan.cols),
            _i32(activations.ACTIVATION_CODES[activation])), pair=pair)()
        return fwd[0], rev[0]

    def _pair_plan(self, pair, a, a_rev):
        """The plan both halves of a pair launch run, after checking that it is one launch and
        that the reversed direction's output `a_rev` has the forward's (`a`) shape and dtype."""
        if pair.how != "one launch":
            raise ValueError(f"pair: expected a plan for one launch, got {pair.label}")
        self.check("rev", a_rev, a.shape, a.dtype)
        _check_persistent(pair.forward, *a.shape[1:], a.dtype)
        return pair.forward

    def _cooperative(self, family, plan, dtype, args, params=(), pair=None):
        """One cooperative launch of plan.grid blocks (the instance of `params`, the template
        arguments after T; pair: of the pair kernel, on pair.grid); raises rather than let any
        block be missing. Returns the check of the kernel's status
        words (one per direction), to call once every launch meant to run beside it is queued."""
        name = family.entry(plan.version, pair is not None)
        grid = plan.grid if pair is None else pair.grid
        fn = self.loader.function(family.file, family.expression(plan.version, dtype, *params,
                                                                 pair=pair is not None))
        if plan.smem > DEFAULT_SMEM:  # CuPy's RawKernel (and the emulator's) opt in per kernel
            fn.max_dynamic_shared_size_bytes = plan.smem
        # the kernel's grid check, one word per direction (always written)
        status = self.xp.empty(1 if pair is None else 2, dtype=np.int32)
        with warnings.catch_warnings():
            # CuPy shrinks a 1-D cooperative grid larger than its occupancy query allows, with only
            # a warning (cupy/cuda/function.pyx, _launch); every block owns fixed columns, so a
            # shrunk grid would leave some unwritten.
            warnings.filterwarnings("error", message=CUPY_SHRINK, category=UserWarning)
            try:
                fn(grid, plan.block, args + (status,), shared_mem=plan.smem)
            except UserWarning as e:
                raise RuntimeError(f"{name}: CuPy would launch fewer than the {grid[0]} "
                                   f"co-resident blocks the kernel needs ({e}); nothing was "
                                   "launched") from None

        def check():
            ran = max(int(r) for r in status.tolist())  # a small read: waits for the launch
            if ran:
                raise RuntimeError(f"{name}: only {ran} of the {grid[0]} blocks ran "
                                   f"({plan.cols} columns each), too few to cover H; the kernel "
                                   "wrote nothing (a runtime shrank the cooperative grid)")
        return check

    # -- the GRU (kernels/gru_*.cu; the cell's math in gru_common.cuh) -----------------------------
    def gru_fwd_operands(self, h, gates, p, h0, V, b_h, lengths):
        """Check the GRU forward's operands (step and persistent): h (T, B, H), gates
        (T, B, 4H), p (T, B, 3H), h0 (B, H), V (H, 3H), b_h (3H,) or None, all of h's dtype;
        lengths (B,) int32. Returns them as the kernels' leading arguments (b_h as bh, has_bh)."""
        T, B, H = h.shape
        dt = h.dtype
        self.check("h", h, (T, B, H), dt)
        self.check("gates", gates, (T, B, 4 * H), dt)
        self.check("p", p, (T, B, 3 * H), dt)
        self.check("h0", h0, (B, H), dt)
        self.check("V", V, (H, 3 * H), dt)
        if b_h is not None:
            self.check("b_h", b_h, (3 * H,), dt)
        self.check("lengths", lengths, (B,), np.int32)
        bh = (self._dummy(dt), _i32(0)) if b_h is None else (b_h, _i32(1))
        return (h, gates, p, h0, V) + bh + (lengths,)

    def gru_fwd_stepper(self, h, gates, p, h0, V, b_h, lengths, version="v2", *, flip=False,
                        scratch=None, state=None):
        """A function of s that launches GRU forward step s (kernels/gru_fwd_step.cu): h[t] and
        gates[t] from p[t] and the previous state, operands checked and the kernel looked up once
        per sequence. s in 0..T-1, in order. flip=True: a reversed run (each batch row from its
        last valid step down). v4: the product by xp.matmul into scratch (B, 3H), and, flipped,
        the last step's state in `state` (B, H); both allocated when None."""
        T, B, H = h.shape
        ops = self.gru_fwd_operands(h, gates, p, h0, V, b_h, lengths)
        grid, block = registry.step_geometry(version, B, H)
        family = registry.GRU_STEP_FWD
        fn = self.loader.function(family.file, family.expression(version, h.dtype))
        tail = (_i32(flip), _i32(B), _i32(H))
        if family.versions[version].product == "library":  # the product by cuBLAS, the rest ours
            acc = self._scratch(scratch, B, 3 * H, h.dtype)
            held = self._state(state, flip, B, H, h.dtype)
            *_, bh, has_bh, lens = ops
            matmul = self.xp.matmul

            def launch(s):
                matmul(h0 if s == 0 else held if flip else h[s - 1], V, out=acc)
                fn(grid, block, (h, gates, p, h0, acc, held, bh, has_bh, lens, _i32(s)) + tail)
            return launch
        return lambda s: fn(grid, block, ops + (_i32(s),) + tail)

    def gru_bwd_operands(self, dg, gn, zd, dh, dh_last, h, h0, gates, M, m_shape, m_name,
                         lengths):
        """Check the GRU backward's operands (step and persistent) and return them as the
        kernels' leading arguments: dg (T, B, 3H), gn (T, B, H), zd (B, H) written; dh
        (T, B, H) or None, dh_last (B, H) or None (absent ones become dummies); h (T, B, H),
        h0 (B, H), gates (T, B, 4H); M of m_shape (V.T for the step kernels, V for the
        persistent ones), named m_name; lengths (B,) int32."""
        T, B, H = h.shape
        dt = h.dtype
        self.check("dg", dg, (T, B, 3 * H), dt)
        self.check("gn", gn, (T, B, H), dt)
        self.check("zd", zd, (B, H), dt)
        if dh is not None:
            self.check("dh", dh, (T, B, H), dt)
        if dh_last is not None:
            self.check("dh_last", dh_last, (B, H), dt)
        self.check("h", h, (T, B, H), dt)
        self.check("h0", h0, (B, H), dt)
        self.check("gates", gates, (T, B, 4 * H), dt)
        self.check(m_name, M, m_shape, dt)
        self.check("lengths", lengths, (B,), np.int32)
        none = self._dummy(dt)
        return (dg, gn, zd, none if dh is None else dh, _i32(dh is not None),
                none if dh_last is None else dh_last, _i32(dh_last is not None), h, h0, gates,
                M, lengths)

    def gru_bwd_stepper(self, dg, gn, zd, dh, dh_last, h, h0, gates, VT, lengths, version="v2",
                        *, flip=False, scratch=None, state=None):
        """A function of s that launches GRU backward step s (kernels/gru_bwd_step.cu), operands
        checked and the kernel looked up once per sequence; s from T-1 down to 0. dg (T, B, 3H)
        gets dgh[t], gn (T, B, H) gn[t]; zd (B, H) must hold zeros before step T-1. VT (3H, H) =
        V.T contiguous. flip=True: the backward of a reversed run. v4: the product by xp.matmul
        into scratch (B, H), and, flipped, the last step's dgh rows in `state` (B, 3H)."""
        T, B, H = h.shape
        ops = self.gru_bwd_operands(dg, gn, zd, dh, dh_last, h, h0, gates, VT, (3 * H, H), "VT",
                                    lengths)
        grid, block = registry.step_geometry(version, B, H)
        family = registry.GRU_STEP_BWD
        fn = self.loader.function(family.file, family.expression(version, h.dtype))
        if family.versions[version].product == "library":  # the product by cuBLAS, the rest ours
            acc = self._scratch(scratch, B, H, h.dtype)
            held = self._state(state, flip, B, 3 * H, h.dtype)
            dg_, gn_, zd_, dh_, has_dh, dl_, has_dl, h_, h0_, gates_, _, lens = ops
            none = self._dummy(h.dtype)
            matmul = self.xp.matmul
            tail = (_i32(flip), _i32(B), _i32(H))

            def launch(s):
                more = s + 1 < T
                if more:
                    matmul(held if flip else dg[s + 1], VT, out=acc)
                fn(grid, block, (dg_, gn_, zd_, acc if more else none, _i32(more), held, dh_,
                                 has_dh, dl_, has_dl, h_, h0_, gates_, lens, _i32(s)) + tail)
            return launch
        tail = (_i32(flip), _i32(T), _i32(B), _i32(H))
        return lambda s: fn(grid, block, ops + (_i32(s),) + tail)

    def gru_persistent_fwd(self, h, gates, p, h0, V, b_h, lengths, plan, queue=False):
        """The whole GRU forward recurrence (kernels/gru_persistent_fwd.cu) as `plan` (a
        persistent GRU LaunchPlan for h's problem) says: h (T, B, H) and gates (T, B, 4H)
        written from p (T, B, 3H), h0 (B, H), V (H, 3H), b_h (3H,) or None, lengths (B,) int32.
        plan.reverse: a reversed run. queue: return the status check instead of calling it."""
        T, B, H = h.shape
        _check_persistent(plan, B, H, h.dtype, cell="gru")
        ops = self.gru_fwd_operands(h, gates, p, h0, V, b_h, lengths)
        check = self._cooperative(registry.GRU_PERSIST_FWD, plan, h.dtype, ops + (
            _i32(T), _i32(B), _i32(H), _i32(plan.cols), _i32(plan.reverse)))
        if queue:
            return check
        check()
        return h, gates

    def gru_persistent_bwd(self, dg, gn, zd, dh, dh_last, h, h0, gates, V, lengths, plan,
                           queue=False, carry=False):
        """The whole GRU backward recurrence (kernels/gru_persistent_bwd.cu) as `plan` says:
        dg (T, B, 3H) gets dgh, gn (T, B, H) gn, zd (B, H) (zeros on entry, or a later segment's
        dhs·z) the first step's carry dhs·z; V (H, 3H) not transposed; the rest as
        gru_bwd_stepper. queue: as gru_persistent_fwd's. carry: every (T, .) array has one more
        row, dg's last a later segment's dgh (CudaBackend._carried)."""
        T, B, H = h.shape
        _check_persistent(plan, B, H, h.dtype, cell="gru")
        ops = self.gru_bwd_operands(dg, gn, zd, dh, dh_last, h, h0, gates, V, (H, 3 * H), "V",
                                    lengths)
        check = self._cooperative(registry.GRU_PERSIST_BWD, plan, h.dtype, ops + (
            _i32(T - carry), _i32(B), _i32(H), _i32(plan.cols), _i32(plan.reverse),
            _i32(carry)))
        if queue:
            return check
        check()
        return dg
