/* Properties that hold for any input: whatever the signal and the (valid) config,
   process never crashes or stalls, always writes finite, in-range output, never
   puts a beat in the future or two beats out of order, and says when input was
   not finite. Signals: silence, DC, white noise, hard clipping, NaN/Inf bursts,
   denormals, huge values; configs with odd hop sizes at several sample rates. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gridcast/tracker.h"

typedef enum { SILENCE, DC, NOISE, CLIPPED, NONFINITE, DENORMAL, HUGE_VALUES, N_SIGNALS } signal_t;
static const char *SIGNAL_NAMES[] = {"silence", "dc", "noise", "clipped", "nonfinite", "denormal",
                                     "huge"};

static float sample(signal_t s, uint64_t i, float rate)
{
    switch (s) {
    case SILENCE: return 0.0f;
    case DC: return 0.7f;
    case NOISE: return 0.5f * rng_uniform();
    case CLIPPED: { /* a loud square wave with 120 BPM accents, clipped hard */
        float v = 4.0f * sinf(2.0f * 3.14159265f * 110.0f * (float)i / rate);
        if (fmodf((float)i / rate, 0.5f) < 0.05f)
            v *= 3.0f;
        return v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
    }
    case NONFINITE: /* music-like noise with NaN and Inf bursts */
        if (i % 9973 < 40)
            return (i & 1) ? NAN : -INFINITY;
        return 0.3f * rng_uniform();
    case DENORMAL: return (i & 1 ? 1.0f : -1.0f) * FLT_MIN * 0.25f * (float)(1 + i % 7);
    case HUGE_VALUES: return 1e30f * rng_uniform();
    default: return 0.0f;
    }
}

static void run(const gc_tracker_config_t *c, signal_t s, float seconds)
{
    gc_tracker_t *t = gc_tracker_new(c, NULL);
    gc_beat_t out;
    float *hop;
    uint64_t pos = 0, last_beat = 0;
    uint32_t j, hops, beats = 0, beats_after_3s = 0, nonfinite_status = 0;
    int has_last = 0;
    float fast_tol, slow_tol;
    CHECK_MSG(t != NULL, "rate %u hop %u frame %u", c->sample_rate_hz, c->hop_size, c->frame_size);
    if (!t)
        return;
    {
        /* Beat periods are whole model frames: the fastest and slowest tempi may lie
           outside the range by half a frame of period (hops faster than 110/s are
           pooled, as tracker.c does). */
        float hop_rate = (float)c->sample_rate_hz / (float)c->hop_size;
        float model_rate = hop_rate / ceilf(hop_rate / 110.0f);
        fast_tol = 1.0f / (1.0f - 0.5f * c->max_bpm / (60.0f * model_rate)) + 1e-3f;
        slow_tol = 1.0f / (1.0f + 0.5f * c->min_bpm / (60.0f * model_rate)) - 1e-3f;
    }
    hop = malloc(c->hop_size * sizeof(float));
    hops = (uint32_t)(seconds * (float)c->sample_rate_hz / (float)c->hop_size);
    for (j = 0; j < hops; j++) {
        uint32_t i;
        gc_status_t st;
        int has_nonfinite = 0;
        for (i = 0; i < c->hop_size; i++) {
            hop[i] = sample(s, pos + i, (float)c->sample_rate_hz);
            has_nonfinite |= !isfinite(hop[i]);
        }
        memset(&out, 0xFF, sizeof out); /* garbage in: every field must be written */
        st = gc_tracker_process_audio(t, hop, c->hop_size, &out);
        pos += c->hop_size;
        CHECK(st == (has_nonfinite ? GC_ERR_NONFINITE : GC_OK));
        nonfinite_status += st == GC_ERR_NONFINITE;
        CHECK(out.is_beat == 0 || out.is_beat == 1);
        CHECK(out.beat_in_bar >= 0 && out.beat_in_bar <= 4);
        CHECK(isfinite(out.bpm) && (out.bpm == 0.0f || (out.bpm >= c->min_bpm * slow_tol &&
                                                        out.bpm <= c->max_bpm * fast_tol)));
        CHECK(isfinite(out.phase) && out.phase >= 0.0f && out.phase < 1.0f);
        CHECK(isfinite(out.confidence) && out.confidence >= 0.0f && out.confidence <= 1.0f);
        CHECK(isfinite(out.beat_offset_s));
        if (out.is_beat) {
            if ((float)pos / (float)c->sample_rate_hz > 3.0f)
                beats_after_3s++;
            beats++;
            CHECK(out.beat_sample <= pos);
            CHECK(!has_last || out.beat_sample > last_beat);
            last_beat = out.beat_sample;
            has_last = 1;
        } else {
            CHECK(out.beat_sample == 0 && out.beat_offset_s == 0.0f);
        }
    }
    if (s == SILENCE || s == DENORMAL)
        CHECK_MSG(beats == 0, "%s at %u Hz / hop %u: %u beats", SIGNAL_NAMES[s], c->sample_rate_hz,
                  c->hop_size, beats);
    if (s == DC) /* one onset where the DC starts, then nothing to follow */
        CHECK_MSG(beats_after_3s == 0, "dc at %u Hz / hop %u: %u beats after 3 s", c->sample_rate_hz,
                  c->hop_size, beats_after_3s);
    if (s == NONFINITE)
        CHECK(nonfinite_status > 0);
    free(hop);
    gc_tracker_free(t);
}

int main(void)
{
    /* odd and even hop sizes, several rates; frames chosen valid for each rate */
    gc_tracker_config_t configs[] = {
        {44100, 512, 4096, 50, 220}, {44100, 441, 4096, 50, 220}, {44100, 17, 4096, 60, 180},
        {48000, 1000, 4096, 30, 300}, {22050, 333, 2048, 50, 220}, {8000, 80, 1024, 40, 200},
        {96000, 2048, 8192, 50, 220}, {16000, 160, 1024, 70, 140}, {11025, 97, 512, 50, 220},
        /* window = hop: the onset lags by under a frame, less than the beat's posterior
           mean may sit after its most probable phase */
        {44100, 2048, 2048, 50, 220}, {8000, 256, 256, 50, 220},
    };
    size_t k;
    int s;
    for (k = 0; k < sizeof configs / sizeof configs[0]; k++)
        for (s = 0; s < N_SIGNALS; s++)
            run(&configs[k], (signal_t)s, configs[k].hop_size < 64 ? 1.5f : 6.0f);
    return check_report("test_properties");
}
