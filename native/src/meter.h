/* Downbeat guess: which beat of a 3- or 4-beat bar carries the bass accents. */
#ifndef GC_METER_H
#define GC_METER_H

#include <stdint.h>

typedef struct {
    float accent3[3], accent4[4];
    uint32_t beats;       /* beats counted since the last reset */
} gc_meter_t;

void gc_meter_reset(gc_meter_t *meter);
/* Record one beat with its bass accent; returns its position in the bar (1 = downbeat),
   or 0 while there is no guess yet. */
int32_t gc_meter_beat(gc_meter_t *meter, float bass_accent);

#endif
