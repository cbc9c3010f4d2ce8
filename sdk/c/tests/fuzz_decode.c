/* Fuzz harness for rlay.h's receiving side: framing, the MessagePack decoder, message fields,
   the state table, spaces and value checks.

   The first input byte picks the receiver (role and state); the rest is the byte stream. Then:
   1. the stream is fed to that receiver (must end in an error or cleanly, never crash);
   2. the bytes are decoded as one stand-alone frame; if that succeeds, the canonical
      re-encoding must decode again and re-encode to the very same bytes (idempotence);
   3. a decoded STEP's action is checked against a nested action space, unbatched and as a
      batch of 1 to 3 sub-envs (section 10), a decoded RESET's seed and options are read for a
      batch of 3, and a decoded ENV_INFO's observation space is checked against its other
      fields taken as values (also as batches of 2).
   A violated property aborts (a finding). Build with libFuzzer (make fuzz), or with
   -DRLAY_FUZZ_MAIN to replay files given on the command line with any compiler. */
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

static rlay_ctx *setup(uint32_t num_envs) {
    static const uint32_t s2[1] = {2};
    static const int64_t nvec[2] = {3, 5};
    rlay_ctx *c = rlay_new();
    rlay_w *a = rlay_action_space(c);
    rlay_space_box_uniform(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, s2, -1, 1);
    rlay_space_dict(a, 5);
    rlay_put_key(a, "move"); rlay_space_box_uniform(a, RLAY_DT_FLOAT16, 1, s2, -1, 1);
    rlay_put_key(a, "pick"); rlay_space_discrete(a, 4, -2);
    rlay_put_key(a, "keys"); rlay_space_multi_discrete(a, 1, s2, nvec, NULL);
    rlay_put_key(a, "say"); rlay_space_text(a, 0, 8, "abc");
    rlay_put_key(a, "more"); rlay_space_tuple(a, 2);
    rlay_space_multi_binary(a, 3);
    rlay_space_one_of(a, 2); rlay_space_sequence(a, 0); rlay_space_discrete(a, 2, 0); rlay_space_box_uniform(a, RLAY_DT_INT64, 0, NULL, -9, 9);
    rlay_set_num_envs(c, num_envs);
    if (rlay__prepare(c)) {
        fprintf(stderr, "fuzz setup failed: %s\n", rlay_errmsg(c));
        abort();
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static rlay_ctx *c, *batch;
    unsigned char *once;
    size_t n;
    uint32_t k, which;
    int role, state;
    uint32_t nenv;
    if (!c) { c = setup(1); batch = setup(3); }
    if (size < 1) return 0;
    role = data[0] & 1;
    state = (int)((data[0] >> 1) % 10) - 1;   /* -1: stand-alone, else a state of section 8 */
    nenv = data[0] & 0x80 ? 3 : 1;             /* the num_envs of the receiver's ENV_INFO */
    data++; size--;

    rlay__conform_reject(c, data, size, role, state, nenv);

    if (rlay__conform_roundtrip(c, data, size) != 0) return 0;
    if (c->rkind == RLAY_STEP) {
        int oob = 0;
        rlay__vcheck(c, c->act_sp, rlay_map_get(c->rroot, "action"), 1, &oob);
        for (k = 1; k <= 3; k++) { oob = 0; rlay__bvcheck(c, c->act_sp, rlay_map_get(c->rroot, "action"), k, 1, &oob, &which); }
    } else if (c->rkind == RLAY_RESET) {
        batch->err = 0;
        rlay__reset_args(batch, rlay_map_get(c->rroot, "seed"), rlay_map_get(c->rroot, "options"));
        batch->err = 0;
    } else if (c->rkind == RLAY_ENV_INFO) {   /* any valid space against any value */
        int oob = 0;
        const rlay_value *sp = rlay_map_get(c->rroot, "observation_space");
        rlay__vcheck(c, sp, rlay_map_get(c->rroot, "action_space"), 1, &oob);
        rlay__vcheck(c, sp, rlay_map_get(c->rroot, "metadata"), 1, &oob);
        rlay__vcheck(c, sp, rlay_map_get(c->rroot, "name"), 1, &oob);
        rlay__bvcheck(c, sp, rlay_map_get(c->rroot, "action_space"), 2, 1, &oob, &which);
        rlay__bvcheck(c, sp, rlay_map_get(c->rroot, "metadata"), 2, 1, &oob, &which);
    }
    n = c->flen;
    once = (unsigned char *)malloc(n);
    memcpy(once, c->flat, n);
    if (rlay__conform_roundtrip(c, once, n) != 0) {
        fprintf(stderr, "the canonical re-encoding does not decode: %s: %s\n", rlay_error_name(c->err), rlay_errmsg(c));
        abort();
    }
    if (c->flen != n || memcmp(c->flat, once, n) != 0) {
        fprintf(stderr, "re-encoding is not idempotent (%lu vs %lu bytes)\n", (unsigned long)n, (unsigned long)c->flen);
        abort();
    }
    free(once);
    return 0;
}

#ifdef RLAY_FUZZ_MAIN
int main(int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        unsigned char *buf;
        long len;
        if (!f) { perror(argv[i]); return 1; }
        fseek(f, 0, SEEK_END); len = ftell(f); fseek(f, 0, SEEK_SET);
        buf = (unsigned char *)malloc((size_t)len + 1);
        if (fread(buf, 1, (size_t)len, f) != (size_t)len) { perror(argv[i]); return 1; }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)len);
        free(buf);
    }
    printf("%d inputs replayed\n", argc - 1);
    return 0;
}
#endif
