// Qualifiers for code that runs both in CUDA kernels and in host-side tests:
// the tile and index arithmetic is written once and proven on the CPU.
#pragma once

#if defined(__CUDACC__)
#define DLRT_HOST_DEVICE __host__ __device__
// Helpers that take register arrays by reference must be inlined, or the
// arrays would be spilled to local memory.
#define DLRT_FORCE_INLINE __forceinline__
#else
#define DLRT_HOST_DEVICE
#define DLRT_FORCE_INLINE inline
#endif

// Only the device pass: host compilers warn about the unknown pragma.
#if defined(__CUDA_ARCH__)
#define DLRT_UNROLL _Pragma("unroll")
#else
#define DLRT_UNROLL
#endif
