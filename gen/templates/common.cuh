// Device helpers shared by every Prism kernel.
//
// Nothing is #included: NVRTC compiles the generated file with no include
// path, so fixed-width types and the fp16/bf16 conversions are spelled out
// here with bit operations and inline PTX (cvt.*), which is also exactly
// what cuda_bf16.h / cuda_fp16.h do underneath.  The constants used below
// (HEAD_DIM, INPUT_BF16, ...) are emitted by the generator above this text.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

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

// One input element (the config's dtype) to fp32.
static __device__ __forceinline__ float input_to_float(u16 h) {
    if constexpr (INPUT_BF16)
        return bf16_to_float(h);
    else
        return fp16_to_float(h);
}

// Two packed input elements (low half first in memory) to fp32.
static __device__ __forceinline__ void input2_to_float(u32 w, float &lo,
                                                       float &hi) {
    lo = input_to_float((u16)(w & 0xffffu));
    hi = input_to_float((u16)(w >> 16));
}

// Two fp32 -> packed input dtype (round to nearest even); lo lands in the
// low half (lower address, lower k / n index), as MMA fragments and memory
// order want.
static __device__ __forceinline__ u32 float2_to_input2(float lo, float hi) {
    u32 r;
    if constexpr (INPUT_BF16)
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    else
        asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
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

// Rotary pair of head dim d (docs/method.md §3): rotate_half pairs (i, i+D/2),
// interleaved pairs (2i, 2i+1).  Small pair index = high frequency.
// constexpr: the estimator decides band membership at compile time.
static constexpr int rotary_pair(int d) {
    return ROPE_INTERLEAVED ? d / 2 : d % (HEAD_DIM / 2);
}

static constexpr bool in_high_band(int d) { return rotary_pair(d) < HIGH_PAIR_END; }

static constexpr bool in_low_band(int d) { return rotary_pair(d) >= LOW_PAIR_BEGIN; }

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

// The two band scales of docs/method.md §4 for a query head of a sequence of
// nq query and nk key blocks, from the summed squared pooled values
// (sq of the head, sk of its KV head: all dims, high band, low band;
// gen/templates/pool_stats.cu adds them up), or the uncalibrated
// sqrt(d) * temp.  A band without any energy would divide by zero; the
// reference floors the scale the same way, which makes that band's logits
// all 0.
static __device__ __forceinline__ float band_rms(float sum_sq, int blocks, int dims) {
    return sqrtf(sum_sq / ((float)blocks * (float)dims));
}
static __device__ __forceinline__ float2 band_scales(const float (&sq)[3],
                                                     const float (&sk)[3], int nq,
                                                     int nk) {
    float scale_high = sqrtf((float)HIGH_DIM) * TEMP_HIGH;
    float scale_low = sqrtf((float)LOW_DIM) * TEMP_LOW;
    if (CALIBRATE && nq > 0 && nk > 0) {
        const float rq = fmaxf(band_rms(sq[0], nq, HEAD_DIM), 1e-6f);
        const float rk = fmaxf(band_rms(sk[0], nk, HEAD_DIM), 1e-6f);
        const float th = sqrtf((float)HIGH_DIM / HEAD_DIM) *
                         (band_rms(sq[1], nq, HIGH_DIM) / rq) *
                         (band_rms(sk[1], nk, HIGH_DIM) / rk);
        const float tl = sqrtf((float)LOW_DIM / HEAD_DIM) *
                         (band_rms(sq[2], nq, LOW_DIM) / rq) *
                         (band_rms(sk[2], nk, LOW_DIM) / rk);
        scale_high = sqrtf((float)HIGH_DIM) * th;
        scale_low = sqrtf((float)LOW_DIM) * tl;
    }
    return make_float2(fmaxf(scale_high, 1e-12f), fmaxf(scale_low, 1e-12f));
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
