// kernels/storage16.cuh — the 16-bit storage types' side of elman_common.cuh's work_of and
//   store_rounded (docs/architecture.md §1, precision modes): a bfloat16 or float16 value is read
//   exactly as a float, and a float result is rounded once, to nearest even, when it is stored
//   (__float2bfloat16_rn, __float2half_rn). Found by argument-dependent lookup from the cell
//   epilogues' templates.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

__device__ inline float work_of(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float work_of(__half v) { return __half2float(v); }
__device__ inline void store_rounded(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void store_rounded(__half* p, float v) { *p = __float2half_rn(v); }
