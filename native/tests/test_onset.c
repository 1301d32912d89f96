/* decimator.c and onset.c: the filter passes low and stops high frequencies;
   the flux rises at onsets, per region, and stays near zero on steady sound. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "decimator.h"
#include "onset.h"

static float sine_gain_after_decimation(uint32_t factor, float freq_hz, float rate_hz)
{
    gc_decimator_t dec;
    uint32_t block = 512, i, n, total = 0;
    void *mem = malloc(gc_decimator_bytes(factor, block));
    float in[512], out[520], peak = 0.0f;
    gc_decimator_init(&dec, factor, block, mem);
    for (n = 0; n < 40; n++) {
        uint32_t got;
        for (i = 0; i < block; i++)
            in[i] = sinf(2.0f * 3.14159265f * freq_hz * (float)(n * block + i) / rate_hz);
        got = gc_decimator_process(&dec, in, block, out);
        total += got;
        if (n > 4) /* past the filter's start-up */
            for (i = 0; i < got; i++)
                peak = fabsf(out[i]) > peak ? fabsf(out[i]) : peak;
    }
    CHECK(total == 40 * block / factor);
    free(mem);
    return peak;
}

static void check_decimator(void)
{
    CHECK(gc_decimator_factor(8000) == 1);
    CHECK(gc_decimator_factor(22050) == 2);
    CHECK(gc_decimator_factor(44100) == 4);
    CHECK(gc_decimator_factor(48000) == 4);
    CHECK(gc_decimator_factor(96000) == 8);
    /* 44.1 kHz -> 11.025 kHz: 1 kHz passes, 9 kHz (would alias to 2 kHz) is stopped */
    CHECK(fabsf(sine_gain_after_decimation(4, 1000.0f, 44100.0f) - 1.0f) < 0.02f);
    CHECK(sine_gain_after_decimation(4, 9000.0f, 44100.0f) < 0.02f);
    CHECK(sine_gain_after_decimation(2, 9000.0f, 22050.0f) < 0.03f);
}

static void analyse_block(gc_onset_t *on, const float *x, uint32_t n, gc_onset_frame_t *f)
{
    gc_onset_push(on, x, n);
    gc_onset_analyse(on, f);
}

static void check_flux(void)
{
    uint32_t rate = 11025, size = 1024, hop = 128, i, h;
    gc_onset_t on;
    gc_onset_frame_t f;
    void *mem = malloc(gc_onset_bytes(rate, size));
    float x[128], steady_flux = 0.0f, onset_flux = 0.0f;
    gc_onset_init(&on, rate, size, mem);
    for (i = 0; i < hop; i++)
        x[i] = 0.0f;
    analyse_block(&on, x, hop, &f);
    CHECK(f.flux[0] == 0.0f && f.flux[1] == 0.0f && f.flux[2] == 0.0f && f.rms == 0.0f);
    /* a steady 440 Hz tone: after the window has filled, almost no flux */
    for (h = 0; h < 30; h++) {
        for (i = 0; i < hop; i++)
            x[i] = 0.5f * sinf(2.0f * 3.14159265f * 440.0f * (float)(h * hop + i) / (float)rate);
        analyse_block(&on, x, hop, &f);
        if (h == 1)
            onset_flux = f.flux[1];
        if (h >= 12)
            steady_flux += f.flux[0] + f.flux[1] + f.flux[2];
    }
    CHECK_MSG(onset_flux > 1.0f, "onset flux %g", onset_flux);
    CHECK_MSG(steady_flux < 0.05f * onset_flux, "steady %g vs onset %g", steady_flux, onset_flux);
    CHECK(fabsf(f.rms - 0.5f / sqrtf(2.0f)) < 0.01f);
    /* a 60 Hz thump shows in the bass region more than in the others */
    gc_onset_reset(&on);
    for (h = 0; h < 3; h++) {
        for (i = 0; i < hop; i++)
            x[i] = h == 2 ? sinf(2.0f * 3.14159265f * 60.0f * (float)i / (float)rate) : 0.0f;
        analyse_block(&on, x, hop, &f);
    }
    CHECK_MSG(f.flux[0] > f.flux[1] && f.flux[0] > f.flux[2], "bass %g mid %g high %g",
              f.flux[0], f.flux[1], f.flux[2]);
    free(mem);
}

int main(void)
{
    check_decimator();
    check_flux();
    return check_report("test_onset");
}
