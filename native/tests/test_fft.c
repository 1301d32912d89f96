/* fft.c: the power spectrum matches a direct DFT. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "fft.h"

static void check_size(uint32_t n)
{
    gc_fft_t fft;
    void *mem = malloc(gc_fft_bytes(n));
    float *x = malloc(n * sizeof(float)), *win = malloc(n * sizeof(float));
    float *power = malloc((n / 2 + 1) * sizeof(float));
    uint32_t k, i;
    double max_err = 0.0, peak = 0.0;
    gc_fft_init(&fft, n, mem);
    for (i = 0; i < n; i++) {
        x[i] = rng_uniform();
        win[i] = 0.5f + 0.5f * rng_uniform(); /* any window must work */
    }
    gc_fft_power(&fft, x, win, power);
    for (k = 0; k <= n / 2; k++) {
        double re = 0.0, im = 0.0, ref;
        for (i = 0; i < n; i++) {
            double a = -2.0 * 3.14159265358979323846 * (double)k * (double)i / (double)n;
            re += (double)x[i] * win[i] * cos(a);
            im += (double)x[i] * win[i] * sin(a);
        }
        ref = re * re + im * im;
        if (ref > peak)
            peak = ref;
        if (fabs(ref - power[k]) > max_err)
            max_err = fabs(ref - power[k]);
    }
    /* float32 FFT: errors relative to the spectrum's peak stay near 1e-6 */
    CHECK_MSG(max_err <= 1e-4 * peak, "n=%u max error %g, peak %g", n, max_err, peak);
    free(mem);
    free(x);
    free(win);
    free(power);
}

static void check_sine_lands_in_its_bin(void)
{
    uint32_t n = 1024, i, k, best = 0;
    gc_fft_t fft;
    void *mem = malloc(gc_fft_bytes(n));
    float x[1024], win[1024], power[513];
    gc_fft_init(&fft, n, mem);
    for (i = 0; i < n; i++) {
        x[i] = sinf(2.0f * 3.14159265f * 37.0f * (float)i / (float)n);
        win[i] = 1.0f;
    }
    gc_fft_power(&fft, x, win, power);
    for (k = 1; k <= n / 2; k++)
        if (power[k] > power[best])
            best = k;
    CHECK(best == 37);
    /* |X| = n/2 for a unit sine on an exact bin */
    CHECK(fabsf(sqrtf(power[37]) - 512.0f) < 0.05f);
    free(mem);
}

int main(void)
{
    check_size(16);
    check_size(64);
    check_size(512);
    check_size(2048);
    check_sine_lands_in_its_bin();
    return check_report("test_fft");
}
