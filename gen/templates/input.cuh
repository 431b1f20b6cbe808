// The config's input dtype (bf16 or fp16): loads and stores of Q, K, V
// and O elements, for the kernels that touch them (pool_stats, attention;
// the estimator works on fp32 pooled values and does not get this file).
// Uses INPUT_BF16; the conversions themselves are in common.cuh.

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
