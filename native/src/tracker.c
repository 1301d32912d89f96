/*
 * The public API: config checks, the one allocation, input sanitising, and
 * turning the beat model's (tempo, phase) into beat events in sample time.
 *
 * A beat is predicted, not only detected: after every model frame the next
 * beat's sample index is extrapolated from the phase, and the beat is emitted
 * in the hop that contains it. That hides the analysis window's latency when
 * the window is longer than two hops.
 */
#include "gridcast/tracker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "beat_model.h"
#include "decimator.h"
#include "meter.h"
#include "novelty.h"
#include "onset.h"
#include "position_net.h"
#include "tracker_debug.h"

#ifndef MAX_MODEL_RATE_HZ
#define MAX_MODEL_RATE_HZ 110.0f /* faster hops are pooled into one model frame */
#endif
#define MIN_MODEL_RATE_HZ 20.0f
#define SILENCE_RMS 1e-4f        /* -80 dBFS */
#define SILENCE_S 1.0f           /* this long below SILENCE_RMS and the tracker starts afresh */
#define QUIET_S 2.5f             /* this long without an onset (a drone, DC) counts as silence too */
#define ONSET_STRENGTH 0.2f      /* novelty above this counts as an onset */
/* Where in the analysis window onsets show: for a Hann window and log magnitudes the
   flux peaks before the window centre, because the log rises fastest where the window
   is still small. 0.40 of the window makes the median signed error of the matched
   beats 0 over both development sets (40 rendered clips with exact beats, 30 real ones
   with human beats: +4 and -12 ms apart, docs/native.md), with the beat at the model's
   posterior mean; the rest of the lag is the decimation filter's. */
#define DETECTION_POINT 0.40f
#define SAMPLE_LIMIT 64.0f       /* far above full scale; keeps every power finite */
#define ODF_LIMIT 1e6f
#define TINY 1e-30f              /* below this, values are flushed to 0 (no denormals) */
#ifndef REFRACTORY
#define SANITISE_CHUNK 256u      /* a bad hop is cleaned this many samples at a time */
#define REFRACTORY 0.5f          /* no second beat within this fraction of a period */
#define LATE_FRAMES 2u           /* a beat found this many model frames late is still given */
#endif

struct gc_tracker {
    gc_tracker_config_t config;
    size_t state_bytes;
    uint32_t hops_per_frame, hop_in_frame;
    float model_rate_hz;
    float pooled_odf;             /* process_odf: values summed over a model frame */
    float *decimated;             /* the hop at the analysis rate */
    uint64_t samples;             /* stream samples consumed so far */
    int64_t pending_beat;         /* predicted sample of the next beat */
    float pending_period;
    uint64_t last_beat, offer_sample;
    float prev_phase;
    int has_pending, has_last, has_offer, has_phase;
    uint32_t silent_frames, silence_limit;
    uint32_t quiet_frames, quiet_limit;
    int silent;
    float recent_bass[3];
    gc_beat_state_t state;
    gc_decimator_t decimator;
    gc_onset_t onset;
    gc_novelty_t novelty;
    gc_position_net_t net;
    gc_beat_model_t model;
    gc_meter_t meter;
};

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

void gc_tracker_default_config(gc_tracker_config_t *config, uint32_t sample_rate_hz)
{
    uint32_t hop = 16;
    if (!config)
        return;
    /* The power of two closest to 11.6 ms: 512 at 44.1/48 kHz, 256 at 22.05 kHz. */
    while (hop < 8192 && (float)(hop * 2) * 1000.0f / (float)(sample_rate_hz ? sample_rate_hz : 1)
                             <= 11.6f * 1.41f)
        hop *= 2;
    config->sample_rate_hz = sample_rate_hz;
    config->hop_size = hop;
    /* The window: the longest power of two up to 1.2 x 93 ms (4096 samples at 44.1 kHz,
       1024 at 16 kHz), which keeps the FFT at 1024 points after decimation. */
    config->frame_size = 64;
    while (config->frame_size < 16384 &&
           (float)(config->frame_size * 2) <= 1.2f * 0.093f * (float)sample_rate_hz)
        config->frame_size *= 2;
    config->min_bpm = 50.0f;
    config->max_bpm = 220.0f;
}

static int is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

gc_status_t gc_tracker_config_check(const gc_tracker_config_t *c)
{
    float hop_rate;
    uint32_t factor;
    if (!c)
        return GC_ERR_NULL;
    if (c->sample_rate_hz < 8000 || c->sample_rate_hz > 96000)
        return GC_ERR_CONFIG;
    if (c->hop_size < 16 || c->hop_size > 8192 || !is_pow2(c->frame_size) || c->frame_size < c->hop_size)
        return GC_ERR_CONFIG;
    /* The FFT runs at the analysis rate: between 64 and 2048 points there. */
    factor = gc_decimator_factor(c->sample_rate_hz);
    if (c->frame_size / factor < 64 || c->frame_size / factor > 2048)
        return GC_ERR_CONFIG;
    hop_rate = (float)c->sample_rate_hz / (float)c->hop_size;
    if (hop_rate < MIN_MODEL_RATE_HZ)
        return GC_ERR_CONFIG;
    if (!isfinite(c->min_bpm) || !isfinite(c->max_bpm) || c->min_bpm < 30.0f ||
        c->max_bpm > 300.0f || c->max_bpm < 1.5f * c->min_bpm)
        return GC_ERR_CONFIG;
    return GC_OK;
}

static void derive_rates(const gc_tracker_config_t *c, uint32_t *hops_per_frame, float *model_rate)
{
    float hop_rate = (float)c->sample_rate_hz / (float)c->hop_size;
    uint32_t k = (uint32_t)ceilf(hop_rate / MAX_MODEL_RATE_HZ);
    *hops_per_frame = k < 1 ? 1 : k;
    *model_rate = hop_rate / (float)*hops_per_frame;
}

gc_tracker_t *gc_tracker_new(const gc_tracker_config_t *config, gc_status_t *status)
{
    gc_status_t st = gc_tracker_config_check(config);
    gc_tracker_t *t = NULL;
    uint32_t k;
    float rate;
    size_t head, dec_b, onset_b, model_b, hop_b, total;
    uint32_t factor;
    uint8_t *mem;
    if (st != GC_OK)
        goto done;
    derive_rates(config, &k, &rate);
    factor = gc_decimator_factor(config->sample_rate_hz);
    head = align8(sizeof(gc_tracker_t));
    dec_b = align8(gc_decimator_bytes(factor, config->hop_size));
    onset_b = align8(gc_onset_bytes(config->sample_rate_hz / factor, config->frame_size / factor));
    model_b = align8(gc_beat_model_bytes(rate, config->min_bpm, config->max_bpm));
    hop_b = align8((config->hop_size / factor + 1) * sizeof(float));
    total = head + dec_b + onset_b + model_b + hop_b;
    mem = (uint8_t *)calloc(1, total);
    if (!mem) {
        st = GC_ERR_NOMEM;
        goto done;
    }
    t = (gc_tracker_t *)mem;
    t->config = *config;
    t->state_bytes = total;
    t->hops_per_frame = k;
    t->model_rate_hz = rate;
    mem += head;
    gc_decimator_init(&t->decimator, factor, config->hop_size, mem);
    mem += dec_b;
    gc_onset_init(&t->onset, config->sample_rate_hz / factor, config->frame_size / factor, mem);
    mem += onset_b;
    gc_beat_model_init(&t->model, rate, config->min_bpm, config->max_bpm, mem);
    mem += model_b;
    t->decimated = (float *)mem;
    gc_novelty_init(&t->novelty, rate);
    gc_position_net_init(&t->net, rate);
    t->silence_limit = (uint32_t)(SILENCE_S * rate);
    t->quiet_limit = (uint32_t)(QUIET_S * rate);
    gc_tracker_reset(t);
done:
    if (status)
        *status = st;
    return t;
}

void gc_tracker_reset(gc_tracker_t *t)
{
    if (!t)
        return;
    gc_decimator_reset(&t->decimator);
    gc_onset_reset(&t->onset);
    gc_novelty_reset(&t->novelty);
    gc_position_net_reset(&t->net);
    gc_beat_model_reset(&t->model);
    gc_meter_reset(&t->meter);
    t->pooled_odf = 0.0f;
    memset(t->recent_bass, 0, sizeof t->recent_bass);
    memset(&t->state, 0, sizeof t->state);
    t->hop_in_frame = 0;
    t->has_pending = t->has_last = t->has_offer = t->has_phase = 0;
    t->silent_frames = 0;
    t->quiet_frames = 0;
    t->silent = 1; /* until something is heard */
}

void gc_tracker_free(gc_tracker_t *t)
{
    free(t); /* one allocation holds everything */
}

size_t gc_tracker_state_bytes(const gc_tracker_t *t) { return t ? t->state_bytes : 0; }

/* How many input samples before the stream position the model's current frame sits:
   the centre of the analysis window plus the decimation filter's delay (audio), or
   the middle of the pooled hops (onset-function input). */
static float frame_centre_lag(const gc_tracker_t *t, int from_audio)
{
    if (from_audio)
        return DETECTION_POINT * (float)t->config.frame_size + gc_decimator_delay(&t->decimator);
    return 0.5f * (float)t->hops_per_frame * (float)t->config.hop_size;
}

float gc_tracker_latency_s(const gc_tracker_t *t)
{
    if (!t)
        return 0.0f;
    return frame_centre_lag(t, 1) / (float)t->config.sample_rate_hz;
}

const char *gc_status_str(gc_status_t status)
{
    switch (status) {
    case GC_OK: return "ok";
    case GC_ERR_NULL: return "a required pointer was NULL";
    case GC_ERR_CONFIG: return "config out of range: sample rate 8000..96000 Hz, hop 16..8192 samples "
                               "and at most 1/20 s, frame a power of two >= hop spanning 64..2048 "
                               "samples at the 11-16 kHz analysis rate, "
                               "tempo 30 <= min_bpm, max_bpm <= 300, max_bpm >= 1.5 * min_bpm";
    case GC_ERR_SIZE: return "process_audio needs exactly hop_size samples per call";
    case GC_ERR_NONFINITE: return "NaN or Inf in the input (read as 0)";
    case GC_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}

static void clear_out(gc_beat_t *out)
{
    memset(out, 0, sizeof *out);
}

/* Copy n samples to out with NaN/Inf read as 0, huge values clamped, denormals
   flushed; returns whether any sample was NaN or Inf. */
static int sanitise(const float *in, uint32_t n, float *out)
{
    int nonfinite = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        float v = in[i], a = fabsf(v);
        if (!isfinite(v)) {
            v = 0.0f;
            nonfinite = 1;
        } else if (a > SAMPLE_LIMIT) {
            v = v > 0.0f ? SAMPLE_LIMIT : -SAMPLE_LIMIT;
        } else if (a < TINY) {
            v = 0.0f;
        }
        out[i] = v;
    }
    return nonfinite;
}

/* The stream sample `offset` samples from the current position. */
static int64_t at_offset(const gc_tracker_t *t, float offset)
{
    return (int64_t)t->samples + (int64_t)lrintf(offset);
}

/* A beat candidate at stream sample `at`: kept unless a beat was given less than
   REFRACTORY periods before it (the phase estimate may wobble around the beat). */
static void offer_beat(gc_tracker_t *t, int64_t at, float period)
{
    uint64_t sample;
    if (at < 0) /* before the stream began: a phase guess, not a beat */
        return;
    /* A beat the phase passed can still lie ahead of the stream when the posterior mean
       sits later than the most probable phase by more than the window's lag (short
       windows): it is given now, never in the future. */
    if (at > (int64_t)t->samples)
        at = (int64_t)t->samples;
    sample = (uint64_t)at;
    if (t->has_last && (float)((int64_t)sample - (int64_t)t->last_beat) < REFRACTORY * period)
        return;
    t->last_beat = sample;
    t->has_last = 1;
    t->offer_sample = sample;
    t->has_offer = 1;
}

/* No music: forget it, stop giving beats until onsets come back. */
static void go_silent(gc_tracker_t *t)
{
    if (t->silent)
        return;
    gc_novelty_reset(&t->novelty);
    gc_beat_model_reset(&t->model);
    gc_meter_reset(&t->meter);
    t->silent = 1;
    t->has_pending = t->has_phase = 0;
    memset(&t->state, 0, sizeof t->state);
}

/* Run the model on one pooled frame and refresh the beat prediction. `class_llr` is the
   position network's evidence, or NULL when there is none (onset-function input). */
static void model_frame(gc_tracker_t *t, const float *flux, uint32_t n_regions, float level,
                        const float *class_llr, int from_audio)
{
    float strength, bass = 0.0f;
    if (level < (from_audio ? SILENCE_RMS : TINY)) {
        if (++t->silent_frames >= t->silence_limit)
            go_silent(t);
        if (t->silent)
            return;
    } else {
        t->silent_frames = 0;
    }
    strength = gc_novelty_step(&t->novelty, flux, n_regions, &bass);
    /* Sound without onsets (a drone, DC) carries no beat either. */
    if (strength >= ONSET_STRENGTH) {
        t->quiet_frames = 0;
        t->silent = 0;
    } else if (++t->quiet_frames >= t->quiet_limit) {
        go_silent(t);
    }
    if (t->silent)
        return;
    t->recent_bass[0] = t->recent_bass[1];
    t->recent_bass[1] = t->recent_bass[2];
    t->recent_bass[2] = bass;
    gc_beat_model_step(&t->model, strength, class_llr, &t->state);
    {
        float frame_samples = (float)t->hops_per_frame * (float)t->config.hop_size;
        float period = (float)t->state.tau * frame_samples;
        float phase = (float)t->state.phase / (float)t->state.tau;
        /* Offsets from the stream position in float; the position itself stays exact.
           The beat is the model's posterior mean near its most probable phase. */
        float centre = -frame_centre_lag(t, from_audio) + t->state.shift * frame_samples;
        /* The phase passed the beat without stopping on it: the beat was phase * period
           ago. Given late only when that is at most LATE_FRAMES ago; older is missed. */
        if (t->has_phase && phase < t->prev_phase - 0.5f &&
            phase * (float)t->state.tau <= (float)LATE_FRAMES)
            offer_beat(t, at_offset(t, centre - phase * period), period);
        t->prev_phase = phase;
        t->has_phase = 1;
        t->pending_period = period;
        t->pending_beat = at_offset(t, centre + (phase > 0.0f ? (1.0f - phase) * period : 0.0f));
        t->has_pending = 1;
    }
}

/* After a hop: fill *out, emitting the predicted beat when it falls before the hop's end. */
static void emit(gc_tracker_t *t, gc_beat_t *out)
{
    uint32_t hop = t->config.hop_size;
    float sr = (float)t->config.sample_rate_hz;
    float frame_samples = (float)t->hops_per_frame * (float)hop;
    clear_out(out);
    if (t->silent || t->state.tau == 0) {
        t->has_offer = 0;
        return;
    }
    out->bpm = 60.0f * t->model_rate_hz / (float)t->state.tau;
    out->confidence = t->state.confidence;
    {
        /* Phase at the end of the hop: the model frame's phase plus the lag since its centre. */
        float ph = ((float)t->state.phase - t->state.shift + frame_centre_lag(t, 1) / frame_samples) /
                   (float)t->state.tau;
        ph -= floorf(ph);
        out->phase = (ph >= 0.0f && ph < 1.0f) ? ph : 0.0f;
    }
    if (t->has_pending && t->pending_beat < (int64_t)t->samples) {
        offer_beat(t, t->pending_beat, t->pending_period);
        t->has_pending = 0;
    }
    if (t->has_offer) {
        float accent = t->recent_bass[0];
        if (t->recent_bass[1] > accent) accent = t->recent_bass[1];
        if (t->recent_bass[2] > accent) accent = t->recent_bass[2];
        out->is_beat = 1;
        out->beat_sample = t->offer_sample;
        out->beat_offset_s = (float)((int64_t)t->offer_sample - (int64_t)(t->samples - hop)) / sr;
        out->beat_in_bar = gc_meter_beat(&t->meter, accent);
        t->has_offer = 0;
    }
}

gc_status_t gc_tracker_process_audio(gc_tracker_t *t, const float *samples, size_t n, gc_beat_t *out)
{
    gc_status_t st = GC_OK;
    gc_onset_frame_t frame;
    if (out)
        clear_out(out);
    if (!t || !samples || !out)
        return GC_ERR_NULL;
    if (n != t->config.hop_size)
        return GC_ERR_SIZE;
    {
        /* Fast path: every sample ordinary (finite, not huge, zero or normal). The
           check is branch-free so that it vectorises; a bad hop is cleaned in chunks. */
        int ok = 1;
        size_t j;
        uint32_t written = 0;
        for (j = 0; j < n; j++) {
            float a = fabsf(samples[j]);
            ok &= (a <= SAMPLE_LIMIT) & ((a >= TINY) | (a == 0.0f));
        }
        if (ok) {
            written = gc_decimator_process(&t->decimator, samples, (uint32_t)n, t->decimated);
        } else {
            float chunk[SANITISE_CHUNK];
            for (j = 0; j < n; j += SANITISE_CHUNK) {
                uint32_t len = (uint32_t)(n - j < SANITISE_CHUNK ? n - j : SANITISE_CHUNK);
                if (sanitise(samples + j, len, chunk))
                    st = GC_ERR_NONFINITE;
                written += gc_decimator_process(&t->decimator, chunk, len, t->decimated + written);
            }
        }
        t->samples += n;
        gc_onset_push(&t->onset, t->decimated, written);
    }
    /* Hops faster than the model rate only feed the window; the last of them is analysed. */
    if (++t->hop_in_frame >= t->hops_per_frame) {
        float class_llr[GC_CLASSES];
        gc_onset_analyse(&t->onset, &frame);
        /* The network runs through silence too, as it did in training. */
        gc_position_net_step(&t->net, frame.band_flux, frame.band_level, class_llr);
        model_frame(t, frame.flux, GC_REGIONS, frame.rms, class_llr, 1);
        t->hop_in_frame = 0;
    }
    emit(t, out);
    return st;
}

gc_status_t gc_tracker_process_odf(gc_tracker_t *t, float odf_value, gc_beat_t *out)
{
    gc_status_t st = GC_OK;
    float v = odf_value;
    if (out)
        clear_out(out);
    if (!t || !out)
        return GC_ERR_NULL;
    if (!isfinite(v)) {
        v = 0.0f;
        st = GC_ERR_NONFINITE;
    }
    v = v < TINY ? 0.0f : v > ODF_LIMIT ? ODF_LIMIT : v;
    t->samples += t->config.hop_size;
    t->pooled_odf += v;
    if (++t->hop_in_frame >= t->hops_per_frame) {
        float pooled = t->pooled_odf;
        model_frame(t, &pooled, 1, pooled, NULL, 0);
        t->pooled_odf = 0.0f;
        t->hop_in_frame = 0;
    }
    emit(t, out);
    return st;
}

size_t gc_tracker_debug_features(const gc_tracker_t *t, float *out, size_t cap)
{
    size_t k;
    /* a frame was analysed by the last call exactly when the hop count wrapped to 0 */
    if (!t || t->hop_in_frame != 0 || t->net.frames == 0)
        return 0;
    for (k = 0; k < GC_NET_FEATURES && k < cap; k++)
        out[k] = t->net.history[k];
    return k;
}
