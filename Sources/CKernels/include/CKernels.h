#ifndef MUSE_CKERNELS_H
#define MUSE_CKERNELS_H

/* In-place-safe softmax of one row of n floats (x may equal y). Built for AVX-512, AVX2 and
   a baseline, chosen at load time for the running CPU. */
void muse_softmax_row(const float *x, float *y, long n);

/* y[i] = exp(x[i] - shift); returns the sum of y (in a fixed order). */
float muse_exp_shift_sum(const float *x, float *y, long n, float shift);

/* Winograd F(2×2,3×3), stride 1, padding 1 (see kernels.c). Tiles are 2×2 output pixels;
   v, m and u hold 16 matrices (one per transform element) e_stride floats apart. */

/* Transforms the 4×4 input patches of tile row ty of one height×width channel plane:
   v[e·e_stride + tx] for tx < tiles_w. */
void muse_wino_input_row(const float *plane, long height, long width, long ty, long tiles_w, float *v, long e_stride);

/* Inverse transform of one row of tiles of one output channel, plus bias: writes output rows
   2ty, 2ty+1 (those below height) of the height×width plane. */
void muse_wino_output_row(
    const float *m, long e_stride, long tiles_w, float bias, float *plane, long height, long width, long ty);

/* count 3×3 kernels (w: [count][3][3]) to u[e·stride + k], k < count. */
void muse_wino_weights(const float *w, long count, long stride, float *u);

/* y[i] = silu(x[i]·scale + shift); y may equal x. */
void muse_affine_silu(const float *x, float *y, long n, float scale, float shift);

/* dh[i] = g[i]·silu'(x[i]·scale + shift): the gradient of muse_affine_silu's h; dh may equal g. */
void muse_affine_silu_grad(const float *x, const float *g, float *dh, long n, float scale, float shift);

/* y[i] = gelu(x[i]) (erf form); dx[i] = g[i]·gelu'(x[i]). y may equal x, dx may equal g. */
void muse_gelu(const float *x, float *y, long n);
void muse_gelu_grad(const float *x, const float *g, float *dx, long n);

/* The clone the functions above run on this CPU: "avx512f", "avx2" or "baseline". */
const char *muse_kernel_set(void);

#endif
