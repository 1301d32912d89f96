/* Anti-aliased decimation by a power of two, sample by sample (FIR at the output rate). */
#ifndef GC_DECIMATOR_H
#define GC_DECIMATOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t factor;     /* 1, 2, 4 or 8 */
    uint32_t n_taps;     /* odd */
    uint32_t phase;      /* input samples to skip before the next output */
    uint32_t max_block;  /* most input samples one call may bring */
    float *taps;
    float *buf;          /* n_taps - 1 samples of history, then room for max_block */
} gc_decimator_t;

/* The factor that brings sample_rate_hz closest above ANALYSIS_RATE_HZ. */
uint32_t gc_decimator_factor(uint32_t sample_rate_hz);
size_t gc_decimator_bytes(uint32_t factor, uint32_t max_block);
void gc_decimator_init(gc_decimator_t *dec, uint32_t factor, uint32_t max_block, void *mem);
void gc_decimator_reset(gc_decimator_t *dec);
/* Decimate n <= max_block input samples into out (room for n / factor + 1);
   returns the count written. */
uint32_t gc_decimator_process(gc_decimator_t *dec, const float *in, uint32_t n, float *out);
/* Delay of the filter, in input samples. */
float gc_decimator_delay(const gc_decimator_t *dec);

#endif
