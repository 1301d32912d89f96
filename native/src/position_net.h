/* A small learned observation model: what metrical position this frame's sound suggests. */
#ifndef GC_POSITION_NET_H
#define GC_POSITION_NET_H

#include <stdint.h>

#include "beat_model.h"
#include "onset.h"

#define GC_NET_FEATURES 14 /* per band: flux against its running mean, level against its running mean */
#define GC_NET_HISTORY 4   /* this frame and the three before it */
#define GC_NET_INPUTS (GC_NET_FEATURES * GC_NET_HISTORY)
#define GC_NET_HIDDEN 24

typedef struct {
    float scale[GC_BANDS];      /* running mean flux per band */
    float level[GC_BANDS];      /* running mean log magnitude per band */
    float scale_alpha;
    uint32_t frames;
    float history[GC_NET_INPUTS]; /* features of this frame, then of the three before */
} gc_position_net_t;

void gc_position_net_init(gc_position_net_t *net, float frame_rate_hz);
void gc_position_net_reset(gc_position_net_t *net);
/* One frame of band flux and level in; out: per class (beat, half, thirds, none) the log
   likelihood ratio against NONE (out[NONE] = 0). */
void gc_position_net_step(gc_position_net_t *net, const float *band_flux, const float *band_level,
                          float out[GC_CLASSES]);

#endif
