/*
 * Power spectrum of a real frame through one complex FFT of half the size:
 * the even samples go into the real parts and the odd ones into the imaginary
 * parts, and a split step separates the two spectra afterwards. This FFT is
 * the largest cost of the tracker, so: the window is applied while loading in
 * bit-reversed order (one pass), the first two stages need no multiplications
 * and are done together, and real and imaginary parts live in separate arrays
 * so that the later stages' butterflies are plain element-wise loops, which
 * compilers vectorise (SSE/NEON; the ESP32-S3's PIE where supported).
 */
#include "fft.h"

#include <math.h>

#define PI 3.14159265358979323846

size_t gc_fft_bytes(uint32_t n)
{
    return (size_t)n * sizeof(float)          /* split twiddles: n/2 re + n/2 im */
           + (size_t)n * sizeof(float)        /* stage twiddles: < n/2 re + im */
           + (size_t)n * sizeof(float)        /* re, im */
           + (size_t)(n / 2) * sizeof(uint16_t);
}

void gc_fft_init(gc_fft_t *fft, uint32_t n, void *mem)
{
    uint32_t half = n / 2, bits = 0, k, len, at = 0;
    fft->n = n;
    fft->split_re = (float *)mem;
    fft->split_im = fft->split_re + half;
    fft->stage_re = fft->split_im + half;
    fft->stage_im = fft->stage_re + half;
    fft->re = fft->stage_im + half;
    fft->im = fft->re + half;
    fft->bitrev = (uint16_t *)(fft->im + half);
    /* Tables are computed in double once, so that they are exact to float precision. */
    for (k = 0; k < half; k++) {
        double angle = -2.0 * PI * (double)k / (double)n;
        fft->split_re[k] = (float)cos(angle);
        fft->split_im[k] = (float)sin(angle);
    }
    for (len = 8; len <= half; len <<= 1)
        for (k = 0; k < len / 2; k++, at++) {
            double angle = -2.0 * PI * (double)k / (double)len;
            fft->stage_re[at] = (float)cos(angle);
            fft->stage_im[at] = (float)sin(angle);
        }
    while ((1u << bits) < half)
        bits++;
    for (k = 0; k < half; k++) {
        uint32_t r = 0, b;
        for (b = 0; b < bits; b++)
            r |= ((k >> b) & 1u) << (bits - 1 - b);
        fft->bitrev[k] = (uint16_t)r;
    }
}

/* Load windowed input in bit-reversed order, then the stages of size 2 and 4 at once. */
static void load_and_first_stages(gc_fft_t *fft, const float *x, const float *window)
{
    uint32_t m = fft->n / 2, i;
    float *re = fft->re, *im = fft->im;
    for (i = 0; i < m; i++) {
        uint32_t r = fft->bitrev[i];
        re[i] = x[2 * r] * window[2 * r];
        im[i] = x[2 * r + 1] * window[2 * r + 1];
    }
    for (i = 0; i < m; i += 4) {
        float r0 = re[i] + re[i + 1], i0 = im[i] + im[i + 1];
        float r1 = re[i] - re[i + 1], i1 = im[i] - im[i + 1];
        float r2 = re[i + 2] + re[i + 3], i2 = im[i + 2] + im[i + 3];
        float r3 = re[i + 2] - re[i + 3], i3 = im[i + 2] - im[i + 3];
        /* size 4: twiddles 1 and -i */
        re[i] = r0 + r2; im[i] = i0 + i2;
        re[i + 2] = r0 - r2; im[i + 2] = i0 - i2;
        re[i + 1] = r1 + i3; im[i + 1] = i1 - r3;
        re[i + 3] = r1 - i3; im[i + 3] = i1 + r3;
    }
}

static void butterflies(float *restrict ar, float *restrict ai, float *restrict br,
                        float *restrict bi, const float *restrict wr, const float *restrict wi,
                        uint32_t count)
{
    uint32_t j;
    for (j = 0; j < count; j++) {
        float tr = br[j] * wr[j] - bi[j] * wi[j];
        float ti = br[j] * wi[j] + bi[j] * wr[j];
        br[j] = ar[j] - tr;
        bi[j] = ai[j] - ti;
        ar[j] += tr;
        ai[j] += ti;
    }
}

/* Stages of size 8 and 16 with the group size a constant, so that each group's
   butterflies compile to straight vector code instead of a short loop per group. */
#define FIXED_STAGE(name, half_len)                                                        \
    static void name(float *re, float *im, const float *wr, const float *wi, uint32_t m)  \
    {                                                                                      \
        uint32_t i;                                                                        \
        for (i = 0; i < m; i += 2 * (half_len))                                            \
            butterflies(re + i, im + i, re + i + (half_len), im + i + (half_len), wr, wi,  \
                        (half_len));                                                       \
    }
FIXED_STAGE(stage_8, 4u)
FIXED_STAGE(stage_16, 8u)

static void later_stages(gc_fft_t *fft)
{
    uint32_t m = fft->n / 2, len = 8, i;
    const float *wr = fft->stage_re, *wi = fft->stage_im;
    if (m >= 16) {
        stage_8(fft->re, fft->im, wr, wi, m);
        stage_16(fft->re, fft->im, wr + 4, wi + 4, m);
        wr += 12;
        wi += 12;
        len = 32;
    }
    for (; len <= m; len <<= 1) {
        uint32_t half_len = len / 2;
        for (i = 0; i < m; i += len)
            butterflies(fft->re + i, fft->im + i, fft->re + i + half_len, fft->im + i + half_len,
                        wr, wi, half_len);
        wr += half_len;
        wi += half_len;
    }
}

void gc_fft_power(gc_fft_t *fft, const float *x, const float *window, float *power)
{
    uint32_t m = fft->n / 2, k;
    const float *re = fft->re, *im = fft->im;
    load_and_first_stages(fft, x, window);
    later_stages(fft);
    /* Split: X[k] = E[k] + W^k O[k], E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / 2i. */
    power[0] = (re[0] + im[0]) * (re[0] + im[0]);
    power[m] = (re[0] - im[0]) * (re[0] - im[0]);
    for (k = 1; k < m; k++) {
        float ar = re[k], ai = im[k], br = re[m - k], bi = -im[m - k];
        float er = ar + br, ei = ai + bi;    /* 2 E */
        float or_ = ai - bi, oi = br - ar;   /* 2 O = (Z - conj Z') / i */
        float wr = fft->split_re[k], wi = fft->split_im[k];
        float xr = er + or_ * wr - oi * wi, xi = ei + or_ * wi + oi * wr;
        power[k] = 0.25f * (xr * xr + xi * xi);
    }
}
