"""The LSTM's launchers (kernels/lstm_*.cu; docs/architecture.md §1): a mixin of Launchers
(launchers.py), which supplies the checks, the dummies and the cooperative launch. Grids and
blocks come from the registry's LSTM_STEP (forward) and LSTM_STEP_BWD_TABLE tables; the
persistent launches take the plan.

A projection (R (H, P), proj_size P) on the step path: forward, each step's fused
kernel writes m = o·tanh(c) (B, H) and cuBLAS (xp.matmul) computes h[t] = m @ R; backward, the
first launch writes dhs[t] (the product by V.T plus dh, dh_last), cuBLAS computes dm = dhs[t] @
R.T and lstm_bwd_step_v4 (mode LSTM_BWD_FROM_DM) the gates' gradients from it, whatever the
version of the first launch. The persistent kernels run it as a second phase of each step
(kernels/lstm_persistent_fwd.cu, lstm_persistent_bwd.cu).
"""
from __future__ import annotations

import numpy as np

from . import persistent, registry

FULL, DHS, FROM_DM = (registry.LSTM_BWD_MODES[k] for k in
                      ("LSTM_BWD_FULL", "LSTM_BWD_DHS", "LSTM_BWD_FROM_DM"))


def _i32(v):
    return np.int32(v)


class LstmLaunchers:
    """Mixed into Launchers: self.xp, self.loader, self.check, self._dummy, self._cooperative."""

    def lstm_state_operands(self, gates, c, c0, lengths):
        """Check what every LSTM kernel shares: gates (T, B, 4H), c (T, B, H), c0 (B, H) of
        gates' dtype, lengths (B,) int32. Returns (T, B, H)."""
        T, B, G4 = gates.shape
        if G4 % registry.LSTM_GATES:
            raise ValueError(f"gates: expected shape (T, B, 4H), got {tuple(gates.shape)}")
        H, dt = G4 // registry.LSTM_GATES, gates.dtype
        self.check("gates", gates, (T, B, G4), dt)
        self.check("c", c, (T, B, H), dt)
        self.check("c0", c0, (B, H), dt)
        self.check("lengths", lengths, (B,), np.int32)
        return T, B, H

    def _lstm_proj(self, R, H, dtype):
        """P (0 without a projection) after checking R (H, P)."""
        if R is None:
            return 0
        self.check("R", R, (H, None), dtype)
        return R.shape[1]

    def _lstm_rows(self, lengths, T, flip):
        """For a reversed run, the time index of each batch row at each step s, (T, B)
        (step_order.cuh's step_time), and arange(B): where the dense (B, .) rows of step s lie
        in a (T, B, .) array. (None, None) forward: step s is row s."""
        if not flip:
            return None, None
        xp = self.xp
        s = xp.arange(T, dtype=np.int32)[:, None]
        return xp.where(s < lengths[None, :], lengths[None, :] - 1 - s, s), xp.arange(
            lengths.shape[0])

    def lstm_fwd_stepper(self, gates, c, h, h0, c0, V, lengths, version="v2", *, flip=False,
                         R=None):
        """A function of s that launches forward step s of the LSTM (s = 0..T-1, in order):
        gates (T, B, 4H) holds p on entry and the activated gates after; c (T, B, H) and
        h (T, B, Hs) written (Hs = P with a projection R (H, P), else H); h0 (B, Hs); c0 (B, H);
        V (Hs, 4H); lengths (B,) int32. flip=True: a reversed run (kernels/lstm_fwd_step.cu)."""
        T, B, H = self.lstm_state_operands(gates, c, c0, lengths)
        dt, xp = gates.dtype, self.xp
        P = self._lstm_proj(R, H, dt)
        Hs = P or H
        self.check("V", V, (Hs, 4 * H), dt)
        self.check("h", h, (T, B, Hs), dt)
        self.check("h0", h0, (B, Hs), dt)
        fam = registry.LSTM_STEP_FWD
        fn = self.loader.function(fam.file, fam.expression(version, dt))
        grid, block = registry.step_geometry(version, B, H, registry.LSTM_STEP)
        m = xp.empty((B, H), dtype=dt) if P else self._dummy(dt)
        hs = xp.empty((B, P), dtype=dt) if P else None
        tidx, ar = self._lstm_rows(lengths, T, flip)
        matmul = xp.matmul
        tail = (_i32(flip), _i32(B), _i32(H))
        if registry.LSTM_STEP[version].product == "library":  # the product by cuBLAS
            acc = xp.empty((B, 4 * H), dtype=dt)
            state = xp.empty((B, H), dtype=dt) if flip and not P else self._dummy(dt)

            def product(s):
                matmul(h0 if s == 0 else hs if P else state if flip else h[s - 1], V, out=acc)
                fn(grid, block, (gates, c, h, m, acc, state, c0, lengths, _i32(s)) + tail
                   + (_i32(bool(P)),))
        else:
            head = (gates, c, h, m, h0, c0, V, lengths)

            def product(s):
                fn(grid, block, head + (_i32(s),) + tail + (_i32(Hs), _i32(bool(P))))

        if not P:
            return product

        def launch(s):
            product(s)
            matmul(m, R, out=hs)  # m is 0 at padded rows, so is h there
            if flip:
                h[tidx[s], ar] = hs
            else:
                h[s] = hs
        return launch

    def lstm_bwd_stepper(self, du, dc, dc_last, dhs, dh, dh_last, gates, c, c0, VT, lengths,
                         version="v2", *, flip=False, R=None, state=None):
        """A function of s that launches backward step s of the LSTM (s = T-1 down to 0):
        du (T, B, 4H) written; dc (B, H) the carried cell-state gradient, dc0 after step 0;
        dc_last (B, H) or None; dhs (T, B, P) written with a projection R (H, P), else None;
        dh (T, B, Hs) or None; dh_last (B, Hs) or None; gates (T, B, 4H) and c (T, B, H) the
        forward's; c0 (B, H); VT (4H, Hs) = V.T contiguous; lengths (B,) int32. flip=True: the
        backward of a reversed run (kernels/lstm_bwd_step.cu); state (B, 4H) or None (zeros):
        v4's du rows of the step before, flipped, where a later segment's carry goes."""
        T, B, H = self.lstm_state_operands(gates, c, c0, lengths)
        dt, xp = gates.dtype, self.xp
        P = self._lstm_proj(R, H, dt)
        N = P or H
        self.check("VT", VT, (4 * H, N), dt)
        self.check("du", du, (T, B, 4 * H), dt)
        self.check("dc", dc, (B, H), dt)
        d = self._dummy(dt)
        opt = []
        for name, a, shape in (("dc_last", dc_last, (B, H)), ("dh", dh, (T, B, N)),
                               ("dh_last", dh_last, (B, N))):
            if a is not None:
                self.check(name, a, shape, dt)
            opt += [d if a is None else a, _i32(a is not None)]
        (dcl, has_dcl), (dh_, has_dh), (dhl, has_dhl) = opt[0:2], opt[2:4], opt[4:6]
        if P:
            self.check("dhs", dhs, (T, B, P), dt)
        mode = DHS if P else FULL
        fam = registry.LSTM_STEP_BWD
        fn = self.loader.function(fam.file, fam.expression(version, dt))
        grid, block = registry.step_geometry(version, B, N, registry.LSTM_STEP_BWD_TABLE)
        library = registry.LSTM_STEP[version].product == "library"
        state = self._state(state, flip and (library or P), B, 4 * H, dt)
        matmul = xp.matmul
        head = (du, dc, dcl, has_dcl, dhs if P else d, dh_, has_dh, dhl, has_dhl, gates, c, c0)
        if library:
            acc = xp.empty((B, N), dtype=dt)

            def first(s):
                more = s + 1 < T
                if more:
                    matmul(state if flip else du[s + 1], VT, out=acc)
                fn(grid, block, head + (acc if more else d, _i32(more), state, lengths, _i32(s),
                                        _i32(flip), _i32(B), _i32(H), _i32(N), _i32(mode)))
        else:
            def first(s):
                fn(grid, block, head + (VT, lengths, _i32(s), _i32(flip), _i32(T), _i32(B),
                                        _i32(H), _i32(N), _i32(mode)))

        if not P:
            return first
        RT = xp.ascontiguousarray(R.T)
        dm = xp.empty((B, H), dtype=dt)
        tidx, ar = self._lstm_rows(lengths, T, flip)
        fn4 = self.loader.function(fam.file, fam.expression("v4", dt))
        grid4, block4 = registry.step_geometry("v4", B, H, registry.LSTM_STEP_BWD_TABLE)
        tail4 = (_i32(flip), _i32(B), _i32(H), _i32(H), _i32(FROM_DM))
        head4 = (du, dc, dcl, has_dcl, d, d, _i32(0), d, _i32(0), gates, c, c0, dm, _i32(1), state,
                 lengths)

        def launch(s):
            first(s)
            matmul(dhs[tidx[s], ar] if flip else dhs[s], RT, out=dm)
            fn4(grid4, block4, head4 + (_i32(s),) + tail4)
        return launch

    def _lstm_persistent_plan(self, plan, B, H, dtype, P):
        if plan.algo != "persistent" or plan.cell != "lstm" or plan.P != P:
            raise ValueError(f"plan: expected a persistent LSTM plan with P={P}, got "
                             f"{plan.label} ({plan.cell}, P={plan.P})")
        plan.check_problem(B, H, np.dtype(dtype).name, cell="lstm", P=P)
        return persistent.proj_cols(P, H, plan.cols) if P else 0

    def lstm_persistent_fwd(self, gates, c, h, h0, c0, V, lengths, plan, R=None, queue=False):
        """The whole forward LSTM recurrence in one cooperative launch, as `plan` says: gates
        (T, B, 4H) holds p on entry and the activated gates on exit; c (T, B, H) and h (T, B, Hs)
        written (Hs = P with a projection R (H, P), else H); h0 (B, Hs); c0 (B, H); V (Hs, 4H);
        lengths (B,) int32. plan.reverse: a reversed run. queue: return the status check
        (launchers.py: _cooperative) rather than call it."""
        T, B, H = self.lstm_state_operands(gates, c, c0, lengths)
        dt = gates.dtype
        P = self._lstm_proj(R, H, dt)
        pcols = self._lstm_persistent_plan(plan, B, H, dt, P)
        Hs = P or H
        self.check("V", V, (Hs, 4 * H), dt)
        self.check("h", h, (T, B, Hs), dt)
        self.check("h0", h0, (B, Hs), dt)
        d = self._dummy(dt)
        m = self.xp.empty((B, H), dtype=dt) if P else d
        check = self._cooperative(registry.LSTM_PERSIST_FWD, plan, dt, (
            gates, c, h, m, h0, c0, V, d if R is None else R, lengths, _i32(T), _i32(B), _i32(H),
            _i32(P), _i32(plan.cols), _i32(pcols), _i32(plan.reverse)),
            registry.CELLS["lstm"].persist_params(P))
        return check if queue else check()

    def lstm_persistent_bwd(self, du, dc, dc_last, dh, dh_last, gates, c, c0, V, lengths, plan,
                            R=None, dhs=None, queue=False, carry=False):
        """The whole reverse LSTM recurrence in one cooperative launch: du (T, B, 4H) written;
        dc (B, H) written (dc0 on exit); dc_last (B, H), dh (T, B, Hs), dh_last (B, Hs) or None;
        gates, c the forward's; c0 (B, H); V (Hs, 4H) (not transposed); with a projection R
        (H, P), dhs (T, B, P) written. queue: as lstm_persistent_fwd's. carry: every (T, .)
        array has one more row, du's last a later segment's carry (CudaBackend._carried)."""
        T, B, H = self.lstm_state_operands(gates, c, c0, lengths)
        dt = gates.dtype
        P = self._lstm_proj(R, H, dt)
        pcols = self._lstm_persistent_plan(plan, B, H, dt, P)
        Hs = P or H
        self.check("V", V, (Hs, 4 * H), dt)
        self.check("du", du, (T, B, 4 * H), dt)
        self.check("dc", dc, (B, H), dt)
        d = self._dummy(dt)
        if P:
            self.check("dhs", dhs, (T, B, P), dt)
        args = []
        for name, a, shape in (("dc_last", dc_last, (B, H)), ("dh", dh, (T, B, Hs)),
                               ("dh_last", dh_last, (B, Hs))):
            if a is not None:
                self.check(name, a, shape, dt)
            args += [d if a is None else a, _i32(a is not None)]
        dc_last_args, grads = args[:2], args[2:]
        check = self._cooperative(registry.LSTM_PERSIST_BWD, plan, dt, (
            du, dc, *dc_last_args, d if dhs is None else dhs, *grads, gates, c, c0, V,
            d if R is None else R, lengths, _i32(T - carry), _i32(B), _i32(H), _i32(P),
            _i32(plan.cols), _i32(pcols), _i32(plan.reverse), _i32(carry)),
            registry.CELLS["lstm"].persist_params(P))
        return check if queue else check()
