// cuda_bf16.h for the emulator: __nv_bfloat16 and __nv_bfloat162 with CUDA's conversions, bit for
// bit. float -> bfloat16 rounds to nearest even (cvt.rn.bf16.f32): overflow gives inf, subnormals
// round like any other value, and every NaN becomes CUDA's canonical NaN 0x7fff.
// bfloat16 -> float is exact. Arithmetic rounds the float result once (correctly rounded).
#pragma once
#include <cstdint>
#include <cstring>

namespace emu {
inline unsigned short f32_to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);                        // round to nearest even on bit 16
    return (unsigned short)(u >> 16);
}
inline float bf16_bits_to_f32(unsigned short b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
}  // namespace emu

struct __nv_bfloat16_raw { unsigned short x; };
struct alignas(2) __nv_bfloat16 {
    static constexpr const char* emu_type_name = "__nv_bfloat16";
    unsigned short __x;
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
    __nv_bfloat16(float f) : __x(emu::f32_to_bf16_bits(f)) {}
    __nv_bfloat16& operator=(float f) { __x = emu::f32_to_bf16_bits(f); return *this; }
    operator float() const { return emu::bf16_bits_to_f32(__x); }
    operator __nv_bfloat16_raw() const { return {__x}; }
};
struct alignas(4) __nv_bfloat162 {
    static constexpr const char* emu_type_name = "__nv_bfloat162";
    __nv_bfloat16 x, y;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return emu::bf16_bits_to_f32(b.__x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16(__nv_bfloat16_raw{u}); }
inline short __bfloat16_as_short(__nv_bfloat16 b) { return (short)b.__x; }
inline __nv_bfloat16 __short_as_bfloat16(short s) { return __nv_bfloat16(__nv_bfloat16_raw{(unsigned short)s}); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__nv_bfloat16(a), __nv_bfloat16(b)}; }
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) { return {__nv_bfloat16(v.x), __nv_bfloat16(v.y)}; }
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return {__nv_bfloat16(a), __nv_bfloat16(a)}; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 v) { return v.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 v) { return v.y; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return {__bfloat162float(v.x), __bfloat162float(v.y)}; }

inline __nv_bfloat16 operator-(__nv_bfloat16 a) {
    return __nv_bfloat16(__nv_bfloat16_raw{(unsigned short)(a.__x ^ 0x8000u)});
}
#define EMU_BF16_OP(OP) \
    inline __nv_bfloat16 operator OP(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat16(float(a) OP float(b)); } \
    inline __nv_bfloat16& operator OP##=(__nv_bfloat16& a, __nv_bfloat16 b) { return a = a OP b; }
EMU_BF16_OP(+) EMU_BF16_OP(-) EMU_BF16_OP(*) EMU_BF16_OP(/)
#undef EMU_BF16_OP
