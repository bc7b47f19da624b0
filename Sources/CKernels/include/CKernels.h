#ifndef MUSE_CKERNELS_H
#define MUSE_CKERNELS_H

/* In-place-safe softmax of one row of n floats (x may equal y). Built for AVX-512, AVX2 and
   a baseline, chosen at load time for the running CPU. */
void muse_softmax_row(const float *x, float *y, long n);

/* y[i] = exp(x[i] - shift); returns the sum of y (in a fixed order). */
float muse_exp_shift_sum(const float *x, float *y, long n, float shift);

#endif
