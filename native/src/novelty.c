/*
 * The causal counterpart of host/onset.py: per region, subtract a running
 * baseline, keep what rises above it, and divide by a running mean of those
 * rises, so that loud and quiet music give the same range. Regions are then
 * weighted (bass most, because kick drums and bass notes mark beats in most
 * styles while hi-hats often sit between them) and clipped to [0, 1].
 */
#include "novelty.h"

#include <string.h>

#ifndef BASELINE_S
#define BASELINE_S 0.25f
#endif
#ifndef SCALE_S
#define SCALE_S 4.0f
#endif
#ifndef PEAK_OVER_MEAN
#define PEAK_OVER_MEAN 3.25f /* a clear onset rises about this many times above the mean rise */
#endif
#define EPS 1e-6f

static const float REGION_WEIGHT[GC_REGIONS] = {2.0f, 1.0f, 0.5f};

void gc_novelty_init(gc_novelty_t *nov, float frame_rate_hz)
{
    nov->mean_alpha = 1.0f / (BASELINE_S * frame_rate_hz + 1.0f);
    nov->scale_alpha = 1.0f / (SCALE_S * frame_rate_hz + 1.0f);
    gc_novelty_reset(nov);
}

void gc_novelty_reset(gc_novelty_t *nov)
{
    memset(nov->mean, 0, sizeof nov->mean);
    memset(nov->scale, 0, sizeof nov->scale);
    nov->frames = 0;
}

float gc_novelty_step(gc_novelty_t *nov, const float *flux, uint32_t n_regions, float *bass_out)
{
    uint32_t r;
    float sum = 0.0f, weights = 0.0f, scale_alpha;
    nov->frames++;
    /* Until SCALE_S has passed, the scale is the plain mean of everything seen so far. */
    scale_alpha = 1.0f / (float)nov->frames;
    if (scale_alpha < nov->scale_alpha)
        scale_alpha = nov->scale_alpha;
    for (r = 0; r < n_regions; r++) {
        float x = flux[r] > 0.0f ? flux[r] : 0.0f;
        float rise = x - nov->mean[r], s;
        rise = rise > 0.0f ? rise : 0.0f;
        nov->mean[r] += nov->mean_alpha * (x - nov->mean[r]);
        nov->scale[r] += scale_alpha * (rise - nov->scale[r]);
        s = rise / (PEAK_OVER_MEAN * nov->scale[r] + EPS);
        s = s < 1.0f ? s : 1.0f;
        if (r == 0 && bass_out)
            *bass_out = s;
        sum += (n_regions == 1 ? 1.0f : REGION_WEIGHT[r]) * s;
        weights += n_regions == 1 ? 1.0f : REGION_WEIGHT[r];
    }
    return weights > 0.0f ? sum / weights : 0.0f;
}
