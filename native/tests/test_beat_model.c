/* beat_model.c: the state space, and that a pulse train is followed in tempo and phase. */
#include <math.h>
#include <stdlib.h>

#include "beat_model.h"
#include "check.h"

static void check_state_space(void)
{
    uint16_t tau[64];
    uint32_t m = gc_beat_model_tempi(86.13f, 50.0f, 220.0f, tau), i;
    CHECK(m >= 30 && m <= 48);
    CHECK(tau[0] == (uint16_t)lrintf(60.0f * 86.13f / 220.0f));
    CHECK(tau[m - 1] == (uint16_t)lrintf(60.0f * 86.13f / 50.0f));
    for (i = 1; i < m; i++)
        CHECK(tau[i] > tau[i - 1]); /* ascending, no duplicates */
}

/* An onset-strength pulse as the novelty function makes one: a peak and a short tail. */
static float pulse(uint32_t t, uint32_t period, uint32_t first)
{
    uint32_t d;
    if (t < first)
        return 0.0f;
    d = (t - first) % period;
    return d == 0 ? 1.0f : d == 1 ? 0.6f : d == 2 ? 0.3f : 0.0f;
}

/* Feed pulses every `period` frames (first at frame `first`); return the model after `frames`. */
static void follow(gc_beat_model_t *model, uint32_t period, uint32_t first, uint32_t frames,
                   gc_beat_state_t *st, uint32_t *on_beat, uint32_t *pulses)
{
    uint32_t t;
    *on_beat = 0;
    *pulses = 0;
    for (t = 0; t < frames; t++) {
        int peak = t >= first && (t - first) % period == 0;
        gc_beat_model_step(model, pulse(t, period, first), NULL, st);
        if (peak && t > frames / 2) {
            (*pulses)++;
            if (st->phase <= 1 || st->phase + 1 >= st->tau) /* within a frame of the beat */
                (*on_beat)++;
        }
    }
}

static void check_follows_pulses(void)
{
    float rate = 86.13f;
    size_t bytes = gc_beat_model_bytes(rate, 50.0f, 220.0f);
    void *mem = malloc(bytes);
    gc_beat_model_t model;
    gc_beat_state_t st;
    uint32_t on_beat, pulses, k, m;
    /* Periods on the model's tempo grid (about 3 % apart) over 86..144 BPM, the
       prior's main range; between grid points see check_octave_ambiguity. */
    uint16_t grid[64];
    uint32_t periods[4];
    gc_beat_model_init(&model, rate, 50.0f, 220.0f, mem);
    m = gc_beat_model_tempi(rate, 50.0f, 220.0f, grid);
    for (k = 0; k < 4; k++) {
        uint32_t want = 36 + 8 * k, j, best = 0;
        for (j = 0; j < m; j++)
            if (abs((int)grid[j] - (int)want) < abs((int)grid[best] - (int)want))
                best = j;
        periods[k] = grid[best];
    }
    for (k = 0; k < 4; k++) {
        gc_beat_model_reset(&model);
        follow(&model, periods[k], 7, 1500, &st, &on_beat, &pulses);
        CHECK_MSG(st.tau == periods[k], "period %u: tau %u", periods[k], st.tau);
        CHECK_MSG(on_beat == pulses, "period %u: %u of %u pulses on the beat", periods[k], on_beat,
                  pulses);
        CHECK(st.confidence > 0.5f && st.confidence <= 1.0f);
    }
    free(mem);
}

/* Far from the prior's centre the model may follow the pulse or a level twice as
   fast or slow (the classic octave ambiguity), but nothing else: a fast pulse
   (207 BPM), and a slow one (62 BPM) with eighth notes between the beats. */
static void check_octave_ambiguity(uint32_t period, int with_eighths)
{
    float rate = 86.13f;
    void *mem = malloc(gc_beat_model_bytes(rate, 50.0f, 220.0f));
    gc_beat_model_t model;
    gc_beat_state_t st;
    uint32_t t;
    int tau;
    gc_beat_model_init(&model, rate, 50.0f, 220.0f, mem);
    for (t = 0; t < 2000; t++)
        gc_beat_model_step(&model, pulse(t, period, 5) +
                                       (with_eighths ? 0.5f * pulse(t, period, 5 + period / 2) : 0.0f),
                           NULL, &st);
    tau = (int)st.tau;
    CHECK_MSG(abs(tau - (int)period) <= 3 || abs(2 * tau - (int)period) <= 3 ||
                  abs(tau - 2 * (int)period) <= 3,
              "tau %d for a period of %u", tau, period);
    free(mem);
}

static void check_mass_is_normalised(void)
{
    float rate = 100.0f;
    void *mem = malloc(gc_beat_model_bytes(rate, 60.0f, 180.0f));
    gc_beat_model_t model;
    gc_beat_state_t st;
    uint32_t t, k, i;
    gc_beat_model_init(&model, rate, 60.0f, 180.0f, mem);
    for (t = 0; t < 64; t++) /* a multiple of the renormalisation interval */
        gc_beat_model_step(&model, (t % 50) == 0 ? 0.8f : 0.05f, NULL, &st);
    {
        double total = 0.0, ring_total = 0.0;
        for (k = 0; k < 2 * model.n_tempi; k++)
            total += model.tempo_mass[k];
        for (i = 0; i < model.n_states; i++) {
            CHECK(model.prob[i] > 0.0f && isfinite(model.prob[i]));
            ring_total += model.prob[i];
        }
        CHECK_MSG(fabs(total - 1.0) < 1e-3, "tempo masses sum to %g", total);
        CHECK_MSG(fabs(ring_total - total) < 1e-3 * total, "states %g vs tempo masses %g",
                  ring_total, total);
    }
    free(mem);
}

/* The observation is applied per run of consecutive phases of one class: every run
   lies inside its tempo, runs do not overlap, and the beat run covers phase 0. */
static void check_runs(void)
{
    float rate = 86.13f;
    void *mem = malloc(gc_beat_model_bytes(rate, 50.0f, 220.0f));
    gc_beat_model_t model;
    uint32_t k, c;
    gc_beat_model_init(&model, rate, 50.0f, 220.0f, mem);
    for (k = 0; k < 2 * model.n_tempi; k++) {
        uint32_t tau = model.tau[k], covered = 0, beat_has_zero = 0, p;
        uint8_t seen[512] = {0};
        CHECK(model.run_start[k + 1] - model.run_start[k] == (k < model.n_tempi ? 2u : 3u));
        for (c = model.run_start[k]; c < model.run_start[k + 1]; c++) {
            CHECK(model.run_phase[c] < tau && model.run_len[c] > 0 && model.run_class[c] < 4);
            for (p = 0; p < model.run_len[c]; p++) {
                uint32_t ph = (model.run_phase[c] + p) % tau;
                CHECK_MSG(!seen[ph], "tempo %u: phase %u in two runs", k, ph);
                seen[ph] = 1;
                covered++;
                if (ph == 0 && model.run_class[c] == 0)
                    beat_has_zero = 1;
            }
        }
        CHECK(covered < tau && beat_has_zero);
    }
    free(mem);
}

/* The beat time read out is the posterior mean near the most probable phase: with the
   mass split 0.55 / 0.45 between two neighbouring tempi whose next beats are 9 and 11
   frames away, the mode says 9 frames and the mean 9 + 0.45 * 2 = 9.9. */
static void check_mean_beat_time(void)
{
    float rate = 86.13f;
    void *mem = malloc(gc_beat_model_bytes(rate, 50.0f, 220.0f));
    gc_beat_model_t model;
    gc_beat_state_t st;
    uint32_t a, i, k;
    gc_beat_model_init(&model, rate, 50.0f, 220.0f, mem);
    for (a = 0; a < model.n_tempi && model.tau[a] < 40; a++)
        ;
    for (i = 0; i < model.n_states; i++)
        model.prob[i] = 0.0f;
    for (k = 0; k < 2 * model.n_tempi; k++)
        model.tempo_mass[k] = 0.0f;
    /* after reset every head is 0: phase d of tempo k sits at prob[offset[k] + d]; one
       step advances it by a frame, so 10 and 12 frames to go become 9 and 11 */
    model.prob[model.offset[a] + model.tau[a] - 10] = model.tempo_mass[a] = 0.55f;
    model.prob[model.offset[a + 1] + model.tau[a + 1] - 12] = model.tempo_mass[a + 1] = 0.45f;
    gc_beat_model_step(&model, 0.0f, NULL, &st);
    CHECK_MSG(st.tempo == a && st.phase == model.tau[a] - 9u, "tempo %u phase %u", st.tempo,
              st.phase);
    CHECK_MSG(fabsf(st.shift - 0.9f) < 0.02f, "shift %.3f frames, want 0.9", st.shift);
    free(mem);
}

int main(void)
{
    check_state_space();
    check_follows_pulses();
    check_octave_ambiguity(25, 0);
    check_octave_ambiguity(36, 0); /* between two grid tempi */
    check_octave_ambiguity(83, 1);
    check_mass_is_normalised();
    check_runs();
    check_mean_beat_time();
    return check_report("test_beat_model");
}
