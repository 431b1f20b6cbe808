// Device helpers shared by every Prism kernel.
//
// Nothing is #included: NVRTC compiles the generated file with no include
// path, so fixed-width types and the fp16/bf16 conversions are spelled out
// here with bit operations and inline PTX (cvt.*), which is also exactly
// what cuda_bf16.h / cuda_fp16.h do underneath.  Nothing here names a
// generated constant: the generator emits only the constants a kernel's
// templates use (gen/emit.c), and every kernel starts with this file.  The
// helpers that depend on the config live in input.cuh (the input dtype)
// and bands.cuh (the rotary bands), which only the kernels using them get.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;
// The fixed-width names of the parameter blocks (gen/templates/KERNEL_params.h),
// which the host compiles with <stdint.h>.
typedef int int32_t;
typedef long long int64_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;

#ifndef INFINITY // math.h is not available without an include path
#define INFINITY __int_as_float(0x7f800000)
#endif

static __device__ __forceinline__ float bf16_to_float(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

static __device__ __forceinline__ float fp16_to_float(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

static __device__ __forceinline__ u16 float_to_bf16(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

static __device__ __forceinline__ u16 float_to_fp16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// 2^x, approximate (ex2.approx.ftz): 2^-inf = +0.
static __device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// 16 bytes, for 16-byte loads and stores.
struct __align__(16) u32x4 {
    u32 x, y, z, w;
};

// Shared-memory address of a generic pointer into shared memory.
static __device__ __forceinline__ u32 smem_u32(const void *p) {
    return (u32)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Token range [begin, end) of sequence b along the sequence axis.  Fixed
// lengths when cu_seqlens is null, else the varlen (ragged) layout of
// FlashAttention: sequence b holds tokens cu_seqlens[b] .. cu_seqlens[b+1].
static __device__ __forceinline__ void sequence_range(const int *cu_seqlens,
                                                      int fixed_len, int b,
                                                      int &begin, int &len) {
    if (cu_seqlens) {
        begin = cu_seqlens[b];
        len = cu_seqlens[b + 1] - begin;
    } else {
        begin = 0;
        len = fixed_len;
    }
}

// Programmatic dependent launch (PTX ISA, griddepcontrol; sm_90 and
// later, nothing below).  A kernel launched with the programmatic
// stream-serialization attribute (runtime/cuda/launch.c, launch_as) may start
// while the kernel before it on the stream still runs, as soon as every
// CTA of that one has called pdl_launch_dependents() or exited.  Its
// threads call pdl_wait() before they read anything the kernel before
// wrote: the wait returns once that grid has completed and its memory is
// visible.  In a plain launch the wait returns at once, and the trigger
// of a kernel nothing depends on does nothing.
static __device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
