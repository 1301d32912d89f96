/*
 * gridcast real-time beat tracker: the whole public API.
 *
 * One opaque tracker, created from a config, fed one hop at a time, freed.
 * gc_tracker_new does every allocation; the process calls never allocate,
 * lock or do I/O, and use float32 arithmetic only, so that the same code runs
 * on an ESP32-class CPU. This header is also the only source of the Python
 * binding's cffi `cdef` (the part between the cdef markers), so it holds
 * nothing cffi cannot parse there: no macros, no inline code.
 */
#ifndef GRIDCAST_TRACKER_H
#define GRIDCAST_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cdef-begin */

typedef enum {
    GC_OK = 0,
    GC_ERR_NULL = -1,          /* a required pointer was NULL */
    GC_ERR_CONFIG = -2,        /* config out of range or inconsistent: see gc_tracker_config_check */
    GC_ERR_SIZE = -3,          /* process_audio got n != hop_size samples */
    GC_ERR_NONFINITE = -4,     /* NaN or Inf in the input; those values were read as 0 */
    GC_ERR_NOMEM = -5          /* allocation failed in gc_tracker_new */
} gc_status_t;

typedef struct {
    uint32_t sample_rate_hz;   /* 8000 .. 96000 */
    uint32_t hop_size;         /* samples per process_audio call; 16 .. 8192, any value */
    uint32_t frame_size;       /* analysis window: a power of two, hop_size .. 8192 */
    float min_bpm;             /* tempo range: 30 <= min_bpm < max_bpm <= 300, */
    float max_bpm;             /* at least a factor 1.5 apart */
} gc_tracker_config_t;

typedef struct {
    int32_t is_beat;           /* 1 when a beat was decided during this hop */
    int32_t beat_in_bar;       /* position of that beat in the bar, 1 = downbeat; 0 = no guess yet */
    uint64_t beat_sample;      /* stream sample index of the beat (when is_beat) */
    float beat_offset_s;       /* beat time minus the start of this hop: in [0, hop) when the
                                  beat was predicted in time; negative (by at most
                                  gc_tracker_latency_s plus two hops' worth of model frames)
                                  when the window's lag or a phase jump made it late */
    float bpm;                 /* current tempo estimate (0 before any signal) */
    float phase;               /* position in the current beat at the end of the hop, [0, 1) */
    float confidence;          /* [0, 1]: posterior mass of the tempo being followed */
} gc_beat_t;

/* Fill a config with the defaults for a sample rate: about 11.6 ms hops
   (512 samples at 44.1 kHz), a window of two hops, 50..220 BPM. */
void gc_tracker_default_config(gc_tracker_config_t *config, uint32_t sample_rate_hz);

/* GC_OK when the config is usable, GC_ERR_NULL / GC_ERR_CONFIG otherwise. */
gc_status_t gc_tracker_config_check(const gc_tracker_config_t *config);

/* A new tracker, or NULL with *status set (status may be NULL). */
typedef struct gc_tracker gc_tracker_t;
gc_tracker_t *gc_tracker_new(const gc_tracker_config_t *config, gc_status_t *status);

/* Feed exactly hop_size samples (mono, nominally in [-1, 1]). Always fills *out
   with finite values, also when it returns an error. */
gc_status_t gc_tracker_process_audio(gc_tracker_t *tracker, const float *samples, size_t n,
                                     gc_beat_t *out);

/* Feed one onset-function value instead of audio (a device that computes its own):
   one call stands for one hop of hop_size samples. Values should be >= 0. */
gc_status_t gc_tracker_process_odf(gc_tracker_t *tracker, float odf_value, gc_beat_t *out);

/* Forget the music heard so far (keeps the config and the stream's sample count). */
void gc_tracker_reset(gc_tracker_t *tracker);

/* Accepts NULL. */
void gc_tracker_free(gc_tracker_t *tracker);

/* Bytes allocated by gc_tracker_new for this tracker (its whole state). */
size_t gc_tracker_state_bytes(const gc_tracker_t *tracker);

/* How far the analysis lags the end of the latest hop, in seconds. */
float gc_tracker_latency_s(const gc_tracker_t *tracker);

/* A short English description of a status. */
const char *gc_status_str(gc_status_t status);

/* cdef-end */

#ifdef __cplusplus
}
#endif

#endif /* GRIDCAST_TRACKER_H */
