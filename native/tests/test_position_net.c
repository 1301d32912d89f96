/* position_net.c: its evidence stays finite and bounded whatever the onset stage hands
   it, NONE is the reference class, and reset starts afresh. */
#include <math.h>

#include "check.h"
#include "position_net.h"

static void check_output_in_range(void)
{
    gc_position_net_t net;
    float flux[GC_BANDS], level[GC_BANDS], llr[GC_CLASSES];
    uint32_t t, b, c, bad = 0;
    gc_position_net_init(&net, 86.13f);
    for (t = 0; t < 3000; t++) {
        for (b = 0; b < GC_BANDS; b++) {
            /* silence, ordinary values, huge values, bursts and NaN, band by band */
            uint32_t kind = (t / 200 + b) % 5;
            flux[b] = kind == 0 ? 0.0f : kind == 1 ? (float)((t * 7 + b) % 13) : kind == 2 ? 1e30f
                      : kind == 3 ? (t % 40 == 0 ? 50.0f : 0.01f) : NAN;
            level[b] = b % 2 ? flux[b] : -flux[b];
        }
        gc_position_net_step(&net, flux, level, llr);
        for (c = 0; c < GC_CLASSES; c++)
            bad += !(llr[c] >= -20.0f && llr[c] <= 20.0f);
        bad += llr[GC_CLASSES - 1] != 0.0f;
        for (b = 0; b < GC_NET_INPUTS; b++)
            bad += !(net.history[b] >= -8.0f && net.history[b] <= 8.0f);
    }
    CHECK_MSG(bad == 0, "%u values out of range", bad);
}

static void check_reset(void)
{
    gc_position_net_t a, b;
    float flux[GC_BANDS] = {1, 2, 3, 4, 5, 6, 7}, level[GC_BANDS] = {3, 1, 4, 1, 5, 9, 2};
    float la[GC_CLASSES], lb[GC_CLASSES];
    uint32_t t, c;
    gc_position_net_init(&a, 86.13f);
    gc_position_net_init(&b, 86.13f);
    for (t = 0; t < 100; t++)
        gc_position_net_step(&a, flux, level, la);
    gc_position_net_reset(&a);
    gc_position_net_step(&a, flux, level, la);
    gc_position_net_step(&b, flux, level, lb);
    for (c = 0; c < GC_CLASSES; c++)
        CHECK(la[c] == lb[c]);
}

int main(void)
{
    check_output_in_range();
    check_reset();
    return check_report("test_position_net");
}
