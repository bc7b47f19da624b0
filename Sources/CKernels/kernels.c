// Softmax and exp, vectorised by the C compiler for the CPU the engine runs on: Swift
// compiles SIMD types for baseline x86-64 (4-wide SSE), which made exp the largest cost in
// attention. Each function is cloned for AVX-512, AVX2 and the baseline and dispatched at
// load time (target_clones). Reductions keep 16 partial sums in a fixed order, so a given
// clone always gives the same bits.
#include "CKernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define LANES 16

// Cephes-style exp: x = k·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial; rel. error ~2e-7.
// Below −87.3 (including −∞, masked scores) the result is exactly 0.
CLONES static void exp_shift(const float *x, float *y, long n, float shift) {
    // x and y may be the same buffer (in-place softmax): each y[i] depends only on x[i], so
    // that is safe, but the vectoriser's overlap check would fall back to scalar code.
    #pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) {
        float v = x[i] - shift;
        float c = v < -87.3f ? -87.3f : (v > 88.3f ? 88.3f : v);
        // Adding 1.5·2^23 rounds to an integer held in the low mantissa bits.
        float t = c * 1.44269504088896341f + 12582912.0f;
        float k = t - 12582912.0f;
        float r = c - k * 0.693359375f + k * 2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        int32_t ti;
        memcpy(&ti, &t, sizeof ti);
        int32_t bits = ((ti - 0x4B400000) + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        y[i] = v < -87.3f ? 0.0f : p * scale;
    }
}

CLONES static float sum(const float *y, long n) {
    float lanes[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) lanes[j] += y[i + j];
    float total = 0;
    for (int j = 0; j < LANES; j++) total += lanes[j];
    for (; i < n; i++) total += y[i];
    return total;
}

CLONES static float max_of(const float *x, long n) {
    float lanes[LANES];
    for (int j = 0; j < LANES; j++) lanes[j] = -INFINITY;
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
    float m = -INFINITY;
    for (int j = 0; j < LANES; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

CLONES static void scale_by(float *y, long n, float s) {
    for (long i = 0; i < n; i++) y[i] *= s;
}

float muse_exp_shift_sum(const float *x, float *y, long n, float shift) {
    exp_shift(x, y, n, shift);
    return sum(y, n);
}

void muse_softmax_row(const float *x, float *y, long n) {
    float m = max_of(x, n);
    scale_by(y, n, 1.0f / muse_exp_shift_sum(x, y, n, m));
}
