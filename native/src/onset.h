/* Onset function: SuperFlux on the log-magnitude spectrum, in three regions. */
#ifndef GC_ONSET_H
#define GC_ONSET_H

#include <stddef.h>
#include <stdint.h>

#include "fft.h"

#define GC_REGIONS 3 /* bass, mid, high */
#define GC_BANDS 7   /* finer split of the same bins for the position network; regions are unions of bands */

typedef struct {
    uint32_t frame_size;    /* samples at the analysis rate */
    uint32_t first_bin;     /* bins first_bin .. end_bin[2] - 1 are analysed */
    uint32_t end_bin[GC_REGIONS]; /* region r ends before end_bin[r] */
    uint32_t band_end[GC_BANDS];  /* band b ends before band_end[b] */
    float *frame;           /* the latest frame_size samples, oldest first */
    float *window;          /* Hann window */
    float *power;           /* frame_size/2 + 1 bins */
    float *log_mag;         /* this frame's log magnitudes (analysed bins) */
    float *prev_log;        /* the previous frame's, with one guard bin each side */
    float power_scale;      /* makes magnitudes independent of frame size */
    float pushed_energy;    /* sum of squares pushed since the last analysis */
    uint32_t pushed;
    gc_fft_t fft;
} gc_onset_t;

typedef struct {
    float flux[GC_REGIONS]; /* positive log-spectral change per region */
    float band_flux[GC_BANDS]; /* the same per band */
    float band_level[GC_BANDS]; /* mean log magnitude per band */
    float rms;              /* RMS of the samples pushed since the last analysis */
} gc_onset_frame_t;

/* Sample rate and frame size are those of the analysis (decimated) signal. */
size_t gc_onset_bytes(uint32_t sample_rate_hz, uint32_t frame_size);
void gc_onset_init(gc_onset_t *onset, uint32_t sample_rate_hz, uint32_t frame_size, void *mem);
void gc_onset_reset(gc_onset_t *onset);
/* Append n new samples (finite) to the frame. */
void gc_onset_push(gc_onset_t *onset, const float *x, uint32_t n);
/* Analyse the frame ending at the latest sample pushed. */
void gc_onset_analyse(gc_onset_t *onset, gc_onset_frame_t *out);

#endif
