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
// Types: float, double (overloads / templates); __nv_bfloat16, __half stored, float work
//   (storage16.cuh, the tensor-core step kernels).
#pragma once
#include "storage.cuh"

__device__ inline float gru_sigmoid(float u) { return 1.0f / (1.0f + expf(-u)); }
__device__ inline double gru_sigmoid(double u) { return 1.0 / (1.0 + exp(-u)); }
__device__ inline float gru_tanh(float u) { return tanhf(u); }
__device__ inline double gru_tanh(double u) { return tanh(u); }

// T the storage type, W the work type (storage.cuh): every value computed in W, each stored one
// rounded once to T.
template <typename T, typename W>
__device__ inline void gru_fwd_out(T* h, T* gates, const T* p, const T* bh, int has_bh,
                                   const T* hprev, const W (&s)[3], int t, bool valid, int B,
                                   int H, int b, int n) {
    const size_t row = (size_t)t * B + b;
    T* g = gates + row * 4 * H + n;
    if (!valid) {
        store_rounded(h + row * H + n, W(0));
        for (int q = 0; q < 4; ++q) store_rounded(g + q * H, W(0));
        return;
    }
    const T* pr = p + row * 3 * H + n;
    const W hr = s[0] + (has_bh ? work_of(bh[n]) : W(0));
    const W hz = s[1] + (has_bh ? work_of(bh[H + n]) : W(0));
    const W hn = s[2] + (has_bh ? work_of(bh[2 * H + n]) : W(0));
    const W r = gru_sigmoid(work_of(pr[0]) + hr);
    const W z = gru_sigmoid(work_of(pr[H]) + hz);
    const W c = gru_tanh(work_of(pr[2 * H]) + r * hn);
    store_rounded(h + row * H + n, (W(1) - z) * c + z * work_of(hprev[n]));
    store_rounded(g, r);
    store_rounded(g + H, z);
    store_rounded(g + 2 * H, c);
    store_rounded(g + 3 * H, hn);
}

// dgh's n block is gn·r of the stored gn (the value the gradient on p keeps), rounded again:
// in a 16-bit type the reference's two rounding points; in float and double the same product.
template <typename T, typename W>
__device__ inline void gru_bwd_out(T* dg, T* gn, T* zd, W s, const T* dh, int has_dh,
                                   const T* dh_last, int has_dh_last, const T* gates,
                                   const T* hprev, int t, int step, int len, int B, int H, int b,
                                   int n) {
    const size_t row = (size_t)t * B + b, i = (size_t)b * H + n;
    T* d = dg + row * 3 * H + n;
    if (t >= len) {
        for (int q = 0; q < 3; ++q) store_rounded(d + q * H, W(0));
        store_rounded(gn + row * H + n, W(0));
        return;  // zd stays: zeros, or a later segment's carry for the row's first step
    }
    W dhs = s + work_of(zd[i]);
    if (has_dh) dhs += work_of(dh[row * H + n]);
    if (has_dh_last && step == len - 1) dhs += work_of(dh_last[i]);
    const T* g = gates + row * 4 * H + n;
    const W r = work_of(g[0]), z = work_of(g[H]), c = work_of(g[2 * H]), hn = work_of(g[3 * H]);
    const W dn = dhs * (W(1) - z) * (W(1) - c * c);
    store_rounded(d, dn * hn * r * (W(1) - r));
    store_rounded(d + H, dhs * (work_of(hprev[n]) - c) * z * (W(1) - z));
    store_rounded(gn + row * H + n, dn);
    store_rounded(d + 2 * H, work_of(gn[row * H + n]) * r);
    store_rounded(zd + i, dhs * z);
}
