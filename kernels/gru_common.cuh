// kernels/gru_common.cuh — the GRU cell (G = 3 gates r, z, n in torch's column order): its two
//   epilogues, the one home of the cell's formulas for every GRU kernel (step v1..v4, persistent
//   v1, v2; docs/architecture.md §1). V (H, 3H), b_h (3H,) the recurrent bias (torch's bias_hh,
//   kept apart because it sits inside r·(...)), p (T, B, 3H) = x @ W + b_x for all t.
//   gru_fwd_out   one unit (b, n) of step t, from the G sums s[q] = (h[t-1] @ V)[b, q*H + n]:
//                 r = σ(p_r + s_r + b_hr), z = σ(p_z + s_z + b_hz), hn = s_n + b_hn,
//                 n = tanh(p_n + r·hn), h[t] = (1 - z)·n + z·h[t-1]; saves gates[t] = [r|z|n|hn]
//                 (T, B, 4H): hn is kept because the reset gate's derivative needs it.
//   gru_bwd_out   one unit (b, n) of the reverse step t, from the one sum
//                 s = (dgh[t+1] @ V.T)[b, n] (K = 3H) and zd[b, n] = dhs[t+1]·z[t+1] of the step
//                 before (the z·h[t-1] path of the carry):
//                 dhs = dh[t] + [t = last] dh_last + s + zd;  gn = dhs·(1-z)·(1-n²);
//                 gr = gn·hn·r(1-r);  gz = dhs·(h[t-1] - n)·z(1-z);
//                 writes dgh[t] = [gr | gz | gn·r] (the gradient on h[t-1] @ V + b_h, which the
//                 next step's product reads), gn[t] = gn (the n block of the gradient on p: the
//                 backend puts it in place of gn·r after the loop) and zd = dhs·z.
//   Both write zeros for t >= len, but for zd, which keeps its value (padding: set, never
//   multiplied by 0, so NaN in dh or p there does not leak). In a reversed run (flip) row b's step s works on t = step_time<true>(s, len)
//   (step_order.cuh): the previous state is h[t+1], dgh of the step before is dgh[t-1], and
//   dh_last enters at the run's last step s = len-1 (t = 0).
// Types: float, double (overloads / templates).
#pragma once

__device__ inline float gru_sigmoid(float u) { return 1.0f / (1.0f + expf(-u)); }
__device__ inline double gru_sigmoid(double u) { return 1.0 / (1.0 + exp(-u)); }
__device__ inline float gru_tanh(float u) { return tanhf(u); }
__device__ inline double gru_tanh(double u) { return tanh(u); }

// Forward, unit (b, n) at time t: h (T, B, H) and gates (T, B, 4H) written; p (T, B, 3H) read;
// bh (3H,) when has_bh; hprev the previous state's row b (H,), read only where valid (t < len).
template <typename T>
__device__ inline void gru_fwd_out(T* h, T* gates, const T* p, const T* bh, int has_bh,
                                   const T* hprev, const T (&s)[3], int t, bool valid, int B,
                                   int H, int b, int n) {
    const size_t row = (size_t)t * B + b;
    T* g = gates + row * 4 * H + n;
    if (!valid) {
        h[row * H + n] = T(0);
        g[0] = g[H] = g[2 * H] = g[3 * H] = T(0);
        return;
    }
    const T* pr = p + row * 3 * H + n;
    const T hr = s[0] + (has_bh ? bh[n] : T(0));
    const T hz = s[1] + (has_bh ? bh[H + n] : T(0));
    const T hn = s[2] + (has_bh ? bh[2 * H + n] : T(0));
    const T r = gru_sigmoid(pr[0] + hr);
    const T z = gru_sigmoid(pr[H] + hz);
    const T c = gru_tanh(pr[2 * H] + r * hn);
    h[row * H + n] = (T(1) - z) * c + z * hprev[n];
    g[0] = r;
    g[H] = z;
    g[2 * H] = c;
    g[3 * H] = hn;
}

// Backward, unit (b, n) at time t, step `step` of the run: dg (T, B, 3H) and gn (T, B, H)
// written at t; zd (B, H) read (the step before's dhs·z, 0 before the first) and rewritten;
// dh (T, B, H) when has_dh; dh_last (B, H) when has_dh_last; gates (T, B, 4H) and hprev (the
// forward's previous state, row b) read; len = lengths[b].
template <typename T>
__device__ inline void gru_bwd_out(T* dg, T* gn, T* zd, T s, const T* dh, int has_dh,
                                   const T* dh_last, int has_dh_last, const T* gates,
                                   const T* hprev, int t, int step, int len, int B, int H, int b,
                                   int n) {
    const size_t row = (size_t)t * B + b, i = (size_t)b * H + n;
    T* d = dg + row * 3 * H + n;
    if (t >= len) {
        d[0] = d[H] = d[2 * H] = T(0);
        gn[row * H + n] = T(0);
        return;  // zd stays: zeros, or a later segment's carry for the row's first step
    }
    T dhs = s + zd[i];
    if (has_dh) dhs += dh[row * H + n];
    if (has_dh_last && step == len - 1) dhs += dh_last[i];
    const T* g = gates + row * 4 * H + n;
    const T r = g[0], z = g[H], c = g[2 * H], hn = g[3 * H];
    const T dn = dhs * (T(1) - z) * (T(1) - c * c);
    d[0] = dn * hn * r * (T(1) - r);
    d[H] = dhs * (hprev[n] - c) * z * (T(1) - z);
    d[2 * H] = dn * r;
    gn[row * H + n] = dn;
    zd[i] = dhs * z;
}
