/* Onset flux -> beat observation strength in [0, 1], adapting causally to level. */
#ifndef GC_NOVELTY_H
#define GC_NOVELTY_H

#include <stdint.h>

#include "onset.h"

typedef struct {
    float mean[GC_REGIONS];   /* running mean of the flux (the local baseline) */
    float scale[GC_REGIONS];  /* running mean of what rises above the baseline */
    float mean_alpha, scale_alpha;
    uint32_t frames;
} gc_novelty_t;

void gc_novelty_init(gc_novelty_t *nov, float frame_rate_hz);
void gc_novelty_reset(gc_novelty_t *nov);
/* Combined strength of n_regions flux values (1 for a device's own onset function,
   GC_REGIONS for audio); bass_out receives the bass region's strength (may be NULL). */
float gc_novelty_step(gc_novelty_t *nov, const float *flux, uint32_t n_regions, float *bass_out);

#endif
