// kernels/storage.cuh — storage and work values of the cells' epilogues (docs/architecture.md §1,
//   precision modes): float and double are their own work type; a 16-bit storage type
//   (storage16.cuh) works in float and is rounded once, on store. The epilogues' templates find
//   the 16-bit overloads at instantiation, by argument-dependent lookup.
// Types: float, double.
#pragma once

__device__ inline float work_of(float v) { return v; }
__device__ inline double work_of(double v) { return v; }
__device__ inline void store_rounded(float* p, float v) { *p = v; }
__device__ inline void store_rounded(double* p, double v) { *p = v; }
