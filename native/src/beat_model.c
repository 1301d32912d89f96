/*
 * The causal counterpart of the offline analyzer's decoder (host/beat_hmm.py).
 *
 * State space after Krebs, Böck and Widmer (2015): for every beat interval tau
 * there are tau phase states; phase advances one state per frame and the tempo
 * may change only when a beat starts. Each tempo's phases live in a ring
 * buffer, so advancing costs one index update per tempo, not a copy.
 *
 * Observation: the metrical model of the offline analyzer. Phase states near
 * the beat expect an onset, so do the half beat (binary family) or the two
 * thirds (ternary family); the rest expect none. Every state gets the NONE
 * likelihood, which cancels in the normalisation and is never applied, so a
 * frame multiplies only the few non-NONE states of each tempo.
 *
 * Tempo change at a beat: a Laplace kernel on log tempo, exp(-lambda |log
 * tau_j - log tau_i|), row-normalised. Its sum-product is two recursive sweeps
 * (O(m) instead of O(m^2)). The family (binary / ternary subdivision) may
 * switch at a beat with a small probability.
 *
 * Forward filtering, not Viterbi: the output is the most probable tempo by
 * summed mass and its most probable phase, which is steadier than the single
 * best state. A probability floor keeps every state reachable, so a tempo
 * change or a restart after a break is found again within a few beats.
 */
#include "beat_model.h"

#include <math.h>
#include <string.h>

#ifndef MAX_TEMPI
#define MAX_TEMPI 48u            /* per family: about 3 % tempo steps over 50..220 BPM */
#endif
#ifndef TRANSITION_LAMBDA
#define TRANSITION_LAMBDA 60.0f  /* tempo-change stiffness per unit of log tempo */
#endif
#ifndef FAMILY_SWITCH_P
#define FAMILY_SWITCH_P 0.002f
#endif
#ifndef BEAT_WINDOW
#define BEAT_WINDOW 0.03125f     /* half-width of the beat / subdivision classes, in periods */
#endif
#ifndef PRIOR_BPM
#define PRIOR_BPM 125.0f
#endif
#ifndef TERNARY_PRIOR_BPM
/* Beats divided in three: the prior is on the same subdivision rate (two thirds of the
   binary centre: 83 BPM in thirds = 125 BPM in halves), so a 6/8 jig at 72 dotted
   quarters is not pushed to 108 BPM in "halves". */
#define TERNARY_PRIOR_BPM (PRIOR_BPM * 2.0f / 3.0f)
#endif
#ifndef PRIOR_SIGMA_OCT
#define PRIOR_SIGMA_OCT 1.05f
#endif
#ifndef PRIOR_WEIGHT_PER_S
#define PRIOR_WEIGHT_PER_S 10.0f /* log-prior paid per second (0.1 per frame at 100 frames/s) */
#endif
#ifndef FLOOR
#define FLOOR 1e-9f              /* every state keeps at least this share of the mass */
#endif
#define RENORM_FRAMES 64u
#define MASS_LOW 1e-12f          /* renormalise at once when the total mass leaves this range */
#define MASS_HIGH 1e12f
#ifndef READOUT_TEMPI
#define READOUT_TEMPI 2u         /* tempi either side of the best whose mass votes on the phase */
#endif
#ifndef MEAN_WINDOW_S
#define MEAN_WINDOW_S 0.07f      /* the beat's time: the posterior mean within this of its mode */
#endif
#ifndef TERNARY_PRIOR
#define TERNARY_PRIOR 0.5f       /* per beat, relative to binary: most music divides beats in two */
#endif

/* Both observation models see the same onsets, so when both are there each is
   tempered: exponents on the position network's and the onset strength's ratios. */
#ifndef NET_WEIGHT
#define NET_WEIGHT 0.5f
#endif
#ifndef ONSET_WEIGHT
#define ONSET_WEIGHT 0.8f
#endif

enum { BEAT = 0, HALF = 1, THIRD_1 = 2, THIRD_2 = 3, NONE = 4 };
/* Probability of an onset in each class (beat, half, thirds, none), as in host/params.py. */
#ifndef P_BEAT
#define P_BEAT 0.9f
#endif
#ifndef P_HALF
#define P_HALF 0.4f
#endif
#ifndef P_NONE
#define P_NONE 0.1f
#endif
static const float ONSET_P[GC_CLASSES] = {P_BEAT, P_HALF, 0.3f, 0.5f, P_NONE};

uint32_t gc_beat_model_tempi(float frame_rate_hz, float min_bpm, float max_bpm, uint16_t *tau_out)
{
    float lo = 60.0f * frame_rate_hz / max_bpm, hi = 60.0f * frame_rate_hz / min_bpm;
    uint32_t n = 0, j, steps;
    int last = -1;
    if (lo < 2.0f)
        lo = 2.0f;
    if (hi > 65000.0f)
        hi = 65000.0f;
    steps = MAX_TEMPI;
    for (j = 0; j < steps; j++) {
        float t = lo * powf(hi / lo, (float)j / (float)(steps - 1));
        int tau = (int)lrintf(t);
        if (tau != last) {
            if (tau_out)
                tau_out[n] = (uint16_t)tau;
            n++;
            last = tau;
        }
    }
    return n;
}

static uint32_t class_of(uint32_t p, uint32_t tau, int ternary)
{
    float phase = (float)p / (float)tau;
    float half_w = BEAT_WINDOW > 0.5f / (float)tau ? BEAT_WINDOW : 0.5f / (float)tau;
    float d0 = phase < 0.5f ? phase : 1.0f - phase;
    if (d0 <= half_w + 1e-6f)
        return BEAT;
    if (!ternary)
        return fabsf(phase - 0.5f) <= half_w + 1e-6f ? HALF : NONE;
    if (fabsf(phase - 1.0f / 3.0f) <= half_w + 1e-6f)
        return THIRD_1;
    if (fabsf(phase - 2.0f / 3.0f) <= half_w + 1e-6f)
        return THIRD_2;
    return NONE;
}

/* Tempo tau's runs of non-NONE phases, in phase order; the beat run starts before
   phase 0 and wraps. Writes up to 4 runs when the arrays are given; returns how many. */
static uint32_t runs_of(uint32_t tau, int ternary, uint16_t *phase, uint8_t *len, uint8_t *cls)
{
    uint32_t n = 0, p, start = 0, first;
    /* Start the scan at the first phase after the beat run's end, so no run is split. */
    for (first = 0; first < tau && class_of(first, tau, ternary) == BEAT; first++)
        ;
    if (first == tau) /* tau so short that every phase is a beat */
        first = 0;
    for (p = 0; p <= tau; p++) {
        uint32_t ph = (first + p) % tau;
        uint32_t c = p < tau ? class_of(ph, tau, ternary) : NONE;
        uint32_t prev = p > 0 ? class_of((first + p - 1) % tau, tau, ternary) : NONE;
        if (c != prev && prev != NONE) { /* a run ended at p - 1 */
            if (phase) {
                phase[n] = (uint16_t)((first + start) % tau);
                len[n] = (uint8_t)(p - start);
                cls[n] = (uint8_t)prev;
            }
            n++;
        }
        if (c != prev)
            start = p;
    }
    return n;
}

static void count_states(float frame_rate_hz, float min_bpm, float max_bpm, uint32_t *m,
                         uint32_t *n_states, uint32_t *n_runs)
{
    uint16_t tau[MAX_TEMPI];
    uint32_t i, f;
    *m = gc_beat_model_tempi(frame_rate_hz, min_bpm, max_bpm, tau);
    *n_states = 0;
    *n_runs = 0;
    for (f = 0; f < 2; f++)
        for (i = 0; i < *m; i++) {
            *n_states += tau[i];
            *n_runs += runs_of(tau[i], (int)f, NULL, NULL, NULL);
        }
}

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static uint32_t max_tau_of(float frame_rate_hz, float min_bpm, float max_bpm)
{
    uint16_t tau[MAX_TEMPI];
    uint32_t m = gc_beat_model_tempi(frame_rate_hz, min_bpm, max_bpm, tau);
    return tau[m - 1];
}

size_t gc_beat_model_bytes(float frame_rate_hz, float min_bpm, float max_bpm)
{
    uint32_t m, n, s;
    count_states(frame_rate_hz, min_bpm, max_bpm, &m, &n, &s);
    return align8(2 * m * sizeof(uint16_t)) * 2          /* tau, head */
           + align8(2 * m * sizeof(uint32_t))            /* offset */
           + align8(n * sizeof(float))                   /* prob */
           + align8(2 * m * sizeof(float)) * 4           /* tempo_mass, leaving, entering, prior */
           + align8(m * sizeof(float)) * 3               /* forward_sum, decay, row_norm */
           + align8(max_tau_of(frame_rate_hz, min_bpm, max_bpm) * sizeof(float))
           + align8((2 * m + 1) * sizeof(uint32_t)) + align8(s * sizeof(uint16_t)) + 2 * align8(s);
}

/* The log-normal tempo prior, paid per second, as the factor one beat of tau frames pays. */
static float prior_per_beat(float bpm, float centre_bpm, uint32_t tau, float frame_rate_hz)
{
    float oct = log2f(bpm / centre_bpm) / PRIOR_SIGMA_OCT;
    return expf(-0.5f * oct * oct * PRIOR_WEIGHT_PER_S / frame_rate_hz * (float)tau);
}

void gc_beat_model_init(gc_beat_model_t *model, float frame_rate_hz, float min_bpm, float max_bpm,
                        void *mem)
{
    uint8_t *p = (uint8_t *)mem;
    uint32_t m, n, s, i, j, f, c = 0, off = 0;
    float cum[MAX_TEMPI];
    count_states(frame_rate_hz, min_bpm, max_bpm, &m, &n, &s);
    model->n_tempi = m;
    model->n_states = n;
    model->n_runs = s;
    model->frame_rate_hz = frame_rate_hz;
    model->tau = (uint16_t *)p; p += align8(2 * m * sizeof(uint16_t));
    model->head = (uint16_t *)p; p += align8(2 * m * sizeof(uint16_t));
    model->offset = (uint32_t *)p; p += align8(2 * m * sizeof(uint32_t));
    model->prob = (float *)p; p += align8(n * sizeof(float));
    model->tempo_mass = (float *)p; p += align8(2 * m * sizeof(float));
    model->leaving = (float *)p; p += align8(2 * m * sizeof(float));
    model->entering = (float *)p; p += align8(2 * m * sizeof(float));
    model->beat_prior = (float *)p; p += align8(2 * m * sizeof(float));
    model->forward_sum = (float *)p; p += align8(m * sizeof(float));
    model->decay = (float *)p; p += align8(m * sizeof(float));
    model->row_norm = (float *)p; p += align8(m * sizeof(float));
    model->max_tau = max_tau_of(frame_rate_hz, min_bpm, max_bpm);
    model->mean_frames = (uint32_t)lrintf(MEAN_WINDOW_S * frame_rate_hz);
    model->until_beat = (float *)p; p += align8(model->max_tau * sizeof(float));
    model->run_start = (uint32_t *)p; p += align8((2 * m + 1) * sizeof(uint32_t));
    model->run_phase = (uint16_t *)p; p += align8(s * sizeof(uint16_t));
    model->run_len = p; p += align8(s);
    model->run_class = p;

    gc_beat_model_tempi(frame_rate_hz, min_bpm, max_bpm, model->tau);
    memcpy(model->tau + m, model->tau, m * sizeof(uint16_t));
    for (i = 0; i < m; i++) {
        float log_tau = logf((float)model->tau[i]);
        float bpm = 60.0f * frame_rate_hz / (float)model->tau[i];
        model->beat_prior[i] = prior_per_beat(bpm, PRIOR_BPM, model->tau[i], frame_rate_hz);
        model->beat_prior[m + i] =
            TERNARY_PRIOR * prior_per_beat(bpm, TERNARY_PRIOR_BPM, model->tau[i], frame_rate_hz);
        cum[i] = log_tau;
        model->decay[i] = i + 1 < m ? expf(-TRANSITION_LAMBDA * (logf((float)model->tau[i + 1]) - log_tau))
                                    : 0.0f;
    }
    for (i = 0; i < m; i++) {
        float z = 0.0f;
        for (j = 0; j < m; j++)
            z += expf(-TRANSITION_LAMBDA * fabsf(cum[i] - cum[j]));
        model->row_norm[i] = 1.0f / z;
    }
    for (f = 0; f < 2; f++)
        for (i = 0; i < m; i++) {
            uint32_t k = f * m + i;
            model->offset[k] = off;
            model->run_start[k] = c;
            off += model->tau[k];
            c += runs_of(model->tau[k], (int)f, model->run_phase + c, model->run_len + c,
                         model->run_class + c);
        }
    model->run_start[2 * m] = c;
    gc_beat_model_reset(model);
}

void gc_beat_model_reset(gc_beat_model_t *model)
{
    uint32_t k, i;
    /* Every tempo equally likely, spread evenly over its phases. (Uniform over states
       would favour slow tempi, which have more phases; that locked later on the
       development sets, and so did starting from the tempo prior.) */
    for (k = 0; k < 2 * model->n_tempi; k++) {
        float per_state;
        model->head[k] = 0;
        model->tempo_mass[k] = 1.0f / (float)(2 * model->n_tempi);
        per_state = model->tempo_mass[k] / (float)model->tau[k];
        for (i = 0; i < model->tau[k]; i++)
            model->prob[model->offset[k] + i] = per_state;
    }
    model->frames_since_renorm = 0;
}

/* entering[j] = sum_i leaving[i] * K(i, j) / rowsum(i), within one family. */
static void tempo_kernel(gc_beat_model_t *model, const float *leaving, float *entering)
{
    uint32_t m = model->n_tempi, j;
    float run = 0.0f;
    for (j = 0; j < m; j++) {
        run = leaving[j] * model->row_norm[j] + (j > 0 ? model->decay[j - 1] * run : 0.0f);
        model->forward_sum[j] = run;
    }
    run = 0.0f;
    for (j = m; j-- > 0;) {
        float src = leaving[j] * model->row_norm[j];
        run = src + (j + 1 < m ? model->decay[j] * run : 0.0f);
        entering[j] = model->forward_sum[j] + run - src;
    }
}

static void renormalise(gc_beat_model_t *model)
{
    uint32_t k, i, end;
    float total = 0.0f, scale, floor_v;
    for (k = 0; k < 2 * model->n_tempi; k++)
        total += model->tempo_mass[k];
    scale = total > 0.0f && isfinite(total) ? 1.0f / total : 0.0f;
    if (scale == 0.0f) { /* cannot happen with finite inputs; recover rather than spread NaN */
        gc_beat_model_reset(model);
        return;
    }
    floor_v = FLOOR / (float)model->n_states;
    for (k = 0; k < 2 * model->n_tempi; k++) {
        float mass = 0.0f;
        end = model->offset[k] + model->tau[k];
        for (i = model->offset[k]; i < end; i++) {
            float v = model->prob[i] * scale;
            v = v > floor_v ? v : floor_v;
            model->prob[i] = v;
            mass += v;
        }
        model->tempo_mass[k] = mass;
    }
    model->frames_since_renorm = 0;
}

/* The mean of the frames-to-go distribution `acc` (stored back to front, see the read-out)
   within `w` frames of its mode `to_go`, minus the mode. Frames before the mode wrap to
   the end of the best tempo's beat (the beat just passed). The mode alone moves in whole
   frames and jumps between neighbouring tempi, whose beats fall a frame or two apart; the
   mean is the time that minimises the expected squared error. */
static float mean_shift(const float *acc, uint32_t top, uint32_t span, uint32_t to_go,
                        uint32_t tau, uint32_t w)
{
    float mass = 0.0f, moment = 0.0f;
    int32_t j;
    for (j = -(int32_t)w; j <= (int32_t)w; j++) {
        int32_t q = (int32_t)to_go + j;
        if (q < 0)
            q += (int32_t)tau;
        if (q < 0 || q >= (int32_t)span)
            continue;
        mass += acc[top - (uint32_t)q];
        moment += acc[top - (uint32_t)q] * (float)j;
    }
    return mass > 0.0f ? moment / mass : 0.0f;
}

void gc_beat_model_step(gc_beat_model_t *model, float strength, const float *class_llr,
                        gc_beat_state_t *out)
{
    uint32_t m = model->n_tempi, k, c, best = 0, p, best_p = 0;
    float ratio[GC_CLASSES], none_lik, total = 0.0f, best_v = -1.0f, near;
    const float s = strength;

    /* 1. Advance phase: the last phase of every tempo wraps to phase 0. */
    for (k = 0; k < 2 * m; k++) {
        uint32_t h = model->head[k] == 0 ? model->tau[k] - 1u : model->head[k] - 1u;
        model->head[k] = (uint16_t)h;
        model->leaving[k] = model->prob[model->offset[k] + h];
    }
    /* 2. Beats start: tempo change within a family, family switch, tempo prior. */
    tempo_kernel(model, model->leaving, model->entering);
    tempo_kernel(model, model->leaving + m, model->entering + m);
    for (k = 0; k < m; k++) {
        float bin = model->entering[k], ter = model->entering[m + k];
        model->entering[k] = (1.0f - FAMILY_SWITCH_P) * bin + FAMILY_SWITCH_P * ter;
        model->entering[m + k] = (1.0f - FAMILY_SWITCH_P) * ter + FAMILY_SWITCH_P * bin;
    }
    for (k = 0; k < 2 * m; k++) {
        float e = model->entering[k] * model->beat_prior[k];
        model->prob[model->offset[k] + model->head[k]] = e;
        model->tempo_mass[k] += e - model->leaving[k];
    }
    /* 3. Observation, relative to NONE. */
    none_lik = s * ONSET_P[NONE] + (1.0f - s) * (1.0f - ONSET_P[NONE]);
    for (c = 0; c < GC_CLASSES; c++)
        ratio[c] = (s * ONSET_P[c] + (1.0f - s) * (1.0f - ONSET_P[c])) / none_lik;
    if (class_llr) /* the position network's evidence, as log likelihood ratios against NONE */
        for (c = 0; c < NONE; c++)
            ratio[c] = powf(ratio[c], ONSET_WEIGHT) * expf(NET_WEIGHT * class_llr[c]);
    /* Per run of consecutive phases of one class: one factor over one or two
       contiguous stretches of the ring (the run may wrap around its end). */
    for (k = 0; k < 2 * m; k++) {
        uint32_t tau = model->tau[k], head = model->head[k], end = model->run_start[k + 1];
        float *ring = model->prob + model->offset[k], sum = 0.0f;
        for (c = model->run_start[k]; c < end; c++) {
            uint32_t slot = head + model->run_phase[c], len = model->run_len[c], i, first;
            const float r = ratio[model->run_class[c]];
            float run_sum = 0.0f;
            float *a;
            slot = slot >= tau ? slot - tau : slot;
            first = tau - slot < len ? tau - slot : len;
            a = ring + slot;
            for (i = 0; i < first; i++) {
                run_sum += a[i];
                a[i] *= r;
            }
            for (i = 0; i < len - first; i++) {
                run_sum += ring[i];
                ring[i] *= r;
            }
            sum += run_sum * (r - 1.0f);
        }
        model->tempo_mass[k] += sum;
    }
    /* Renormalise every RENORM_FRAMES, or sooner when strong evidence has moved the
       total far from 1 (the position network's ratios reach e^20 per frame). */
    for (k = 0; k < 2 * m; k++)
        total += model->tempo_mass[k];
    if (++model->frames_since_renorm >= RENORM_FRAMES || !(total > MASS_LOW && total < MASS_HIGH)) {
        renormalise(model);
        total = 0.0f;
        for (k = 0; k < 2 * m; k++)
            total += model->tempo_mass[k];
    }
    /* 4. Read out: the tempo with most mass, then its most probable phase and the beat's
       posterior mean near it. */
    for (k = 0; k < 2 * m; k++) {
        if (model->tempo_mass[k] > best_v) {
            best_v = model->tempo_mass[k];
            best = k;
        }
    }
    /* The phase: neighbouring tempi vote with their mass on the frames left until
       the next beat. Reading the best tempo alone would make the beat jump whenever
       the mass moves between two tempi around a tempo that falls between them. */
    {
        /* until_beat is stored back to front: frames-to-go p lives at index
           max_tau - 1 - p, so that each tempo's ring adds to one ascending stretch
           (two, where the ring wraps), which vectorises. */
        uint32_t fam0 = best < m ? 0 : m, lo = best - fam0, hi, top = model->max_tau - 1, span = 0;
        uint32_t to_go = 0;
        float *acc = model->until_beat;
        lo = lo > READOUT_TEMPI ? lo - READOUT_TEMPI : 0;
        hi = best - fam0 + READOUT_TEMPI + 1 < m ? best - fam0 + READOUT_TEMPI + 1 : m;
        for (k = fam0 + lo; k < fam0 + hi; k++)
            span = model->tau[k] > span ? model->tau[k] : span;
        memset(acc + model->max_tau - span, 0, span * sizeof(float));
        for (k = fam0 + lo; k < fam0 + hi; k++) {
            uint32_t tau = model->tau[k], head = model->head[k], d, first;
            const float *ring = model->prob + model->offset[k];
            /* phase d frames past the beat (ring slot head + d) has tau - d frames to go,
               phase 0 none: index top - (tau - d) for d >= 1, top for d = 0 */
            float *dst = acc + top - tau;
            acc[top] += ring[head];
            first = tau - head; /* d = 1 .. first - 1 without wrapping */
            for (d = 1; d < first; d++)
                dst[d] += ring[head + d];
            for (d = first > 1 ? first : 1; d < tau; d++)
                dst[d] += ring[head + d - tau];
        }
        for (p = 0, best_v = -1.0f; p < span; p++)
            if (acc[top - p] > best_v) {
                best_v = acc[top - p];
                to_go = p;
            }
        best_p = (model->tau[best] - to_go % model->tau[best]) % model->tau[best];
        out->shift = mean_shift(acc, top, span, to_go, model->tau[best], model->mean_frames);
    }
    near = model->tempo_mass[best];
    if (best % m > 0)
        near += model->tempo_mass[best - 1];
    if (best % m + 1 < m)
        near += model->tempo_mass[best + 1];
    out->tempo = best;
    out->phase = best_p;
    out->tau = model->tau[best];
    out->confidence = total > 0.0f ? near / total : 0.0f;
    if (!(out->confidence >= 0.0f))
        out->confidence = 0.0f;
    if (out->confidence > 1.0f)
        out->confidence = 1.0f;
}
