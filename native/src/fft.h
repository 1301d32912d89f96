/* Real-input FFT power spectrum (radix-2, float32), tables built once. */
#ifndef GC_FFT_H
#define GC_FFT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t n;          /* real input length, a power of two >= 16 */
    float *split_re;     /* n/2: cos(-2*pi*k/n), for the real-to-complex split */
    float *split_im;     /* n/2: sin(-2*pi*k/n) */
    float *stage_re;     /* < n/2: each later stage's twiddles, one stage after another */
    float *stage_im;
    uint16_t *bitrev;    /* n/2 entries: bit reversal for the half-size complex FFT */
    float *re, *im;      /* n/2 each: the half-size complex FFT in place, split layout */
} gc_fft_t;

/* Bytes that gc_fft_init needs for size n. */
size_t gc_fft_bytes(uint32_t n);
/* Lay the tables out in mem (gc_fft_bytes(n) bytes, 8-byte aligned) and fill them. */
void gc_fft_init(gc_fft_t *fft, uint32_t n, void *mem);
/* power[k] = |X[k]|^2 for k = 0 .. n/2 of the real input x * window (n samples each). */
void gc_fft_power(gc_fft_t *fft, const float *x, const float *window, float *power);

#endif
