/*
 * The tracker's learned observation model: from the sound of the last four
 * frames (per band: how much it rose, how loud it is, each against its own
 * running mean), a small network gives the posterior of the frame's metrical
 * position: on a beat, on the half beat, on the first or second third, or
 * none of these. Divided by each position's share of the training frames,
 * that is a likelihood ratio, which the beat model multiplies into its states
 * of that class (Bayes: p(x | c) / p(x | none) = (P(c | x) / P(c)) / (P(none | x) / P(none))).
 *
 * Why: the onset function says where notes start, not which starts are beats.
 * Kick drums, snares, bass notes and hi-hats sit at typical positions; in a
 * 6/8 bar with a kick every three eighths, "beats every two eighths" and
 * "beats every three" explain the onsets equally well, and only what sounds
 * where tells them apart. The network does not count or keep time (the beat
 * model does): it only reads the local sound, so it stays small, stateless
 * apart from its input history, and cheap.
 *
 * One hidden layer of GC_NET_HIDDEN rectified units: about 1,500 multiply-adds
 * and seven logs (the inputs) per frame; the output needs no exp, since the
 * softmax's normaliser cancels in the ratios. The weights are in
 * position_net_weights.h, written by host/training/train_position_net.py.
 */
#include "position_net.h"

#include <math.h>
#include <string.h>

#include "position_net_weights.h"

#define SCALE_S 4.0f
#define EPS 1e-4f
#define INPUT_LIMIT 8.0f /* inputs are clipped to [-8, 8] (a burst after silence) */

void gc_position_net_init(gc_position_net_t *net, float frame_rate_hz)
{
    net->scale_alpha = 1.0f / (SCALE_S * frame_rate_hz + 1.0f);
    gc_position_net_reset(net);
}

void gc_position_net_reset(gc_position_net_t *net)
{
    memset(net->scale, 0, sizeof net->scale);
    memset(net->level, 0, sizeof net->level);
    memset(net->history, 0, sizeof net->history);
    net->frames = 0;
}

static float clip(float v) { return v < -INPUT_LIMIT ? -INPUT_LIMIT : v > INPUT_LIMIT ? INPUT_LIMIT : v; }

static void read_input(gc_position_net_t *net, const float *band_flux, const float *band_level)
{
    uint32_t b;
    float alpha, *f = net->history;
    memmove(net->history + GC_NET_FEATURES, net->history,
            (GC_NET_INPUTS - GC_NET_FEATURES) * sizeof(float));
    net->frames++;
    /* plain mean for the first SCALE_S, then an exponential one */
    alpha = 1.0f / (float)net->frames;
    if (alpha < net->scale_alpha)
        alpha = net->scale_alpha;
    for (b = 0; b < GC_BANDS; b++) {
        float x = band_flux[b] > 0.0f ? band_flux[b] : 0.0f; /* NaN -> 0 */
        net->scale[b] += alpha * (x - net->scale[b]);
        f[b] = clip(logf(1.0f + x / (net->scale[b] + EPS)));
        x = band_level[b] == band_level[b] ? band_level[b] : 0.0f;
        if (net->frames == 1)
            net->level[b] = x;
        net->level[b] += alpha * (x - net->level[b]);
        f[GC_BANDS + b] = clip(x - net->level[b]);
    }
}

void gc_position_net_step(gc_position_net_t *net, const float *band_flux, const float *band_level,
                          float out[GC_CLASSES])
{
    float hidden[GC_NET_HIDDEN], logit[GC_CLASSES];
    uint32_t j, k;
    read_input(net, band_flux, band_level);
    /* Input-major weights: each input adds to all hidden units in one contiguous sweep. */
    for (j = 0; j < GC_NET_HIDDEN; j++)
        hidden[j] = GC_NET_B1[j];
    for (k = 0; k < GC_NET_INPUTS; k++)
        for (j = 0; j < GC_NET_HIDDEN; j++)
            hidden[j] += GC_NET_W1T[k][j] * net->history[k];
    for (j = 0; j < GC_CLASSES; j++)
        logit[j] = GC_NET_B2[j];
    for (k = 0; k < GC_NET_HIDDEN; k++) {
        float h = hidden[k] > 0.0f ? hidden[k] : 0.0f;
        for (j = 0; j < GC_CLASSES; j++)
            logit[j] += GC_NET_W2T[k][j] * h;
    }
    /* log P(c | x) - log P(c), against NONE: the softmax's normaliser cancels. */
    for (j = 0; j < GC_CLASSES; j++) {
        float v = (logit[j] - GC_NET_LOG_PRIOR[j]) - (logit[GC_CLASSES - 1] - GC_NET_LOG_PRIOR[GC_CLASSES - 1]);
        out[j] = v == v ? (v < -20.0f ? -20.0f : v > 20.0f ? 20.0f : v) : 0.0f;
    }
}
