/*
 * SuperFlux (Böck and Widmer, 2013) on the log-magnitude spectrum: each bin
 * is compared with the maximum of itself and its two neighbours in the
 * previous frame, which ignores vibrato and slow glides, and only rises count.
 * The flux is kept per region (bass, mid, high) because kick and bass onsets
 * mark beats far more often than hi-hats do.
 *
 * Bins, not bands: on the development sets, flux over individual bins of a
 * 93 ms window found beats clearly better than the same flux over 6..24 bands
 * per octave (docs/native.md has the figures). A polynomial log keeps the
 * per-bin cost at a few instructions.
 */
#include "onset.h"

#include <math.h>
#include <string.h>

#define FMIN_HZ 30.0f
#define FMAX_HZ 16000.0f
#define BASS_MAX_HZ 250.0f
#define MID_MAX_HZ 2000.0f
/* Upper band edges: two bass bands, three mid, two high (the last ends at fmax). */
static const float BAND_MAX_HZ[GC_BANDS - 1] = {120.0f, BASS_MAX_HZ, 500.0f, 1000.0f, MID_MAX_HZ,
                                                3500.0f};
static const uint32_t REGION_LAST_BAND[GC_REGIONS] = {1, 4, 6};
#ifndef LOG_GAIN
#define LOG_GAIN 1000.0f /* log(1 + gain * magnitude): compresses like a dB scale above the noise */
#endif

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static void bin_range(uint32_t sample_rate_hz, uint32_t frame_size, uint32_t *first,
                      uint32_t band_end[GC_BANDS], uint32_t end[GC_REGIONS])
{
    uint32_t b, r;
    float bin_hz = (float)sample_rate_hz / (float)frame_size;
    float fmax = 0.95f * 0.5f * (float)sample_rate_hz;
    uint32_t n_bins = frame_size / 2 + 1;
    if (fmax > FMAX_HZ)
        fmax = FMAX_HZ;
    *first = (uint32_t)ceilf(FMIN_HZ / bin_hz);
    band_end[GC_BANDS - 1] = (uint32_t)ceilf(fmax / bin_hz);
    if (band_end[GC_BANDS - 1] > n_bins)
        band_end[GC_BANDS - 1] = n_bins;
    for (b = GC_BANDS - 1; b-- > 0;) {
        band_end[b] = (uint32_t)ceilf(BAND_MAX_HZ[b] / bin_hz);
        if (band_end[b] > band_end[b + 1])
            band_end[b] = band_end[b + 1];
    }
    if (*first > band_end[0])
        *first = band_end[0];
    for (r = 0; r < GC_REGIONS; r++)
        end[r] = band_end[REGION_LAST_BAND[r]];
}

size_t gc_onset_bytes(uint32_t sample_rate_hz, uint32_t frame_size)
{
    (void)sample_rate_hz;
    return align8(frame_size * sizeof(float)) * 2            /* frame, window */
           + align8((frame_size / 2 + 1) * sizeof(float))     /* power */
           + 2 * align8((frame_size / 2 + 3) * sizeof(float)) /* log_mag, prev_log (+ guards) */
           + align8(gc_fft_bytes(frame_size));
}

void gc_onset_init(gc_onset_t *onset, uint32_t sample_rate_hz, uint32_t frame_size, void *mem)
{
    uint8_t *p = (uint8_t *)mem;
    uint32_t k;
    onset->frame_size = frame_size;
    bin_range(sample_rate_hz, frame_size, &onset->first_bin, onset->band_end, onset->end_bin);
    onset->frame = (float *)p; p += align8(frame_size * sizeof(float));
    onset->window = (float *)p; p += align8(frame_size * sizeof(float));
    onset->power = (float *)p; p += align8((frame_size / 2 + 1) * sizeof(float));
    onset->log_mag = (float *)p; p += align8((frame_size / 2 + 3) * sizeof(float));
    onset->prev_log = (float *)p; p += align8((frame_size / 2 + 3) * sizeof(float));
    gc_fft_init(&onset->fft, frame_size, p);
    for (k = 0; k < frame_size; k++)
        onset->window[k] = (float)(0.5 - 0.5 * cos(2.0 * 3.14159265358979323846 * ((double)k + 0.5)
                                                    / (double)frame_size));
    /* A Hann window's coherent gain is n/2: scale magnitudes to a window-independent level. */
    onset->power_scale = 4.0f / ((float)frame_size * (float)frame_size);
    gc_onset_reset(onset);
}

/* Natural log for x >= 1 to about 1e-4: exponent bits plus a polynomial in the
   mantissa. Branch-free, so the loop over bins vectorises. */
static float log_ge1(float x)
{
    union {
        float f;
        uint32_t i;
    } u;
    float e, m;
    u.f = x;
    e = (float)((int32_t)(u.i >> 23) - 127);
    u.i = (u.i & 0x007FFFFFu) | 0x3F800000u;
    m = u.f;
    return 0.69314718f * (e - 1.7417939f +
                          (2.8212026f + (-1.4699568f + (0.44717955f - 0.056570851f * m) * m) * m) * m);
}

/* Sum of x[0 .. n) in four running sums, so that it vectorises without reordering
   float additions. */
static float sum4(const float *x, int32_t n)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int32_t i;
    for (i = 0; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++)
        s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

void gc_onset_reset(gc_onset_t *onset)
{
    uint32_t k;
    /* The previous frame starts as silence, at the level the polynomial log gives silence. */
    float silent = log_ge1(1.0f);
    memset(onset->frame, 0, onset->frame_size * sizeof(float));
    for (k = 0; k < onset->frame_size / 2 + 3; k++)
        onset->prev_log[k] = silent;
    onset->pushed_energy = 0.0f;
    onset->pushed = 0;
}

void gc_onset_push(gc_onset_t *onset, const float *x, uint32_t n)
{
    uint32_t size = onset->frame_size, k;
    if (n > size) {
        x += n - size;
        n = size;
    }
    memmove(onset->frame, onset->frame + n, (size - n) * sizeof(float));
    memcpy(onset->frame + (size - n), x, n * sizeof(float));
    for (k = 0; k < n; k++)
        onset->pushed_energy += x[k] * x[k];
    onset->pushed += n;
}

void gc_onset_analyse(gc_onset_t *onset, gc_onset_frame_t *out)
{
    uint32_t k, b, r, lo = onset->first_bin;
    const float scale = onset->power_scale;
    float *cur = onset->log_mag + 1, *prev = onset->prev_log + 1; /* index -1 is a guard */
    out->rms = onset->pushed ? sqrtf(onset->pushed_energy / (float)onset->pushed) : 0.0f;
    onset->pushed_energy = 0.0f;
    onset->pushed = 0;
    gc_fft_power(&onset->fft, onset->frame, onset->window, onset->power);
    for (k = lo; k < onset->end_bin[2]; k++)
        cur[k] = log_ge1(1.0f + LOG_GAIN * sqrtf(onset->power[k] * scale));
    /* Each bin's rise over the maximum of its neighbourhood in the previous frame,
       into `power` (no longer needed): one branch-free loop that vectorises. */
    {
        const float *restrict pv = prev + lo, *restrict cv = cur + lo;
        float *restrict rise = onset->power + lo;
        int32_t i, n = (int32_t)(onset->end_bin[2] - lo);
        for (i = 0; i < n; i++) {
            float ref = pv[i - 1] > pv[i] ? pv[i - 1] : pv[i];
            float d;
            ref = pv[i + 1] > ref ? pv[i + 1] : ref;
            d = cv[i] - ref;
            rise[i] = d > 0.0f ? d : 0.0f;
        }
    }
    for (b = 0; b < GC_BANDS; b++) {
        int32_t n = (int32_t)(onset->band_end[b] - lo);
        out->band_flux[b] = sum4(onset->power + lo, n);
        out->band_level[b] = n > 0 ? sum4(cur + lo, n) / (float)n : 0.0f;
        lo = onset->band_end[b];
    }
    for (r = 0, b = 0; r < GC_REGIONS; r++) {
        float sum = 0.0f;
        for (; b <= REGION_LAST_BAND[r]; b++)
            sum += out->band_flux[b];
        out->flux[r] = sum;
    }
    memcpy(prev + onset->first_bin, cur + onset->first_bin,
           (onset->end_bin[2] - onset->first_bin) * sizeof(float));
}
