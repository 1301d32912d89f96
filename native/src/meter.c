/*
 * A cheap causal guess, not the offline analyzer's downbeat inference: kick
 * drums and bass notes land on the downbeat more than elsewhere, so accents are
 * accumulated per position of a 3- and a 4-beat bar with a slow decay, and the
 * meter whose strongest position stands out more wins. No guess is given until
 * two bars have been heard.
 */
#include "meter.h"

#include <string.h>

#define DECAY 0.85f   /* per beat: remembers the last few bars */
#define MIN_BEATS 8u

void gc_meter_reset(gc_meter_t *meter)
{
    memset(meter, 0, sizeof *meter);
}

static uint32_t strongest(const float *acc, uint32_t n, float *contrast)
{
    uint32_t i, best = 0;
    float sum = 0.0f;
    for (i = 0; i < n; i++) {
        sum += acc[i];
        if (acc[i] > acc[best])
            best = i;
    }
    *contrast = sum > 0.0f ? acc[best] / (sum / (float)n) : 0.0f;
    return best;
}

int32_t gc_meter_beat(gc_meter_t *meter, float bass_accent)
{
    uint32_t i, b3, b4;
    float c3, c4;
    for (i = 0; i < 3; i++)
        meter->accent3[i] *= DECAY;
    for (i = 0; i < 4; i++)
        meter->accent4[i] *= DECAY;
    meter->accent3[meter->beats % 3] += bass_accent;
    meter->accent4[meter->beats % 4] += bass_accent;
    meter->beats++;
    if (meter->beats < MIN_BEATS)
        return 0;
    b3 = strongest(meter->accent3, 3, &c3);
    b4 = strongest(meter->accent4, 4, &c4);
    if (c3 <= 1.0f && c4 <= 1.0f)
        return 0;
    /* The beat just recorded has index beats - 1; the downbeat sits at index b (mod n). */
    if (c4 >= c3)
        return (int32_t)(((meter->beats - 1u) + 4u - b4) % 4u) + 1;
    return (int32_t)(((meter->beats - 1u) + 3u - b3) % 3u) + 1;
}
