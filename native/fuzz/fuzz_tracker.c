/*
 * libFuzzer target: arbitrary bytes become a config and then samples (or
 * onset-function values). Any crash, sanitizer report, NaN in the output,
 * beat in the future or out of order aborts.
 *   cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DGRIDCAST_FUZZ=ON -DGRIDCAST_SANITIZE=ON
 *   cmake --build build/fuzz --target fuzz_tracker
 *   build/fuzz/native/fuzz_tracker -runs=1000000 -max_len=4096
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gridcast/tracker.h"

#define REQUIRE(cond)      \
    do {                   \
        if (!(cond))       \
            abort();       \
    } while (0)

static uint32_t take_u32(const uint8_t **p, size_t *n)
{
    uint32_t v = 0;
    if (*n >= 4) {
        memcpy(&v, *p, 4);
        *p += 4;
        *n -= 4;
    }
    return v;
}

static float take_f32(const uint8_t **p, size_t *n)
{
    float v = 0.0f;
    if (*n >= 4) {
        memcpy(&v, *p, 4);
        *p += 4;
        *n -= 4;
    }
    return v;
}

static void check_out(const gc_beat_t *out, uint64_t samples, uint64_t *last, int *has_last)
{
    REQUIRE(out->is_beat == 0 || out->is_beat == 1);
    REQUIRE(isfinite(out->bpm) && out->bpm >= 0.0f && out->bpm < 400.0f);
    REQUIRE(isfinite(out->phase) && out->phase >= 0.0f && out->phase < 1.0f);
    REQUIRE(isfinite(out->confidence) && out->confidence >= 0.0f && out->confidence <= 1.0f);
    REQUIRE(isfinite(out->beat_offset_s));
    if (out->is_beat) {
        REQUIRE(out->beat_sample <= samples);
        REQUIRE(!*has_last || out->beat_sample > *last);
        *last = out->beat_sample;
        *has_last = 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gc_tracker_config_t c;
    gc_tracker_t *t;
    gc_status_t st = GC_OK;
    gc_beat_t out;
    uint8_t mode;
    uint64_t samples = 0, last = 0;
    int has_last = 0;
    if (size < 1)
        return 0;
    mode = data[0];
    data++;
    size--;
    if (mode & 1) { /* raw config: anything at all */
        c.sample_rate_hz = take_u32(&data, &size);
        c.hop_size = take_u32(&data, &size);
        c.frame_size = take_u32(&data, &size);
        c.min_bpm = take_f32(&data, &size);
        c.max_bpm = take_f32(&data, &size);
    } else { /* a default config with a fuzzed rate and hop: usually valid */
        uint32_t r = take_u32(&data, &size);
        gc_tracker_default_config(&c, 8000 + r % 88001);
        c.hop_size = 16 + (r >> 17) % 1024;
        while (c.frame_size < c.hop_size)
            c.frame_size *= 2;
    }
    t = gc_tracker_new(&c, &st);
    REQUIRE((t == NULL) == (st != GC_OK));
    REQUIRE(t != NULL || gc_tracker_config_check(&c) == st);
    if (!t)
        return 0;
    if (mode & 2) { /* onset-function values */
        while (size >= 4) {
            float v = take_f32(&data, &size);
            gc_status_t s = gc_tracker_process_odf(t, v, &out);
            REQUIRE(s == (isfinite(v) ? GC_OK : GC_ERR_NONFINITE));
            samples += c.hop_size;
            check_out(&out, samples, &last, &has_last);
        }
    } else { /* audio: the bytes as float samples, the last hop zero-padded */
        float *hop = calloc(c.hop_size, sizeof(float));
        REQUIRE(hop != NULL);
        while (size > 0) {
            size_t take = size < c.hop_size * sizeof(float) ? size : c.hop_size * sizeof(float);
            memset(hop, 0, c.hop_size * sizeof(float));
            memcpy(hop, data, take);
            data += take;
            size -= take;
            st = gc_tracker_process_audio(t, hop, c.hop_size, &out);
            REQUIRE(st == GC_OK || st == GC_ERR_NONFINITE);
            samples += c.hop_size;
            check_out(&out, samples, &last, &has_last);
            if (mode & 4)
                gc_tracker_reset(t);
        }
        REQUIRE(gc_tracker_process_audio(t, hop, c.hop_size - 1, &out) == GC_ERR_SIZE ||
                c.hop_size == 0);
        free(hop);
    }
    gc_tracker_free(t);
    return 0;
}
