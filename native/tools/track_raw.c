/*
 * Feed a raw float32 mono file to the tracker hop by hop and print one beat
 * time per line. Used by bench/native.py (under callgrind), so it does no
 * decoding: what it measures is the tracker.
 *   gridcast_track_raw FILE.f32 SAMPLE_RATE [HOP FRAME]
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>
#include <stdlib.h>

/* CPU time of one call (this thread only, so preemption does not count), in
   microseconds: the worst hop goes to stderr at the end. */
static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

#include "gridcast/tracker.h"

int main(int argc, char **argv)
{
    gc_tracker_config_t config;
    gc_tracker_t *tracker;
    gc_status_t status;
    gc_beat_t beat;
    FILE *f;
    float *hop;
    size_t got;
    double start_us, took_us, worst_us = 0.0;
    unsigned long hops = 0;
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s FILE.f32 SAMPLE_RATE [HOP FRAME]\n", argv[0]);
        return 2;
    }
    gc_tracker_default_config(&config, (uint32_t)strtoul(argv[2], NULL, 10));
    if (argc == 5) {
        config.hop_size = (uint32_t)strtoul(argv[3], NULL, 10);
        config.frame_size = (uint32_t)strtoul(argv[4], NULL, 10);
    }
    tracker = gc_tracker_new(&config, &status);
    if (!tracker) {
        fprintf(stderr, "gc_tracker_new: %s\n", gc_status_str(status));
        return 1;
    }
    f = fopen(argv[1], "rb");
    hop = (float *)calloc(config.hop_size, sizeof(float));
    if (!f || !hop) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        gc_tracker_free(tracker);
        free(hop);
        return 1;
    }
    while ((got = fread(hop, sizeof(float), config.hop_size, f)) == config.hop_size) {
        start_us = now_us();
        gc_tracker_process_audio(tracker, hop, config.hop_size, &beat);
        took_us = now_us() - start_us;
        if (took_us > worst_us)
            worst_us = took_us;
        hops++;
        if (beat.is_beat)
            printf("%.4f\n", (double)beat.beat_sample / (double)config.sample_rate_hz);
    }
    fclose(f);
    free(hop);
    fprintf(stderr, "hops %lu worst_hop_us %.1f state_bytes %zu\n", hops, worst_us,
            gc_tracker_state_bytes(tracker));
    gc_tracker_free(tracker);
    return 0;
}
