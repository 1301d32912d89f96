/*
 * Feed raw float32 mono from stdin to the tracker hop by hop (default config
 * for the given rate) and write the position network's features for every analysed
 * frame to stdout as float32 rows. stderr gets "latency_s L frame_hz F", the
 * two numbers that place frame k at time ((k + 1) / F) - L.
 *   gridcast_net_features SAMPLE_RATE < in.f32 > features.f32
 */
#include <stdio.h>
#include <stdlib.h>

#include "position_net.h"
#include "gridcast/tracker.h"
#include "tracker_debug.h"

int main(int argc, char **argv)
{
    gc_tracker_config_t config;
    gc_tracker_t *tracker;
    gc_status_t status;
    gc_beat_t beat;
    float *hop, features[GC_NET_FEATURES];
    unsigned long hops = 0, frames = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s SAMPLE_RATE < in.f32 > features.f32\n", argv[0]);
        return 2;
    }
    gc_tracker_default_config(&config, (uint32_t)strtoul(argv[1], NULL, 10));
    tracker = gc_tracker_new(&config, &status);
    if (!tracker) {
        fprintf(stderr, "gc_tracker_new: %s\n", gc_status_str(status));
        return 1;
    }
    hop = (float *)calloc(config.hop_size, sizeof(float));
    if (!hop) {
        gc_tracker_free(tracker);
        return 1;
    }
    while (fread(hop, sizeof(float), config.hop_size, stdin) == config.hop_size) {
        size_t n;
        gc_tracker_process_audio(tracker, hop, config.hop_size, &beat);
        hops++;
        n = gc_tracker_debug_features(tracker, features, GC_NET_FEATURES);
        if (n) {
            fwrite(features, sizeof(float), n, stdout);
            frames++;
        }
    }
    fprintf(stderr, "latency_s %.9f frame_hz %.9f\n", (double)gc_tracker_latency_s(tracker),
            (double)config.sample_rate_hz / (double)config.hop_size * (double)frames /
                (double)(hops ? hops : 1));
    free(hop);
    gc_tracker_free(tracker);
    return 0;
}
