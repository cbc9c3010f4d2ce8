/* A standalone mutation fuzzer for the C SDK's receiving side, for any C compiler: no libFuzzer
   needed (make fuzz-c uses libFuzzer where clang has it). It includes sdk/c/tests/fuzz_decode.c,
   so every input is checked with the very properties of the libFuzzer harness (fed to a receiver
   in a role and state of spec section 8 it must end in an error or cleanly; a frame that decodes
   must re-encode canonically and idempotently; decoded values are checked against spaces), and
   mutates the seed files (the golden vectors' frames, sdk/c/tests/make_seeds.py) with a seeded
   PRNG: byte and bit flips, truncation, lengths spliced into the header and into MessagePack
   length fields, inserted and deleted runs, joined seeds, other message kinds and receivers.

   Build it with -fsanitize=address,undefined (tests/test_fuzz_c.py does):
       cc -std=c99 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all fuzz/c_mutate.c -lm
       ./a.out SECONDS SEED SEED_FILE...
   The last line is "c_mutate: N inputs in S s, no crash (seed K)". A crash (a sanitizer report
   or a violated property, both abort) writes the input to ./c_mutate-crash (the mode byte, then
   the stream: replay it with fuzz_replay, sdk/c/Makefile) and exits non-zero. */
#define _POSIX_C_SOURCE 200809L
#include "../sdk/c/tests/fuzz_decode.c"

#include <signal.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#define MAX_INPUT 65536

static unsigned char input[MAX_INPUT];
static size_t input_len;

static void on_abort(int sig) {
    int fd = open("c_mutate-crash", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, input, input_len);
        (void)w;
        close(fd);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint64_t rng_state;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static size_t below(size_t n) { return n ? (size_t)(next_u64() % n) : 0; }

typedef struct { unsigned char *data; size_t len; } seed_t;

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

/* One mutation of input[1..input_len) (input[0] is the mode byte: which receiver). */
static void mutate_once(const seed_t *seeds, size_t nseeds) {
    static const uint32_t lengths[] = {0, 1, 7, 8, 255, 256, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 64u << 20};
    static const int widths[256] = {
        [0xC4] = 1, [0xC5] = 2, [0xC6] = 4, [0xD9] = 1, [0xDA] = 2, [0xDB] = 4,
        [0xDC] = 2, [0xDD] = 4, [0xDE] = 2, [0xDF] = 4, [0xC7] = 1, [0xC8] = 2, [0xC9] = 4};
    unsigned char *f = input + 1;
    size_t n = input_len - 1, i, k;
    switch (below(10)) {
    case 0: if (n) f[below(n)] = (unsigned char)next_u64(); break;
    case 1: if (n) f[below(n)] ^= (unsigned char)(1u << below(8)); break;
    case 2: if (n) n = below(n); break;
    case 3: /* a length into the header (data length at 4, body length at 8) */
        if (n >= 12) put_le32(f + (below(2) ? 4 : 8), lengths[below(sizeof lengths / sizeof *lengths)]);
        break;
    case 4: /* a length into a MessagePack length field of the body */
        for (k = 0; k < 8 && n > 13; k++) {
            i = 12 + below(n - 12);
            if (widths[f[i]] && i + 1 + (size_t)widths[f[i]] <= n) {
                uint32_t v = lengths[below(sizeof lengths / sizeof *lengths)];
                int w = widths[f[i]], b;
                for (b = 0; b < w; b++) f[i + 1 + (size_t)b] = (unsigned char)(v >> (8 * (w - 1 - b)));
                break;
            }
        }
        break;
    case 5: { /* insert a run of random bytes */
        size_t run = 1 + below(8), at = below(n + 1);
        if (n + run <= MAX_INPUT - 1) {
            memmove(f + at + run, f + at, n - at);
            for (k = 0; k < run; k++) f[at + k] = (unsigned char)next_u64();
            n += run;
        }
        break;
    }
    case 6: if (n) { size_t at = below(n), run = 1 + below(8); if (at + run > n) run = n - at; memmove(f + at, f + at + run, n - at - run); n -= run; } break;
    case 7: { /* join another seed's frame (several frames in one stream) */
        const seed_t *s = &seeds[below(nseeds)];
        size_t add = s->len - 1;
        if (n + add <= MAX_INPUT - 1) { memcpy(f + n, s->data + 1, add); n += add; }
        break;
    }
    case 8: if (n >= 3) f[2] = (unsigned char)(below(4) ? below(20) : next_u64()); break; /* the kind */
    default: input[0] = (unsigned char)next_u64(); break; /* another receiver */
    }
    input_len = n + 1;
}

int main(int argc, char **argv) {
    seed_t *seeds;
    size_t nseeds = 0, runs = 0;
    int i;
    double seconds;
    struct timespec t0, t;
    if (argc < 4) {
        fprintf(stderr, "usage: %s SECONDS SEED SEED_FILE...\n", argv[0]);
        return 2;
    }
    seconds = atof(argv[1]);
    rng_state = strtoull(argv[2], NULL, 10);
    seeds = (seed_t *)calloc((size_t)argc, sizeof *seeds);
    for (i = 3; i < argc; i++) {
        FILE *fp = fopen(argv[i], "rb");
        long len;
        if (!fp) { perror(argv[i]); return 2; }
        fseek(fp, 0, SEEK_END); len = ftell(fp); fseek(fp, 0, SEEK_SET);
        if (len >= 1 && len < MAX_INPUT) {
            seeds[nseeds].data = (unsigned char *)malloc((size_t)len);
            if (fread(seeds[nseeds].data, 1, (size_t)len, fp) != (size_t)len) { perror(argv[i]); return 2; }
            seeds[nseeds++].len = (size_t)len;
        }
        fclose(fp);
    }
    if (!nseeds) { fprintf(stderr, "no usable seed files\n"); return 2; }
    signal(SIGABRT, on_abort);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        const seed_t *s = &seeds[below(nseeds)];
        size_t rounds = 1 + below(4), r;
        memcpy(input, s->data, s->len);
        input_len = s->len;
        for (r = 0; r < rounds; r++) mutate_once(seeds, nseeds);
        LLVMFuzzerTestOneInput(input, input_len);
        runs++;
        if ((runs & 63) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds) break;
        }
    }
    printf("c_mutate: %lu inputs in %g s, no crash (seed %s)\n", (unsigned long)runs, seconds, argv[2]);
    for (i = 0; i < (int)nseeds; i++) free(seeds[i].data);
    free(seeds);
    return 0;
}
