/* Causal metrical HMM over (subdivision family x tempo x phase), forward filtering. */
#ifndef GC_BEAT_MODEL_H
#define GC_BEAT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define GC_CLASSES 5 /* beat, half, first third, second third, none */

typedef struct {
    uint32_t n_tempi;      /* tempo states per family; the model has 2 * n_tempi */
    uint32_t n_states;
    uint32_t n_runs;       /* runs of consecutive phases of one class other than NONE */
    float frame_rate_hz;
    uint16_t *tau;         /* [2m] beat interval in frames, ascending within a family */
    uint32_t *offset;      /* [2m] first slot of each tempo's ring buffer */
    uint16_t *head;        /* [2m] slot holding phase 0 */
    float *prob;           /* [n_states] forward probabilities, ring buffers */
    float *tempo_mass;     /* [2m] summed probability per tempo */
    float *leaving;        /* [2m] scratch: mass of the last phase, about to wrap */
    float *entering;       /* [2m] scratch: mass entering phase 0 */
    float *forward_sum;    /* [m] scratch for the kernel sweeps */
    float *decay;          /* [m] kernel weight between neighbouring tempi j and j + 1 */
    float *row_norm;       /* [m] 1 / row sum of the tempo-change kernel */
    float *beat_prior;     /* [2m] tempo prior paid once per beat */
    float *until_beat;     /* [max tau] scratch: mass by frames until the next beat */
    uint32_t max_tau;
    uint32_t mean_frames;  /* the beat time is the posterior mean within this many frames of its mode */
    uint32_t *run_start;   /* [2m + 1]: tempo k's runs are run_start[k] .. run_start[k+1] - 1 */
    uint16_t *run_phase;   /* [n_runs] first phase of the run (may wrap past tau - 1 to 0) */
    uint8_t *run_len;      /* [n_runs] */
    uint8_t *run_class;    /* [n_runs] */
    uint32_t frames_since_renorm;
} gc_beat_model_t;

typedef struct {
    uint32_t tempo;         /* index of the most probable tempo state */
    uint32_t phase;         /* its most probable phase, 0 = on the beat */
    uint32_t tau;           /* its beat interval in frames */
    float confidence;
    float shift;            /* frames: the beat's posterior mean near that phase, minus it
                               (the beat falls `shift` frames later than `phase` says) */
} gc_beat_state_t;

/* Number of tempo states per family for a frame rate and tempo range. */
uint32_t gc_beat_model_tempi(float frame_rate_hz, float min_bpm, float max_bpm, uint16_t *tau_out);
size_t gc_beat_model_bytes(float frame_rate_hz, float min_bpm, float max_bpm);
void gc_beat_model_init(gc_beat_model_t *model, float frame_rate_hz, float min_bpm, float max_bpm,
                        void *mem);
void gc_beat_model_reset(gc_beat_model_t *model);
/* One frame: strength in [0, 1] is how onset-like this frame is; class_llr (NULL when
   there is none) the position network's log likelihood ratio of each class against NONE. */
void gc_beat_model_step(gc_beat_model_t *model, float strength, const float *class_llr,
                        gc_beat_state_t *out);

#endif
