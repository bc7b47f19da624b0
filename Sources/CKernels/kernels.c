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

// Cephes-style exp: x = k·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial; rel. error ~2e-7. The
// argument is clamped to [−87.3, 88.3] (callers decide what lies below); inlined into each
// clone so every caller's loop vectorises.
__attribute__((always_inline)) static inline float exp_clamped(float v) {
    float c = v < -87.3f ? -87.3f : (v > 88.3f ? 88.3f : v);
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
    return p * scale;
}

// y = exp(x − shift); below −87.3 (including −∞, masked scores) exactly 0.
CLONES static void exp_shift(const float *x, float *y, long n, float shift) {
    // x and y may be the same buffer (in-place softmax): each y[i] depends only on x[i], so
    // that is safe, but the vectoriser's overlap check would fall back to scalar code.
    #pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) {
        float v = x[i] - shift;
        y[i] = v < -87.3f ? 0.0f : exp_clamped(v);
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

// Winograd F(2×2,3×3) transforms for stride-1, padding-1 3×3 convolution (Lavin & Gray):
// each 2×2 output tile is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, summed over input channels, for its 4×4
// input patch d. The channel sum is 16 sgemms (one per transform element e = 4i + j), 2.25×
// fewer multiplies than im2col's. Only 0, ±1 and ½ appear in the matrices, so it is nearly
// as exact as direct summation. The transforms run a row of tiles at a time, vertical step
// on whole rows first (contiguous, so it vectorises to full width) then the horizontal step;
// the Swift compiler targets baseline SSE, these get AVX-512/AVX2 clones.

#define WINO_CHUNK 64  // tiles per pass through a row: row buffers stay in L1

static inline long min_l(long a, long b) { return a < b ? a : b; }
static inline long max_l(long a, long b) { return a > b ? a : b; }

// Input columns x0 … x0+count−1 of row iy, zero outside the image.
static void padded_row(const float *plane, long height, long width, long iy, long x0, long count, float *dst) {
    if (iy < 0 || iy >= height) {
        memset(dst, 0, sizeof(float) * count);
        return;
    }
    const float *src = plane + iy * width;
    long lo = min_l(count, max_l(0, -x0)), hi = max_l(lo, min_l(count, width - x0));
    memset(dst, 0, sizeof(float) * lo);
    memcpy(dst + lo, src + x0 + lo, sizeof(float) * (hi - lo));
    memset(dst + hi, 0, sizeof(float) * (count - hi));
}

CLONES void muse_wino_input_row(
    const float *plane, long height, long width, long ty, long tiles_w, float *v, long e_stride) {
    float rows[4][2 * WINO_CHUNK + 2], t[4][2 * WINO_CHUNK + 2];
    for (long tx0 = 0; tx0 < tiles_w; tx0 += WINO_CHUNK) {
        long n = min_l(WINO_CHUNK, tiles_w - tx0), cols = 2 * n + 2;
        for (int r = 0; r < 4; r++) padded_row(plane, height, width, 2 * ty - 1 + r, 2 * tx0 - 1, cols, rows[r]);
        for (long k = 0; k < cols; k++) {  // Bᵀ d
            t[0][k] = rows[0][k] - rows[2][k];
            t[1][k] = rows[1][k] + rows[2][k];
            t[2][k] = rows[2][k] - rows[1][k];
            t[3][k] = rows[1][k] - rows[3][k];
        }
        for (int i = 0; i < 4; i++) {  // (Bᵀ d) B
            float *o = v + 4 * i * e_stride + tx0;
            const float *s = t[i];
            for (long x = 0; x < n; x++) {
                float a = s[2 * x], b = s[2 * x + 1], c = s[2 * x + 2], d = s[2 * x + 3];
                o[x] = a - c;
                o[e_stride + x] = b + c;
                o[2 * e_stride + x] = c - b;
                o[3 * e_stride + x] = b - d;
            }
        }
    }
}

CLONES void muse_wino_output_row(
    const float *m, long e_stride, long tiles_w, float bias, float *plane, long height, long width, long ty) {
    float s[2][4][WINO_CHUNK], row[2 * WINO_CHUNK];
    for (long tx0 = 0; tx0 < tiles_w; tx0 += WINO_CHUNK) {
        long n = min_l(WINO_CHUNK, tiles_w - tx0);
        for (int j = 0; j < 4; j++) {  // Aᵀ M
            const float *m0 = m + j * e_stride + tx0, *m1 = m0 + 4 * e_stride;
            const float *m2 = m1 + 4 * e_stride, *m3 = m2 + 4 * e_stride;
            for (long x = 0; x < n; x++) {
                s[0][j][x] = m0[x] + m1[x] + m2[x];
                s[1][j][x] = m1[x] - m2[x] - m3[x];
            }
        }
        for (int r = 0; r < 2 && 2 * ty + r < height; r++) {  // (Aᵀ M) A, odd edges cut off
            for (long x = 0; x < n; x++) {
                row[2 * x] = s[r][0][x] + s[r][1][x] + s[r][2][x] + bias;
                row[2 * x + 1] = s[r][1][x] - s[r][2][x] - s[r][3][x] + bias;
            }
            memcpy(plane + (2 * ty + r) * width + 2 * tx0, row, sizeof(float) * min_l(2 * n, width - 2 * tx0));
        }
    }
}

// Kernels are transformed 64 at a time into a local block, then each element's row is
// copied out whole: writing the 16 outputs of each kernel straight to u touches 16 addresses
// a multiple of 4 KB apart, which share one L1 set and evict each other (measured 8× slower).
CLONES void muse_wino_weights(const float *w, long count, long stride, float *u) {
    float block[16][WINO_CHUNK];
    for (long k0 = 0; k0 < count; k0 += WINO_CHUNK) {
        long n = min_l(WINO_CHUNK, count - k0);
        for (long k = 0; k < n; k++) {
            const float *g = w + 9 * (k0 + k);
            float t[4][3];  // G g
            for (int c = 0; c < 3; c++) {
                t[0][c] = g[c];
                t[1][c] = 0.5f * (g[c] + g[3 + c] + g[6 + c]);
                t[2][c] = 0.5f * (g[c] - g[3 + c] + g[6 + c]);
                t[3][c] = g[6 + c];
            }
            for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
                block[4 * i][k] = t[i][0];
                block[4 * i + 1][k] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                block[4 * i + 2][k] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                block[4 * i + 3][k] = t[i][2];
            }
        }
        for (int e = 0; e < 16; e++) memcpy(u + e * stride + k0, block[e], sizeof(float) * n);
    }
}

// SiLU after a normalisation's per-channel affine, h = x·scale + shift (scale 1, shift 0: SiLU
// alone), and its derivative, with exp(−h) from exp_clamped; libm's expf, one element at a
// time on one core, was most of SiLU's cost (the VAE decoder runs ~400 M of them at 512²).
CLONES void muse_affine_silu(const float *x, float *y, long n, float scale, float shift) {
    #pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) {
        float h = x[i] * scale + shift;
        // Below −87 SiLU is below 1e-36 in magnitude: 0, as the clamped exp would not give it.
        y[i] = h < -87.0f ? 0.0f : h / (1.0f + exp_clamped(-h));
    }
}

CLONES void muse_affine_silu_grad(const float *x, const float *g, float *dh, long n, float scale, float shift) {
    #pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) {
        float h = x[i] * scale + shift;
        float s = h < -87.0f ? 0.0f : 1.0f / (1.0f + exp_clamped(-h));
        dh[i] = g[i] * s * (1.0f + h * (1.0f - s));
    }
}

// Exact (erf) GELU, as torch's default, and its derivative: the GEGLU gate of every UNet
// transformer. erf is Eigen's rational approximation on [−4, 4] (float error ~1e-7; beyond
// ±4 erf is ±1 in float), vectorisable where libm's erff is one call per element.
__attribute__((always_inline)) static inline float erf_rational(float x) {
    float c = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    float x2 = c * c;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return c * p / q;
}

CLONES void muse_gelu(const float *x, float *y, long n) {
    #pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erf_rational(x[i] * 0.70710678118654752f));
}

CLONES void muse_gelu_grad(const float *x, const float *g, float *dx, long n) {
    #pragma clang loop vectorize(assume_safety)
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erf_rational(v * 0.70710678118654752f));
        dx[i] = g[i] * (cdf + v * 0.3989422804014327f * exp_clamped(-0.5f * v * v));
    }
}

// Which clone target_clones dispatches to on this CPU (same tests as its resolver).
const char *muse_kernel_set(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "baseline";
}
