// kernels/lstm_common.cuh — the LSTM cell (G = 4 gates i, f, g, o, torch's order): its epilogues,
//   the one home of the cell's formulas for every LSTM kernel (step v1..v4, persistent v1, v2;
//   docs/architecture.md §1). The recurrent sums they take come from the cell-independent headers
//   (tile_gemm.cuh, persistent_common.cuh) or, for v4, from cuBLAS.
//   u = p[t] + h[t-1] @ V  (p = x @ W + b);  i, f, o = σ(u_i, u_f, u_o);  g = tanh(u_g)
//   c[t] = f·c[t-1] + i·g;  m[t] = o·tanh(c[t]);  h[t] = m[t] (@ R with a projection)
//   lstm_fwd_out   one unit (b, n): gates, c[t], and m[t], from the 4 sums
//                  s[q] = (h[t-1] @ V)[b, q*H + n]
//   lstm_dhs       backward: the total gradient on h[t, b, n], from s = (du[t+1] @ V.T)[b, n],
//                  dh[t] and dh_last (entering at the run's last step)
//   lstm_bwd_out   backward: du[t, b, q*H + n] for the 4 gates from dm = the gradient on m[t, b, n]
//                  (dhs, or dhs @ R.T), carrying the cell-state gradient dc between steps
// Layout, row-major: gates (T, B, 4H) (p on entry, the activated [i|f|g|o] after the forward);
//   c (T, B, H); c0 (B, H); du (T, B, 4H); dc (B, H) the carried cell-state gradient.
// Every array is 0 from the example's length on (t >= len: padding), set, not multiplied. Step s
//   of a run works on t = step_time(s, len, flip) (step_order.cuh); its previous state is that of
//   step s-1 (c0 at s = 0), and dh_last, dc_last enter at the run's last step s = len-1.
// Types: float, double (templates).
#pragma once
// elman_common.cuh is the activations' one home (act_apply, act_tanh)
#include "elman_common.cuh"
#include "step_order.cuh"

template <typename T>
__device__ inline T lstm_sigmoid(T u) { return act_apply(ACT_SIGMOID, u); }

// c[t-1] of row b at step s of a run: c0 at s = 0, else c at step s-1's time index.
template <typename T>
__device__ inline T lstm_c_prev(const T* c, const T* c0, int s, int flip, int len, int B, int H,
                                int b, int n) {
    if (s == 0) return c0[(size_t)b * H + n];
    return c[((size_t)step_time(s - 1, len, flip) * B + b) * H + n];
}

// Forward, unit (b, n) at step s: gates[t, b, q*H + n] hold p on entry and the activated gates on
// exit, c[t, b, n] is written; returns m[t, b, n] (0 at a padded step) for the caller to store.
template <typename T>
__device__ inline T lstm_fwd_out(T* gates, T* c, const T* c0, const T (&s)[4], int step, int flip,
                                 int len, int B, int H, int b, int n) {
    const int t = step_time(step, len, flip);
    const size_t row = (size_t)t * B + b;
    T* gp = gates + row * 4 * H + n;
    if (step >= len) {
        gp[0] = gp[H] = gp[2 * H] = gp[3 * H] = T(0);
        c[row * H + n] = T(0);
        return T(0);
    }
    const T i = lstm_sigmoid(gp[0] + s[0]), f = lstm_sigmoid(gp[H] + s[1]);
    const T g = act_tanh(gp[2 * H] + s[2]), o = lstm_sigmoid(gp[3 * H] + s[3]);
    gp[0] = i;
    gp[H] = f;
    gp[2 * H] = g;
    gp[3 * H] = o;
    const T cn = f * lstm_c_prev(c, c0, step, flip, len, B, H, b, n) + i * g;
    c[row * H + n] = cn;
    return o * act_tanh(cn);
}

// Backward, the total gradient on h[t, b, n] (h of N columns) at step `step` (time t): s + dh[t]
// + dh_last at the run's last step; 0 at a padded step. dh (T, B, N) when has_dh; dh_last (B, N)
// when has_dh_last.
template <typename T>
__device__ inline T lstm_dhs(T s, const T* dh, int has_dh, const T* dh_last, int has_dh_last,
                             int t, int step, int len, int B, int N, int b, int n) {
    if (step >= len) return T(0);
    T g = s;
    if (has_dh) g += dh[((size_t)t * B + b) * N + n];
    if (has_dh_last && step == len - 1) g += dh_last[(size_t)b * N + n];
    return g;
}

// Backward, unit (b, n) at step `step` of the run, from dm = the gradient on m[t, b, n]: writes
// du[t, b, q*H + n] for the 4 gates and returns them in d. dc (B, H) carries the cell-state
// gradient: at the run's last step it starts from dc_last (B, H; 0 without has_dc_last), else
// from dc as the step after left it; on exit dc = dc·f, which after step 0 is the gradient on c0.
// Padded steps write du = 0 and leave dc alone.
template <typename T>
__device__ inline void lstm_bwd_out(T* du, T* dc, const T* dc_last, int has_dc_last,
                                    const T* gates, const T* c, const T* c0, T dm, int step,
                                    int flip, int len, int B, int H, int b, int n, T (&d)[4]) {
    const int t = step_time(step, len, flip);
    const size_t row = (size_t)t * B + b;
    T* dp = du + row * 4 * H + n;
    if (step >= len) {
        d[0] = d[1] = d[2] = d[3] = T(0);
    } else {
        const T* gp = gates + row * 4 * H + n;
        const T i = gp[0], f = gp[H], g = gp[2 * H], o = gp[3 * H];
        const size_t k = (size_t)b * H + n;
        T dcv = step == len - 1 ? (has_dc_last ? dc_last[k] : T(0)) : dc[k];
        const T tc = act_tanh(c[row * H + n]);
        dcv += dm * o * (T(1) - tc * tc);
        d[0] = dcv * g * i * (T(1) - i);
        d[1] = dcv * lstm_c_prev(c, c0, step, flip, len, B, H, b, n) * f * (T(1) - f);
        d[2] = dcv * i * (T(1) - g * g);
        d[3] = dm * tc * o * (T(1) - o);
        dc[k] = dcv * f;
    }
    dp[0] = d[0];
    dp[H] = d[1];
    dp[2 * H] = d[2];
    dp[3 * H] = d[3];
}
