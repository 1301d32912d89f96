/*
 * The reference for bench/native.py: aubio's real-time tempo tracker fed the
 * same raw float32 mono file, hop by hop, exactly as gridcast_track_raw feeds
 * gridcast's. Built against Debian's libaubio-dev by bench/native.py; prints
 * one beat time per line.
 *   aubio_track_raw FILE.f32 SAMPLE_RATE [HOP WIN]
 */
#include <aubio/aubio.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    uint_t sr, hop = 512, win = 1024, i;
    aubio_tempo_t *tempo;
    fvec_t *in, *out;
    FILE *f;
    float *buf;
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
        aubio_tempo_do(tempo, in, out);
        if (out->data[0] != 0)
            printf("%.4f\n", aubio_tempo_get_last_s(tempo));
    }
    fclose(f);
    free(buf);
    del_fvec(in);
    del_fvec(out);
    del_aubio_tempo(tempo);
    return 0;
}
