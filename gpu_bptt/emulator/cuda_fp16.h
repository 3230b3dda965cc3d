// cuda_fp16.h for the emulator: __half and __half2 with CUDA's conversions, bit for bit.
// float -> half rounds to nearest even (cvt.rn.f16.f32): overflow gives inf, results below the
// normal range are half subnormals, and every NaN becomes CUDA's canonical NaN 0x7fff.
// half -> float is exact (NaN payloads kept). Arithmetic on __half rounds the float result once,
// which is the correctly rounded half result (float has more than 2·11+2 bits).
#pragma once
#include <cstdint>
#include <cstring>

namespace emu {
inline unsigned short f32_to_f16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    unsigned short sign = (unsigned short)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7fffu;                   // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;           // >= 65520 rounds to inf
    if (a < 0x38800000u) {                                 // below 2^-14: a half subnormal or zero
        if (a <= 0x33000000u) return sign;                 // <= 2^-25 (the tie goes to even 0)
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                          // value = m·2^(e-150), unit 2^-24
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return sign | (unsigned short)r;
    }
    uint32_t r = (a - 0x38000000u) >> 13, rem = a & 0x1fffu;  // rebias 127 -> 15
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return sign | (unsigned short)r;
}
inline float f16_bits_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
        float v = (float)m * 0x1p-24f;                     // exact
        std::memcpy(&u, &v, 4);
        u |= sign;
    } else {
        u = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
}  // namespace emu

struct __half_raw { unsigned short x; };
struct alignas(2) __half {
    static constexpr const char* emu_type_name = "__half";
    unsigned short __x;
    __half() = default;
    constexpr __half(__half_raw r) : __x(r.x) {}
    __half(float f) : __x(emu::f32_to_f16_bits(f)) {}
    __half& operator=(float f) { __x = emu::f32_to_f16_bits(f); return *this; }
    operator float() const { return emu::f16_bits_to_f32(__x); }
    operator __half_raw() const { return {__x}; }
};
struct alignas(4) __half2 {
    static constexpr const char* emu_type_name = "__half2";
    __half x, y;
};

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return emu::f16_bits_to_f32(h.__x); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half(__half_raw{u}); }
inline short __half_as_short(__half h) { return (short)h.__x; }
inline __half __short_as_half(short s) { return __half(__half_raw{(unsigned short)s}); }
inline __half2 __floats2half2_rn(float a, float b) { return {__half(a), __half(b)}; }
inline __half2 __float22half2_rn(float2 v) { return {__half(v.x), __half(v.y)}; }
inline __half2 __float2half2_rn(float a) { return {__half(a), __half(a)}; }
inline __half2 __halves2half2(__half a, __half b) { return {a, b}; }
inline float __low2float(__half2 v) { return __half2float(v.x); }
inline float __high2float(__half2 v) { return __half2float(v.y); }
inline __half __low2half(__half2 v) { return v.x; }
inline __half __high2half(__half2 v) { return v.y; }
inline float2 __half22float2(__half2 v) { return {__half2float(v.x), __half2float(v.y)}; }

inline __half operator-(__half a) { return __half(__half_raw{(unsigned short)(a.__x ^ 0x8000u)}); }
#define EMU_HALF_OP(OP) \
    inline __half operator OP(__half a, __half b) { return __half(float(a) OP float(b)); } \
    inline __half& operator OP##=(__half& a, __half b) { return a = a OP b; }
EMU_HALF_OP(+) EMU_HALF_OP(-) EMU_HALF_OP(*) EMU_HALF_OP(/)
#undef EMU_HALF_OP
