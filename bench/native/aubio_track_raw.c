/*
 * The reference for bench/native.py: aubio's real-time tempo tracker fed the
 * same raw float32 mono file, hop by hop, exactly as gridcast_track_raw feeds
 * gridcast's. Built against Debian's libaubio-dev by bench/native.py; prints
 * one beat time per line.
 *   aubio_track_raw FILE.f32 SAMPLE_RATE [HOP WIN]
 */
#include <aubio/aubio.h>
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

int main(int argc, char **argv)
{
    uint_t sr, hop = 512, win = 1024, i;
    aubio_tempo_t *tempo;
    fvec_t *in, *out;
    FILE *f;
    float *buf;
    double start_us, took_us, worst_us = 0.0;
    unsigned long hops = 0;
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s FILE.f32 SAMPLE_RATE [HOP WIN]\n", argv[0]);
        return 2;
    }
    sr = (uint_t)strtoul(argv[2], NULL, 10);
    if (argc == 5) {
        hop = (uint_t)strtoul(argv[3], NULL, 10);
        win = (uint_t)strtoul(argv[4], NULL, 10);
    }
    tempo = new_aubio_tempo("default", win, hop, sr);
    in = new_fvec(hop);
    out = new_fvec(2);
    buf = (float *)calloc(hop, sizeof(float));
    f = fopen(argv[1], "rb");
    if (!tempo || !in || !out || !buf || !f) {
        fprintf(stderr, "aubio_track_raw: cannot set up\n");
        return 1;
    }
    while (fread(buf, sizeof(float), hop, f) == hop) {
        for (i = 0; i < hop; i++)
            in->data[i] = buf[i];
        start_us = now_us();
        aubio_tempo_do(tempo, in, out);
        took_us = now_us() - start_us;
        if (took_us > worst_us)
            worst_us = took_us;
        hops++;
        if (out->data[0] != 0)
            printf("%.4f\n", aubio_tempo_get_last_s(tempo));
    }
    fclose(f);
    fprintf(stderr, "hops %lu worst_hop_us %.1f\n", hops, worst_us);
    free(buf);
    del_fvec(in);
    del_fvec(out);
    del_aubio_tempo(tempo);
    return 0;
}
