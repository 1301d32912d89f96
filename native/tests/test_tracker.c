/* tracker.c, the public API: configs, errors, and beats on a click track. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gridcast/tracker.h"

static void check_configs(void)
{
    gc_tracker_config_t c;
    gc_status_t st = GC_OK;
    gc_tracker_default_config(&c, 44100);
    CHECK(c.hop_size == 512 && c.frame_size == 4096);
    CHECK(gc_tracker_config_check(&c) == GC_OK);
    gc_tracker_default_config(&c, 22050);
    CHECK(c.hop_size == 256 && c.frame_size == 2048);
    gc_tracker_default_config(&c, 8000);
    CHECK(gc_tracker_config_check(&c) == GC_OK);
    gc_tracker_default_config(&c, 96000);
    CHECK(gc_tracker_config_check(&c) == GC_OK);
    CHECK(gc_tracker_config_check(NULL) == GC_ERR_NULL);
    CHECK(gc_tracker_new(NULL, &st) == NULL && st == GC_ERR_NULL);
    CHECK(gc_tracker_new(NULL, NULL) == NULL); /* status is optional */
    {
        struct { const char *what; gc_tracker_config_t cfg; } bad[] = {
            {"rate too low", {7999, 128, 1024, 50, 220}},
            {"rate too high", {96001, 1024, 8192, 50, 220}},
            {"zero hop", {44100, 0, 4096, 50, 220}},
            {"huge hop", {44100, 100000, 4096, 50, 220}},
            {"hop longer than 1/20 s", {44100, 4096, 8192, 50, 220}},
            {"frame not a power of two", {44100, 512, 3000, 50, 220}},
            {"frame shorter than hop", {44100, 512, 256, 50, 220}},
            {"frame too long", {44100, 512, 65536, 50, 220}},
            {"zero frame", {44100, 512, 0, 50, 220}},
            {"min_bpm too low", {44100, 512, 4096, 10, 220}},
            {"max_bpm too high", {44100, 512, 4096, 50, 400}},
            {"range too narrow", {44100, 512, 4096, 100, 120}},
            {"NaN tempo", {44100, 512, 4096, NAN, 220}},
            {"infinite tempo", {44100, 512, 4096, 50, INFINITY}},
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            st = GC_OK;
            CHECK_MSG(gc_tracker_config_check(&bad[i].cfg) == GC_ERR_CONFIG, "%s", bad[i].what);
            CHECK_MSG(gc_tracker_new(&bad[i].cfg, &st) == NULL && st == GC_ERR_CONFIG, "%s",
                      bad[i].what);
        }
    }
    CHECK(strlen(gc_status_str(GC_ERR_CONFIG)) > 20);
    CHECK(strcmp(gc_status_str((gc_status_t)42), "unknown status") == 0);
}

static void check_call_errors(void)
{
    gc_tracker_config_t c;
    gc_tracker_t *t;
    gc_beat_t out;
    float hop[512] = {0};
    gc_tracker_default_config(&c, 44100);
    t = gc_tracker_new(&c, NULL);
    CHECK(t != NULL);
    CHECK(gc_tracker_process_audio(NULL, hop, 512, &out) == GC_ERR_NULL);
    CHECK(gc_tracker_process_audio(t, NULL, 512, &out) == GC_ERR_NULL);
    CHECK(gc_tracker_process_audio(t, hop, 512, NULL) == GC_ERR_NULL);
    CHECK(gc_tracker_process_audio(t, hop, 511, &out) == GC_ERR_SIZE);
    CHECK(gc_tracker_process_odf(NULL, 1.0f, &out) == GC_ERR_NULL);
    CHECK(gc_tracker_process_odf(t, NAN, &out) == GC_ERR_NONFINITE);
    CHECK(gc_tracker_state_bytes(NULL) == 0 && gc_tracker_latency_s(NULL) == 0.0f);
    /* the whole state at 44.1 kHz with 512-sample hops fits in 64 KB */
    CHECK_MSG(gc_tracker_state_bytes(t) <= 65536, "%zu bytes", gc_tracker_state_bytes(t));
    gc_tracker_reset(NULL);
    gc_tracker_free(t);
    gc_tracker_free(NULL);
}

/* A click track: 5 ms decaying noise bursts every 60/bpm seconds, starting at first_s. */
static float click(uint64_t i, float rate, float bpm, float first_s)
{
    float t = (float)i / rate - first_s, period = 60.0f / bpm, in_beat;
    if (t < 0.0f)
        return 0.0f;
    in_beat = fmodf(t, period);
    return in_beat < 0.005f ? 0.8f * rng_uniform() * expf(-in_beat * 600.0f) : 0.0f;
}

static void check_click_track(uint32_t rate, float bpm)
{
    gc_tracker_config_t c;
    gc_tracker_t *t;
    gc_beat_t out;
    float *hop;
    uint64_t i, start = 0;
    uint32_t j, hops, matched = 0, late_beats = 0;
    float period = 60.0f / bpm, first = 0.3f, max_err = 0.0f, last_bpm = 0.0f, frame_s;
    gc_tracker_default_config(&c, rate);
    t = gc_tracker_new(&c, NULL);
    hop = malloc(c.hop_size * sizeof(float));
    hops = (uint32_t)(20.0f * (float)rate / (float)c.hop_size);
    /* one model frame: one hop here (default hops are ~11.6 ms, under the model's rate cap) */
    frame_s = (float)c.hop_size / (float)rate;
    for (j = 0; j < hops; j++) {
        for (i = 0; i < c.hop_size; i++)
            hop[i] = click(start + i, (float)rate, bpm, first);
        CHECK(gc_tracker_process_audio(t, hop, c.hop_size, &out) == GC_OK);
        start += c.hop_size;
        if (out.is_beat) {
            float time = (float)out.beat_sample / (float)rate;
            float k = roundf((time - first) / period), err = fabsf(time - first - k * period);
            CHECK(out.beat_sample <= start); /* never in the future */
            CHECK(out.beat_offset_s >= -gc_tracker_latency_s(t) - 2.0f * frame_s - 0.001f &&
                  out.beat_offset_s < (float)c.hop_size / (float)rate);
            if (time > 5.0f) {
                late_beats++;
                if (err <= 0.03f)
                    matched++;
                if (err > max_err)
                    max_err = err;
            }
        }
        last_bpm = out.bpm;
    }
    /* after 5 s: every beat within 30 ms of a click, and one beat per click. Clicks from
       silence show earlier in the window than music onsets, for which the latency is
       calibrated, so beats land up to ~20 ms early here; 30 ms is under half of the
       70 ms window beat tracking is scored with. */
    CHECK_MSG(matched == late_beats && late_beats >= (uint32_t)(14.0f / period),
              "rate %u bpm %g: %u of %u beats within 30 ms (max error %.1f ms)", rate, bpm, matched,
              late_beats, max_err * 1000.0f);
    CHECK_MSG(fabsf(last_bpm - bpm) < 0.04f * bpm, "rate %u: bpm %g for %g", rate, last_bpm, bpm);
    free(hop);
    gc_tracker_free(t);
}

static void check_odf_path(void)
{
    gc_tracker_config_t c;
    gc_tracker_t *t;
    gc_beat_t out;
    uint32_t j, beats = 0, good = 0;
    /* 100 values per second: hop 80 at 8 kHz; a pulse every 50 values = 120 BPM */
    c.sample_rate_hz = 8000;
    c.hop_size = 80;
    c.frame_size = 1024;
    c.min_bpm = 50.0f;
    c.max_bpm = 220.0f;
    t = gc_tracker_new(&c, NULL);
    CHECK(t != NULL);
    for (j = 0; j < 2000; j++) {
        CHECK(gc_tracker_process_odf(t, j % 50 == 3 ? 1.0f : 0.01f, &out) == GC_OK);
        if (out.is_beat && j > 500) {
            uint64_t frame = out.beat_sample / 80; /* the value's hop */
            beats++;
            if (frame % 50 == 3 || frame % 50 == 4 || frame % 50 == 2)
                good++;
        }
    }
    CHECK_MSG(beats >= 28 && good == beats, "%u of %u beats on the pulses", good, beats);
    CHECK(fabsf(out.bpm - 120.0f) < 5.0f);
    gc_tracker_free(t);
}

static void check_silence_and_reset(void)
{
    gc_tracker_config_t c;
    gc_tracker_t *t;
    gc_beat_t out;
    float hop[512];
    uint64_t pos = 0;
    uint32_t j, i, beats_in_silence = 0;
    gc_tracker_default_config(&c, 44100);
    t = gc_tracker_new(&c, NULL);
    for (j = 0; j < 400; j++) { /* 4.6 s of clicks */
        for (i = 0; i < 512; i++)
            hop[i] = click(pos + i, 44100.0f, 120.0f, 0.1f);
        pos += 512;
        gc_tracker_process_audio(t, hop, 512, &out);
    }
    CHECK(out.bpm > 0.0f);
    memset(hop, 0, sizeof hop);
    for (j = 0; j < 400; j++) { /* then 4.6 s of silence: beats stop within SILENCE_S */
        gc_tracker_process_audio(t, hop, 512, &out);
        if (j > 100 && out.is_beat)
            beats_in_silence++;
    }
    CHECK(beats_in_silence == 0);
    CHECK(out.bpm == 0.0f && out.confidence == 0.0f);
    gc_tracker_reset(t);
    gc_tracker_process_audio(t, hop, 512, &out);
    CHECK(out.is_beat == 0 && out.bpm == 0.0f);
    gc_tracker_free(t);
}

int main(void)
{
    check_configs();
    check_call_errors();
    check_click_track(44100, 120.0f);
    check_click_track(48000, 97.0f);
    check_click_track(22050, 140.0f);
    check_click_track(16000, 75.0f);
    check_odf_path();
    check_silence_and_reset();
    return check_report("test_tracker");
}
