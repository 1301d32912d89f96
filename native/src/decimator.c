/*
 * Beat tracking needs nothing above about 5 kHz: kick, snare and the attacks of
 * pitched notes all show below it, and hi-hats still leak energy there. So
 * the tracker analyses audio at 11-16 kHz whatever comes in, which makes the
 * per-hop FFT four times smaller at 44.1 kHz for the same 93 ms window. The
 * low-pass is a windowed sinc (Blackman), 8 taps per unit of decimation,
 * evaluated only for the samples that are kept.
 */
#include "decimator.h"

#include <math.h>
#include <string.h>

#ifndef ANALYSIS_RATE_HZ
#define ANALYSIS_RATE_HZ 11025u
#endif
#ifndef TAPS_PER_FACTOR
#define TAPS_PER_FACTOR 5u
#endif
#define CUTOFF 0.9f /* of the new Nyquist frequency */
#define PI 3.14159265358979323846

uint32_t gc_decimator_factor(uint32_t sample_rate_hz)
{
    uint32_t f = 1;
    while (f < 8 && sample_rate_hz / (f * 2) >= ANALYSIS_RATE_HZ)
        f *= 2;
    return f;
}

static uint32_t taps_for(uint32_t factor) { return factor == 1 ? 1 : TAPS_PER_FACTOR * factor + 1; }

size_t gc_decimator_bytes(uint32_t factor, uint32_t max_block)
{
    uint32_t n = taps_for(factor);
    uint32_t padded = (n + 3u) & ~3u;
    /* taps (padded), then history + block + the padding the last window reads past */
    return (padded + (n - 1) + max_block + (padded - n)) * sizeof(float);
}

void gc_decimator_init(gc_decimator_t *dec, uint32_t factor, uint32_t max_block, void *mem)
{
    uint32_t n = taps_for(factor), k;
    double sum = 0.0, fc = (double)CUTOFF * 0.5 / (double)factor; /* cycles per input sample */
    double h[TAPS_PER_FACTOR * 8 + 1];
    dec->factor = factor;
    dec->n_taps = n;
    dec->max_block = max_block;
    dec->taps = (float *)mem;
    dec->buf = dec->taps + ((n + 3u) & ~3u);
    for (k = 0; k < n; k++) {
        double x = (double)k - (double)(n - 1) / 2.0;
        double sinc = x == 0.0 ? 2.0 * fc : sin(2.0 * PI * fc * x) / (PI * x);
        double win = n == 1 ? 1.0
                            : 0.42 - 0.5 * cos(2.0 * PI * k / (n - 1)) + 0.08 * cos(4.0 * PI * k / (n - 1));
        h[k] = sinc * win;
        sum += h[k];
    }
    for (k = 0; k < n; k++) /* unit gain at DC */
        dec->taps[k] = (float)(h[k] / sum);
    for (; k < ((n + 3u) & ~3u); k++)
        dec->taps[k] = 0.0f;
    gc_decimator_reset(dec);
}

void gc_decimator_reset(gc_decimator_t *dec)
{
    uint32_t padded = (dec->n_taps + 3u) & ~3u;
    /* history and the padding area: read (times a zero tap) but never written by a block */
    memset(dec->buf, 0, (dec->n_taps - 1 + dec->max_block + padded - dec->n_taps) * sizeof(float));
    dec->phase = dec->factor - 1;
}

uint32_t gc_decimator_process(gc_decimator_t *dec, const float *in, uint32_t n, float *out)
{
    uint32_t i, k, written = 0, taps = dec->n_taps, hist = taps - 1, padded = (taps + 3u) & ~3u;
    if (dec->factor == 1) {
        memcpy(out, in, n * sizeof(float));
        return n;
    }
    /* buf = [last taps-1 samples | the new block]: every output window is contiguous. */
    memcpy(dec->buf + hist, in, n * sizeof(float));
    for (i = dec->phase; i < n; i += dec->factor) {
        const float *w = dec->buf + i; /* window w[0 .. taps) ends at input sample i */
        /* Four running sums, one per lane: compilers turn this into one vector
           multiply-add per step without reordering float additions. The taps are
           zero-padded to a multiple of four. */
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        const float *h = dec->taps;
        for (k = 0; k < padded; k += 4) {
            a0 += w[k] * h[k];
            a1 += w[k + 1] * h[k + 1];
            a2 += w[k + 2] * h[k + 2];
            a3 += w[k + 3] * h[k + 3];
        }
        out[written++] = (a0 + a1) + (a2 + a3);
    }
    dec->phase = i - n;
    memmove(dec->buf, dec->buf + n, hist * sizeof(float));
    return written;
}

float gc_decimator_delay(const gc_decimator_t *dec)
{
    return 0.5f * (float)(dec->n_taps - 1);
}
