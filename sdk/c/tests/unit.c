/* Unit tests of rlay.h: one line per expected encoding, decoding, refusal or check.
   Prints each failure and a closing "N passed, M failed"; exits 1 on any failure. */
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

#include <sys/time.h>

static int passed, failed;
static rlay_ctx *C;
static rlay_w *W;   /* one-value writer (like rlay_obs), tensors referenced */

static void fail_at(int line, const char *what, const char *why) {
    printf("FAIL line %d: %s: %s\n", line, what, why);
    failed++;
}
static void hex(char *out, const unsigned char *p, size_t n) {
    size_t i;
    for (i = 0; i < n && i < 200; i++) sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * (n < 200 ? n : 200)] = 0;
}
static void clear_err(void) { C->err = 0; C->errmsg[0] = 0; C->err_from_peer = 0; }
static void fresh(void) { rlay__w_reset(W); clear_err(); }

/* bytes written by `stmts` == `want` (hex), with no error */
static void check_bytes(int line, const char *what, const char *want) {
    char got[512];
    hex(got, W->buf, W->len);
    if (C->err) fail_at(line, what, C->errmsg);
    else if (strcmp(got, want) != 0) {
        char why[2000];
        snprintf(why, sizeof why, "wrote %s, expected %s", got, want);
        fail_at(line, what, why);
    } else passed++;
    fresh();
}
#define ENC(stmts, want) do { fresh(); stmts; check_bytes(__LINE__, #stmts, want); } while (0)

/* `stmts` must fail with `code` (API misuse is RLAY_E_USAGE) */
static void check_err(int line, const char *what, int code) {
    if (C->err == code) passed++;
    else {
        char why[2000];
        snprintf(why, sizeof why, "error %s (%s), expected %s", rlay_error_name(C->err), C->errmsg, rlay_error_name(code));
        fail_at(line, what, why);
    }
    fresh();
}
#define ERR(stmts, code) do { fresh(); stmts; check_err(__LINE__, #stmts, code); } while (0)

static unsigned char *unhex(const char *s, size_t *n) {
    size_t len = strlen(s), i;
    unsigned char *out = (unsigned char *)malloc(len / 2 + 1);
    for (i = 0; i < len / 2; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    *n = len / 2;
    return out;
}
static rlay__doc D;
static unsigned char *keep;   /* the last decoded body: values point into it */
static void put_nils(rlay_w *w, int n) { while (n-- > 0) rlay_put_nil(w); }
/* A Discrete descriptor of any dtype (the builder makes int64 ones). */
static void put_discrete(rlay_w *w, int64_t n, int64_t start, const char *dtype) {
    rlay_put_map(w, 4);
    rlay_put_key(w, "kind"); rlay_put_str(w, "discrete");
    rlay_put_key(w, "n"); rlay_put_int(w, n);
    rlay_put_key(w, "start"); rlay_put_int(w, start);
    rlay_put_key(w, "dtype"); rlay_put_str(w, dtype);
}
/* A graph value: 3 nodes, `em` edges and `lm` edge links (-1: nil). */
static void put_graph(rlay_w *w, int em, int lm) {
    static const int64_t nodes[3] = {0, 1, 1}, lk[4] = {0, 1, 1, 2};
    uint32_t s3[1] = {3}, es[1], ls[2];
    es[0] = (uint32_t)em; ls[0] = (uint32_t)lm; ls[1] = 2;
    rlay_put_map(w, 3);
    rlay_put_key(w, "nodes"); rlay_put_tensor(w, RLAY_DT_INT64, 1, s3, nodes);
    rlay_put_key(w, "edges"); if (em >= 0) rlay_put_tensor(w, RLAY_DT_INT64, 1, es, lk); else rlay_put_nil(w);
    rlay_put_key(w, "edge_links"); if (lm >= 0) rlay_put_tensor(w, RLAY_DT_INT64, 2, ls, lk); else rlay_put_nil(w);
}
static void nest_arrays(rlay_w *w, int n) { while (n-- > 0) rlay_put_array(w, 1); }
static unsigned char dbuf[64];

/* Decodes a body (hex) with the data section dbuf[0..dlen); returns the error code. */
static int decode_hex(const char *body, size_t dlen, const rlay_value **root) {
    size_t n;
    unsigned char *p = unhex(body, &n);
    int r;
    free(keep); keep = p;   /* values point into the body until the next call */
    clear_err();
    r = rlay__decode(C, &D, p, n, dbuf, dlen, 0, root);
    return r;
}
#define DEC_ERR(body, code) do { const rlay_value *v_; int r_ = decode_hex(body, 0, &v_); \
    if (r_ == (code)) passed++; else { char w_[2000]; snprintf(w_, sizeof w_, "got %s (%s), expected %s", rlay_error_name(r_), C->errmsg, rlay_error_name(code)); fail_at(__LINE__, body, w_); } } while (0)
#define DEC_OK(body, cond) do { const rlay_value *v; int r_ = decode_hex(body, sizeof dbuf, &v); \
    if (r_) fail_at(__LINE__, body, C->errmsg); else if (!(cond)) fail_at(__LINE__, body, "decoded value is not " #cond); else passed++; } while (0)
#define CHECK(cond) do { if (cond) passed++; else fail_at(__LINE__, #cond, "false"); } while (0)

/* A space or value written into a copying writer, framed and decoded again (with its data). */
static rlay_w *SW, *VW;   /* copying writers: a space, and a value checked against it */
static unsigned char *sframe[2];
static const rlay_value *decode_writer(rlay_w *w, rlay__doc *d, int slot) {
    const rlay_value *v = NULL;
    rlay_w *b = C->w_body;
    rlay__w_reset(b);
    rlay__splice(b, w);
    if (rlay__frame(C, RLAY_CALL_RESULT, b) || rlay__flatten(C)) return NULL;
    unsigned char *f;
    free(sframe[slot]);
    f = sframe[slot] = (unsigned char *)malloc(C->flen);
    memcpy(f, C->flat, C->flen);
    if (rlay__decode(C, d, f + 12 + rlay__rd32le(f + 4), rlay__rd32le(f + 8), f + 12, rlay__rd32le(f + 4), 0, &v)) return NULL;
    return v;
}
static rlay__doc SD, VD;
/* value check of `value` (written by vstmts) against `space` (written by sstmts) */
static int vcheck(int bounds, int *oob) {
    const rlay_value *sp = decode_writer(SW, &SD, 0), *v;
    *oob = 0;
    if (!sp || rlay__check_space(C, sp, "test")) return -99;
    if (!(v = decode_writer(VW, &VD, 1))) return -98;
    return rlay__vcheck(C, sp, v, bounds, oob);
}
#define VCHECK(sstmts, vstmts, want_struct, want_oob) do { int oob_, r_; fresh(); rlay__w_reset(SW); rlay__w_reset(VW); \
    { rlay_w *w = SW; sstmts; } { rlay_w *w = VW; vstmts; } r_ = vcheck(1, &oob_); \
    if (r_ == (want_struct) && oob_ == (want_oob)) passed++; \
    else { char w_[2000]; snprintf(w_, sizeof w_, "structure %d oob %d (want %d %d): %s %s", r_, oob_, want_struct, want_oob, C->vmsg, C->errmsg); fail_at(__LINE__, #sstmts " / " #vstmts, w_); } \
    fresh(); } while (0)
/* the same for a batch of n (section 10): a value of batch_space(space, n); `which` is the sub-env
   of the out-of-bounds finding */
static int bvcheck(uint32_t n, int *oob, uint32_t *which) {
    const rlay_value *sp = decode_writer(SW, &SD, 0), *v;
    *oob = 0; *which = 999;
    if (!sp || rlay__check_space(C, sp, "test")) return -99;
    if (!(v = decode_writer(VW, &VD, 1))) return -98;
    return rlay__bvcheck(C, sp, v, n, 1, oob, which);
}
#define BVCHECK(n, sstmts, vstmts, want_struct, want_oob, want_which) do { int oob_, r_; uint32_t which_; fresh(); \
    rlay__w_reset(SW); rlay__w_reset(VW); { rlay_w *w = SW; sstmts; } { rlay_w *w = VW; vstmts; } r_ = bvcheck(n, &oob_, &which_); \
    if (r_ == (want_struct) && oob_ == (want_oob) && (!oob_ || r_ || which_ == (uint32_t)(want_which))) passed++; \
    else { char w_[2000]; snprintf(w_, sizeof w_, "structure %d oob %d sub-env %u (want %d %d %d): %s %s", r_, oob_, which_, \
                                   want_struct, want_oob, want_which, C->vmsg, C->errmsg); fail_at(__LINE__, #sstmts " / " #vstmts, w_); } \
    fresh(); } while (0)
#define SPACE_ERR(sstmts, code) do { const rlay_value *sp_; fresh(); rlay__w_reset(SW); { rlay_w *w = SW; sstmts; } \
    sp_ = decode_writer(SW, &SD, 0); if (sp_) rlay__check_space(C, sp_, "test"); check_err(__LINE__, #sstmts, code); } while (0)

/* ---- a live loop-style session over loopback TCP, driven by a raw agent in this thread ---- */
static rlay_ctx *A;        /* the agent's encoder and decoder */
static rlay__doc AD;
static unsigned char *abuf;

static long ms_now(void) { return rlay__now_ms(); }
/* Sends the message in A->w_body; bytewise: one byte at a time, polling the env in between. */
static void agent_send(int fd, int kind, rlay_ctx *env, int bytewise) {
    rlay_cmd cmd;
    size_t i;
    if (rlay__frame(A, kind, A->w_body) || rlay__flatten(A)) { printf("agent encode failed: %s\n", A->errmsg); return; }
    if (!bytewise) { if (send(fd, A->flat, A->flen, 0) != (long)A->flen) printf("agent send failed\n"); return; }
    for (i = 0; i < A->flen; i++) {
        if (send(fd, A->flat + i, 1, 0) != 1) printf("agent send failed\n");
        if (i + 1 < A->flen && rlay_poll(env, &cmd, 0) != 0) { printf("poll(0) did not return 0 inside a frame\n"); failed++; }
    }
}
static int read_all(int fd, unsigned char *p, size_t n) {
    while (n) { long r = recv(fd, p, n, 0); if (r <= 0) return -1; p += r; n -= (size_t)r; }
    return 0;
}
/* Reads one frame from the env; returns its decoded body (NULL at end of stream). */
static const rlay_value *agent_read(int fd, int *kind) {
    unsigned char h[12];
    uint32_t dl, bl;
    const rlay_value *root;
    if (read_all(fd, h, 12)) return NULL;
    dl = rlay__rd32le(h + 4); bl = rlay__rd32le(h + 8);
    free(abuf); abuf = (unsigned char *)malloc(dl + bl + 1);
    if (h[0] != 'R' || h[1] != 'L' || read_all(fd, abuf, dl + bl)) return NULL;
    A->err = 0;
    if (rlay__decode(A, &AD, abuf + dl, bl, abuf, dl, 0, &root)) return NULL;
    *kind = h[2];
    return root;
}
static int64_t field_int(const rlay_value *b, const char *k) { int64_t v = -999; rlay_as_int64(rlay_map_get(b, k), &v); return v; }

/* Section 18: a multi-agent context must declare Dicts with the same agents, and one env. */
static void multi_agent_misuse_test(void) {
    static const uint32_t two[1] = {2};
    rlay_ctx *e = rlay_new();
    rlay_space_box_uniform(rlay_observation_space(e), RLAY_DT_FLOAT32, 1, two, -1, 1);   /* not a Dict */
    rlay_space_discrete(rlay_action_space(e), 3, 0);
    rlay_set_multi_agent(e, 1);
    CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == RLAY_E_USAGE && strstr(rlay_errmsg(e), "Dicts"));
    rlay_free(e);
    e = rlay_new();   /* the same agents, in another order */
    rlay_space_dict(rlay_observation_space(e), 2);
    rlay_put_key(rlay_observation_space(e), "a"); rlay_space_discrete(rlay_observation_space(e), 2, 0);
    rlay_put_key(rlay_observation_space(e), "b"); rlay_space_discrete(rlay_observation_space(e), 2, 0);
    rlay_space_dict(rlay_action_space(e), 2);
    rlay_put_key(rlay_action_space(e), "b"); rlay_space_discrete(rlay_action_space(e), 2, 0);
    rlay_put_key(rlay_action_space(e), "a"); rlay_space_discrete(rlay_action_space(e), 2, 0);
    rlay_set_multi_agent(e, 1);
    CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == RLAY_E_USAGE && strstr(rlay_errmsg(e), "same order"));
    rlay_free(e);
    e = rlay_new();   /* batched sub-envs and multi-agent do not mix */
    rlay_space_dict(rlay_observation_space(e), 1);
    rlay_put_key(rlay_observation_space(e), "a"); rlay_space_discrete(rlay_observation_space(e), 2, 0);
    rlay_space_dict(rlay_action_space(e), 1);
    rlay_put_key(rlay_action_space(e), "a"); rlay_space_discrete(rlay_action_space(e), 2, 0);
    rlay_set_multi_agent(e, 1);
    rlay_set_num_envs(e, 2);
    CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == RLAY_E_USAGE && strstr(rlay_errmsg(e), "num_envs"));
    CHECK(rlay_num_agents(e) == 0 && rlay_agent(e, 0) == NULL);
    rlay_free(e);
}

static void session_test(void) {
    static const uint32_t two[1] = {2};
    static const float obs[2] = {0.5f, -0.25f};
    static const double obs64[2] = {0.5, -0.25};
    rlay_ctx *e = rlay_new();
    rlay_cmd cmd;
    const rlay_value *b;
    struct sockaddr_in sa;
    struct timeval tv;
    int fd, kind = 0, port;
    long t0;
    double x = 0;
    A = rlay_new();
    rlay_space_box_uniform(rlay_observation_space(e), RLAY_DT_FLOAT32, 1, two, -1, 1);
    rlay_space_discrete(rlay_action_space(e), 3, 0);
    CHECK(rlay_poll(e, &cmd, 0) < 0 && rlay_error(e) == RLAY_E_USAGE);   /* poll before listen */
    rlay_free(e);
    e = rlay_new();
    rlay_space_box_uniform(rlay_observation_space(e), RLAY_DT_FLOAT32, 1, two, -1, 1);
    rlay_space_discrete(rlay_action_space(e), 3, 0);
    CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == 0);
    CHECK(strncmp(rlay_address(e), "tcp://127.0.0.1:", 16) == 0);
    t0 = ms_now();
    CHECK(rlay_poll(e, &cmd, 0) == 0 && ms_now() - t0 < 100);    /* no agent yet: returns at once */
    t0 = ms_now();
    CHECK(rlay_poll(e, &cmd, 50) == 0 && ms_now() - t0 >= 40);   /* the timeout is honoured */

    port = atoi(strrchr(rlay_address(e), ':') + 1);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    tv.tv_sec = 5; tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET; sa.sin_port = htons((uint16_t)port); sa.sin_addr.s_addr = htonl(0x7f000001);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(rlay_poll(e, &cmd, 200) == 0);                           /* accepts, sends HELLO */
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_HELLO && rlay_str_eq(rlay_map_get(b, "role"), "env") && rlay_str_eq(rlay_map_get(b, "sdk"), "rlay-c"));

    /* the agent's HELLO, one byte at a time: poll(0) never blocks and never returns early */
    rlay__w_reset(A->w_body);
    rlay__e_map(A->w_body, 6);
    rlay__e_str(A->w_body, "protocol"); rlay__e_str(A->w_body, "rlay");
    rlay__e_str(A->w_body, "version"); rlay__e_int(A->w_body, 1);
    rlay__e_str(A->w_body, "role"); rlay__e_str(A->w_body, "agent");
    rlay__e_str(A->w_body, "sdk"); rlay__e_str(A->w_body, "unit");
    rlay__e_str(A->w_body, "sdk_version"); rlay__e_str(A->w_body, "0");
    rlay__e_str(A->w_body, "capabilities"); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_HELLO, e, 1);
    CHECK(rlay_poll(e, &cmd, 100) == 0);                           /* answers with ENV_INFO */
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_ENV_INFO && field_int(b, "num_envs") == 1 && rlay_map_get(b, "render_mode")->type == RLAY_T_NIL);

    /* STEP before RESET: the SDK answers RESET_NEEDED itself, the session goes on */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "action"); rlay__e_int(A->w_body, 1);
    agent_send(fd, RLAY_STEP, e, 0);
    CHECK(rlay_poll(e, &cmd, 100) == 0);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_RESET_NEEDED && rlay_map_get(b, "fatal")->v.b == 0);

    /* RESET with a seed and options */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_int(A->w_body, 7);
    rlay__e_str(A->w_body, "options"); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "x"); rlay__e_float(A->w_body, 1.5);
    agent_send(fd, RLAY_RESET, e, 1);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_RESET && cmd.has_seed && cmd.seed == 7);
    CHECK(rlay_as_double(rlay_map_get(cmd.options, "x"), &x) && x == 1.5);
    CHECK(rlay_poll(e, &cmd, 0) == 0);                             /* a reply is owed: nothing new */
    CHECK(rlay_reply_step(e, 0, 0, 0) == RLAY_E_USAGE);           /* the wrong reply ends the session... */
    b = agent_read(fd, &kind);                                     /* ...and tells the agent why */
    CHECK(b && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_INTERNAL && rlay_map_get(b, "fatal")->v.b == 1);
    CHECK(agent_read(fd, &kind) == NULL);                          /* then closes */
    CHECK(rlay_poll(e, &cmd, 0) < 0 && strstr(rlay_errmsg(e), "rlay_reply_step") != NULL);
    close(fd);
    rlay_free(e);

    /* a second session: replies, INVALID_ACTION, ENV_EXCEPTION, and a wrong observation */
    e = rlay_new();
    rlay_space_box_uniform(rlay_observation_space(e), RLAY_DT_FLOAT32, 1, two, -1, 1);
    rlay_space_discrete(rlay_action_space(e), 3, 0);
    CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == 0);
    port = atoi(strrchr(rlay_address(e), ':') + 1);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sa.sin_port = htons((uint16_t)port);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    rlay__w_reset(A->w_body);
    rlay__e_map(A->w_body, 6);
    rlay__e_str(A->w_body, "protocol"); rlay__e_str(A->w_body, "rlay");
    rlay__e_str(A->w_body, "version"); rlay__e_int(A->w_body, 1);
    rlay__e_str(A->w_body, "role"); rlay__e_str(A->w_body, "agent");
    rlay__e_str(A->w_body, "sdk"); rlay__e_str(A->w_body, "unit");
    rlay__e_str(A->w_body, "sdk_version"); rlay__e_str(A->w_body, "0");
    rlay__e_str(A->w_body, "capabilities"); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_HELLO, e, 0);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_nil(A->w_body); rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);                              /* pipelined after HELLO */
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_RESET && !cmd.has_seed && cmd.options == NULL);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 1, two, obs);
    rlay_put_key(rlay_info(e), "lives"); rlay_put_int(rlay_info(e), 3);
    CHECK(rlay_reply_reset(e) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_HELLO);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_ENV_INFO);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_RESET_RESULT && rlay_map_get(b, "obs")->type == RLAY_T_TENSOR &&
          rlay_tensor_get(rlay_map_get(b, "obs")->v.t, 1) == -0.25 && field_int(rlay_map_get(b, "info"), "lives") == 3);
    /* out of Discrete(3): INVALID_ACTION, non-fatal, answered by the SDK */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "action"); rlay__e_int(A->w_body, 3);
    agent_send(fd, RLAY_STEP, e, 0);
    CHECK(rlay_poll(e, &cmd, 100) == 0);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_INVALID_ACTION && rlay_map_get(b, "fatal")->v.b == 0);
    /* the env's own failure: ENV_EXCEPTION with a type name and a (C: empty) traceback */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "action"); rlay__e_int(A->w_body, 2);
    agent_send(fd, RLAY_STEP, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_STEP && cmd.action->type == RLAY_T_INT && cmd.action->v.u == 2);
    CHECK(rlay_reply_error(e, RLAY_E_ENV_EXCEPTION, 0, "ValueError", "bad %s", "move") == 0);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_ERROR && field_int(b, "code") == 32 && rlay_str_eq(rlay_map_get(b, "remote_type"), "ValueError") &&
          rlay_str_eq(rlay_map_get(b, "message"), "bad move") && rlay_str_eq(rlay_map_get(b, "traceback"), ""));
    /* RENDER without a render mode: NOT_SUPPORTED */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_RENDER, e, 0);
    CHECK(rlay_poll(e, &cmd, 100) == 0);
    CHECK((b = agent_read(fd, &kind)) && field_int(b, "code") == RLAY_E_NOT_SUPPORTED);
    /* a float64 observation for a float32 Box: BAD_VALUE, fatal, both sides told */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "action"); rlay__e_int(A->w_body, 0);
    agent_send(fd, RLAY_STEP, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT64, 1, two, obs64);
    CHECK(rlay_reply_step(e, 1.0, 0, 0) == RLAY_E_BAD_VALUE && strstr(rlay_errmsg(e), "float32") != NULL);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_BAD_VALUE && rlay_map_get(b, "fatal")->v.b == 1);
    CHECK(agent_read(fd, &kind) == NULL);
    close(fd);
    rlay_free(e);

    /* a third: the agent closes between commands; CLOSE is answered and ends cleanly */
    e = rlay_new();
    rlay_space_discrete(rlay_observation_space(e), 2, 0);
    rlay_space_discrete(rlay_action_space(e), 2, 0);
    CHECK(rlay_listen(e, "unix:///tmp/rlay-unit-test.sock") == 0 && strcmp(rlay_address(e), "unix:///tmp/rlay-unit-test.sock") == 0);
    {
        struct sockaddr_un su;
        memset(&su, 0, sizeof su);
        su.sun_family = AF_UNIX;
        strcpy(su.sun_path, "/tmp/rlay-unit-test.sock");
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        CHECK(connect(fd, (struct sockaddr *)&su, sizeof su) == 0);
    }
    rlay__w_reset(A->w_body);
    rlay__e_map(A->w_body, 6);
    rlay__e_str(A->w_body, "protocol"); rlay__e_str(A->w_body, "rlay");
    rlay__e_str(A->w_body, "version"); rlay__e_int(A->w_body, 1);
    rlay__e_str(A->w_body, "role"); rlay__e_str(A->w_body, "agent");
    rlay__e_str(A->w_body, "sdk"); rlay__e_str(A->w_body, "unit");
    rlay__e_str(A->w_body, "sdk_version"); rlay__e_str(A->w_body, "0");
    rlay__e_str(A->w_body, "capabilities"); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_HELLO, e, 0);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_CLOSE, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_CLOSE);
    CHECK(access("/tmp/rlay-unit-test.sock", F_OK) != 0);           /* the socket file is gone once accepted */
    CHECK(rlay_reply_default(e, &cmd) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_HELLO);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_ENV_INFO);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_CLOSE_RESULT && b->len == 0);
    CHECK(agent_read(fd, &kind) == NULL);
    CHECK(rlay_poll(e, &cmd, 0) < 0 && rlay_error(e) == RLAY_OK);    /* a clean end */
    close(fd);
    rlay_free(e);
    rlay__doc_free(&AD);
    free(abuf);
    rlay_free(A);
}

/* ---- a batch of 3 sub-envs (section 10) over loopback: Discrete(3) actions, Box (2,) observations ---- */
static void agent_hello(int fd, rlay_ctx *e) {
    rlay__w_reset(A->w_body);
    rlay__e_map(A->w_body, 6);
    rlay__e_str(A->w_body, "protocol"); rlay__e_str(A->w_body, "rlay");
    rlay__e_str(A->w_body, "version"); rlay__e_int(A->w_body, 1);
    rlay__e_str(A->w_body, "role"); rlay__e_str(A->w_body, "agent");
    rlay__e_str(A->w_body, "sdk"); rlay__e_str(A->w_body, "unit");
    rlay__e_str(A->w_body, "sdk_version"); rlay__e_str(A->w_body, "0");
    rlay__e_str(A->w_body, "capabilities"); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_HELLO, e, 0);
}
/* A listening env hosting 3 sub-envs, an agent connected and greeted (HELLO and ENV_INFO read). */
static rlay_ctx *batch_env(int *fd, const rlay_value **info) {
    static const uint32_t two[1] = {2};
    rlay_ctx *e = rlay_new();
    struct sockaddr_in sa;
    struct timeval tv;
    rlay_cmd cmd;
    int kind = 0;
    rlay_space_box_uniform(rlay_observation_space(e), RLAY_DT_FLOAT32, 1, two, -1, 1);
    rlay_space_discrete(rlay_action_space(e), 3, 0);
    rlay_set_num_envs(e, 3);
    CHECK(rlay_num_envs(e) == 3);
    CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == 0);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    tv.tv_sec = 5; tv.tv_usec = 0;
    setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET; sa.sin_port = htons((uint16_t)atoi(strrchr(rlay_address(e), ':') + 1));
    sa.sin_addr.s_addr = htonl(0x7f000001);
    CHECK(connect(*fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    agent_hello(*fd, e);
    CHECK(rlay_poll(e, &cmd, 200) == 0);
    CHECK(agent_read(*fd, &kind) && kind == RLAY_HELLO);
    *info = agent_read(*fd, &kind);
    CHECK(*info && kind == RLAY_ENV_INFO);
    return e;
}
static void agent_step(int fd, rlay_ctx *e, int dtype, uint32_t n, const void *actions) {
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "action");
    rlay__e_tensor(A->w_body, dtype, 1, &n, actions, n * (size_t)rlay_dtype_size(dtype));
    agent_send(fd, RLAY_STEP, e, 0);
}
static int tensor_is(const rlay_value *v, int dtype, uint32_t n) {
    return v && v->type == RLAY_T_TENSOR && v->v.t->dtype == dtype && v->v.t->ndim == 1 && v->v.t->shape[0] == n;
}
static void batch_session_test(void) {
    static const uint32_t s32[2] = {3, 2}, two[1] = {2};
    static const float obs[6] = {0.5f, -0.5f, 0, 0, 1, -1};
    static const double rew[3] = {1.0, 0.5, -2.0};
    static const unsigned char term[3] = {0, 7, 0}, trunc[3] = {0, 0, 1};
    static const int64_t act[3] = {0, 1, 2}, bad[3] = {0, 1, 3};
    static const int32_t act32[3] = {0, 1, 2};
    static const unsigned char mask[3] = {1, 0, 1};
    const rlay_value *b, *info;
    rlay_cmd cmd;
    int fd, kind = 0;
    int64_t a = -1;
    rlay_ctx *e;
    A = rlay_new();
    memset(&AD, 0, sizeof AD); abuf = NULL;   /* session_test freed them */

    /* ENV_INFO says 3 sub-envs and the default autoreset mode; seeds s + i; the action batched */
    e = batch_env(&fd, &info);
    CHECK(field_int(info, "num_envs") == 3 && rlay_str_eq(rlay_map_get(rlay_map_get(info, "metadata"), "autoreset_mode"), "next_step"));
    agent_step(fd, e, RLAY_DT_INT64, 3, act);                       /* before RESET: RESET_NEEDED */
    CHECK(rlay_poll(e, &cmd, 100) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_RESET_NEEDED);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_int(A->w_body, 7); rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_RESET && cmd.has_seed && cmd.seed == 7);
    CHECK(cmd.seeded[0] && cmd.seeded[1] && cmd.seeded[2] && cmd.seeds[0] == 7 && cmd.seeds[1] == 8 && cmd.seeds[2] == 9);
    CHECK(cmd.reset_mask[0] && cmd.reset_mask[1] && cmd.reset_mask[2]);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_reset(e) == 0);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_RESET_RESULT && rlay_map_get(b, "obs")->type == RLAY_T_TENSOR && rlay_map_get(b, "obs")->v.t->ndim == 2);
    agent_step(fd, e, RLAY_DT_INT64, 3, act);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_STEP && rlay_as_int64_at(cmd.action, 2, &a) && a == 2);
    CHECK(!cmd.autoreset[0] && !cmd.autoreset[1] && !cmd.autoreset[2]);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    rlay_put_key(rlay_info(e), "x"); rlay_put_tensor(rlay_info(e), RLAY_DT_INT64, 1, (const uint32_t[]){3}, act);
    rlay_put_key(rlay_info(e), "_x"); rlay_put_tensor(rlay_info(e), RLAY_DT_BOOL, 1, (const uint32_t[]){3}, mask);
    CHECK(rlay_reply_step_batch(e, rew, term, trunc) == 0);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_STEP_RESULT && tensor_is(rlay_map_get(b, "reward"), RLAY_DT_FLOAT64, 3) &&
          rlay_tensor_get(rlay_map_get(b, "reward")->v.t, 2) == -2.0);
    CHECK(tensor_is(rlay_map_get(b, "terminated"), RLAY_DT_BOOL, 3) && rlay_tensor_get(rlay_map_get(b, "terminated")->v.t, 1) == 1.0 &&
          tensor_is(rlay_map_get(b, "truncated"), RLAY_DT_BOOL, 3) && rlay_tensor_get(rlay_map_get(b, "truncated")->v.t, 2) == 1.0);
    CHECK(tensor_is(rlay_map_get(rlay_map_get(b, "info"), "_x"), RLAY_DT_BOOL, 3));
    /* the next STEP knows which sub-envs ended; one out of Discrete(3) is named */
    agent_step(fd, e, RLAY_DT_INT64, 3, bad);
    CHECK(rlay_poll(e, &cmd, 100) == 0);
    b = agent_read(fd, &kind);
    CHECK(b && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_INVALID_ACTION && rlay_map_get(b, "fatal")->v.b == 0);
    CHECK(b && strstr(rlay_map_get(b, "message")->v.s, "sub-env 2") != NULL);
    agent_step(fd, e, RLAY_DT_INT64, 3, act);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && !cmd.autoreset[0] && cmd.autoreset[1] && cmd.autoreset[2]);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_step_batch(e, rew, trunc, trunc) == 0);       /* sub-env 2 ends again */
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_STEP_RESULT);
    /* a partial reset with seeds per sub-env clears only the sub-envs it resets */
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_array(A->w_body, 3); rlay__e_nil(A->w_body); rlay__e_int(A->w_body, 5); rlay__e_int(A->w_body, 6);
    rlay__e_str(A->w_body, "options"); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "reset_mask");
    rlay__e_tensor(A->w_body, RLAY_DT_BOOL, 1, (const uint32_t[]){3}, (const unsigned char[]){0, 1, 0}, 3);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_RESET && !cmd.has_seed && !cmd.seeded[0] && cmd.seeded[1] && cmd.seeds[2] == 6);
    CHECK(!cmd.reset_mask[0] && cmd.reset_mask[1] && !cmd.reset_mask[2] && rlay_map_get(cmd.options, "reset_mask") != NULL);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_reset(e) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_RESET_RESULT);
    agent_step(fd, e, RLAY_DT_INT64, 3, act);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && !cmd.autoreset[0] && !cmd.autoreset[1] && cmd.autoreset[2]);
    /* CALL and RENDER answers are one value per sub-env; the wrong count is refused */
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_step_batch(e, rew, mask, mask) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_STEP_RESULT);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 3);
    rlay__e_str(A->w_body, "name"); rlay__e_str(A->w_body, "f");
    rlay__e_str(A->w_body, "args"); rlay__e_array(A->w_body, 0); rlay__e_str(A->w_body, "kwargs"); rlay__e_map(A->w_body, 0);
    agent_send(fd, RLAY_CALL, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_CALL);
    rlay_put_array(rlay_result(e), 3); rlay_put_int(rlay_result(e), 1); rlay_put_nil(rlay_result(e)); rlay_put_str(rlay_result(e), "z");
    CHECK(rlay_reply_call(e) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_CALL_RESULT && rlay_map_get(b, "value")->len == 3);
    agent_send(fd, RLAY_CALL, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && cmd.kind == RLAY_CALL);
    rlay_put_int(rlay_result(e), 1);
    CHECK(rlay_reply_call(e) == RLAY_E_BAD_FIELD && strstr(rlay_errmsg(e), "one per sub-env") != NULL);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_BAD_FIELD && rlay_map_get(b, "fatal")->v.b);
    close(fd);
    rlay_free(e);

    /* the structure of an action: BAD_VALUE, fatal */
    e = batch_env(&fd, &info);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_nil(A->w_body); rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1 && !cmd.has_seed && !cmd.seeded[0] && !cmd.seeded[2] && cmd.options == NULL);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_reset(e) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_RESET_RESULT);
    agent_step(fd, e, RLAY_DT_INT32, 3, act32);
    CHECK(rlay_poll(e, &cmd, 1000) < 0 && rlay_error(e) == RLAY_E_BAD_VALUE && strstr(rlay_errmsg(e), "batch_space(action_space, 3)") != NULL);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_BAD_VALUE && rlay_map_get(b, "fatal")->v.b);
    close(fd);
    rlay_free(e);

    /* an unbatched observation, and the single-env reply: refused, both sides told */
    e = batch_env(&fd, &info);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_nil(A->w_body); rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 1, two, obs);
    CHECK(rlay_reply_reset(e) == RLAY_E_BAD_VALUE && strstr(rlay_errmsg(e), "shape (3, 2)") != NULL);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_ERROR && field_int(b, "code") == RLAY_E_BAD_VALUE);
    close(fd);
    rlay_free(e);
    e = batch_env(&fd, &info);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_nil(A->w_body); rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) == 1);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_reset(e) == 0);
    CHECK((b = agent_read(fd, &kind)) && kind == RLAY_RESET_RESULT);
    agent_step(fd, e, RLAY_DT_INT64, 3, act);
    CHECK(rlay_poll(e, &cmd, 1000) == 1);
    rlay_put_tensor(rlay_obs(e), RLAY_DT_FLOAT32, 2, s32, obs);
    CHECK(rlay_reply_step(e, 1.0, 0, 0) == RLAY_E_USAGE && strstr(rlay_errmsg(e), "rlay_reply_step_batch") != NULL);
    close(fd);
    rlay_free(e);

    /* RESET refusals: a seed array of the wrong length, a reset_mask of the wrong shape (BAD_FIELD) */
    e = batch_env(&fd, &info);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_array(A->w_body, 2); rlay__e_int(A->w_body, 1); rlay__e_int(A->w_body, 2);
    rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) < 0 && rlay_error(e) == RLAY_E_BAD_FIELD && strstr(rlay_errmsg(e), "one per sub-env (3)") != NULL);
    close(fd);
    rlay_free(e);
    e = batch_env(&fd, &info);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_nil(A->w_body);
    rlay__e_str(A->w_body, "options"); rlay__e_map(A->w_body, 1); rlay__e_str(A->w_body, "reset_mask");
    rlay__e_tensor(A->w_body, RLAY_DT_BOOL, 1, (const uint32_t[]){2}, mask, 2);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) < 0 && rlay_error(e) == RLAY_E_BAD_FIELD && strstr(rlay_errmsg(e), "reset_mask") != NULL);
    close(fd);
    rlay_free(e);
    e = batch_env(&fd, &info);
    rlay__w_reset(A->w_body); rlay__e_map(A->w_body, 2);
    rlay__e_str(A->w_body, "seed"); rlay__e_uint(A->w_body, UINT64_MAX - 1);   /* sub-env 2 would get 2^64 */
    rlay__e_str(A->w_body, "options"); rlay__e_nil(A->w_body);
    agent_send(fd, RLAY_RESET, e, 0);
    CHECK(rlay_poll(e, &cmd, 1000) < 0 && rlay_error(e) == RLAY_E_BAD_FIELD);
    close(fd);
    rlay_free(e);

    /* misuse: num_envs 0, or set once the connection exists */
    e = rlay_new();
    rlay_set_num_envs(e, 0);
    CHECK(rlay_error(e) == RLAY_E_USAGE);
    rlay_free(e);
    e = batch_env(&fd, &info);
    rlay_set_num_envs(e, 2);
    CHECK(rlay_error(e) == RLAY_E_USAGE && rlay_num_envs(e) == 3);
    close(fd);
    rlay_free(e);
    rlay__doc_free(&AD);
    free(abuf); abuf = NULL;
    rlay_free(A);
}

/* Section 19: registering attributes; usage errors are sticky and name the problem. */
static void attr_registration_test(void) {
    double g = 9.8, bad = 5.0, ts = 1.0;
    int64_t q = 2, tsi = 1;
    int flag = 0;
    rlay_ctx *e = rlay_new();
    CHECK(rlay_attr_float(e, "gravity", &g, 0, 0.0, 100.0, 0, "m/s^2") == 0);
    CHECK(rlay_attr_int(e, "quality_level", &q, 0, 0, 5, 0, "") == 0);
    CHECK(rlay_attr_bool(e, "paused", &flag, 0, RLAY_ATTR_READ_ONLY, NULL) == 0);
    CHECK(rlay_attr_float(e, "time_scale", &ts, 0, 0.01, INFINITY, 0, "") == 0);
    CHECK(e->nattr == 4 && e->attrs[0].fdef == 9.8 && e->attrs[1].idef == 2 && strcmp(e->attrs[2].doc, "") == 0);
    CHECK(rlay_error(e) == RLAY_OK);
    rlay_free(e);
#define ATTR_USAGE(call, text) do { rlay_ctx *e_ = rlay_new(); int r_ = (call); \
        CHECK(r_ == RLAY_E_USAGE && rlay_error(e_) == RLAY_E_USAGE && strstr(rlay_errmsg(e_), text) != NULL); \
        rlay_free(e_); } while (0)
    ATTR_USAGE(rlay_attr_float(e_, "", &g, 0, 0, 1, 0, ""), "1-64 characters");
    ATTR_USAGE(rlay_attr_float(e_, "9lives", &g, 0, 0, 100, 0, ""), "1-64 characters");
    ATTR_USAGE(rlay_attr_float(e_, "a b", &g, 0, 0, 100, 0, ""), "1-64 characters");
    ATTR_USAGE(rlay_attr_float(e_, "g", NULL, 0, 0, 100, 0, ""), "needs a pointer");
    ATTR_USAGE(rlay_attr_float(e_, "g", &bad, 0, 0, 1, 0, ""), "min <= value <= max");
    ATTR_USAGE(rlay_attr_float(e_, "g", &g, 0, 10, 1, 0, ""), "min <= value <= max");
    ATTR_USAGE(rlay_attr_int(e_, "q", &q, 0, 3, 5, 0, ""), "min <= value <= max");
    ATTR_USAGE(rlay_attr_int(e_, "time_scale", &tsi, 0, 0, 9, 0, ""), "standard name");
    ATTR_USAGE((rlay_attr_bool(e_, "p", &flag, 0, 0, ""), rlay_attr_bool(e_, "p", &flag, 0, 0, "")), "registered twice");
#undef ATTR_USAGE
    CHECK(strcmp(rlay_error_name(RLAY_E_BAD_ATTRIBUTE), "BAD_ATTRIBUTE") == 0);
}

int main(void) {
    static const uint32_t s3[1] = {3}, s23[2] = {2, 3}, s0[1] = {0}, s1[1] = {1};
    static const unsigned char u8[3] = {1, 2, 3}, b01[3] = {0, 1, 0}, b2[1] = {2};
    static const double one = 1.0;
    static const float f4[4] = {1, 2, 3, 4};
    static const int64_t nvec[2] = {3, 4}, nstart[2] = {0, 10};
    int i;
    C = rlay_new();
    W = rlay__w_new(C, 0, 0, 1);
    SW = rlay__w_new(C, 1, 0, 1);
    VW = rlay__w_new(C, 1, 0, 1);
    for (i = 0; i < 64; i++) dbuf[i] = (unsigned char)(i % 2);

    /* ---- ints: the shortest family (spec section 5) ---- */
    ENC(rlay_put_uint(W, 0), "00");
    ENC(rlay_put_uint(W, 127), "7f");
    ENC(rlay_put_uint(W, 128), "cc80");
    ENC(rlay_put_uint(W, 255), "ccff");
    ENC(rlay_put_uint(W, 256), "cd0100");
    ENC(rlay_put_uint(W, 65535), "cdffff");
    ENC(rlay_put_uint(W, 65536), "ce00010000");
    ENC(rlay_put_uint(W, 4294967295u), "ceffffffff");
    ENC(rlay_put_uint(W, 4294967296u), "cf0000000100000000");
    ENC(rlay_put_uint(W, UINT64_MAX), "cfffffffffffffffff");
    ENC(rlay_put_int(W, 5), "05");
    ENC(rlay_put_int(W, 200), "ccc8");
    ENC(rlay_put_int(W, -1), "ff");
    ENC(rlay_put_int(W, -32), "e0");
    ENC(rlay_put_int(W, -33), "d0df");
    ENC(rlay_put_int(W, -128), "d080");
    ENC(rlay_put_int(W, -129), "d1ff7f");
    ENC(rlay_put_int(W, -32768), "d18000");
    ENC(rlay_put_int(W, -32769), "d2ffff7fff");
    ENC(rlay_put_int(W, -2147483647 - 1), "d280000000");
    ENC(rlay_put_int(W, -2147483649LL), "d3ffffffff7fffffff");
    ENC(rlay_put_int(W, INT64_MIN), "d38000000000000000");
    ENC(rlay_put_int(W, INT64_MAX), "cf7fffffffffffffff");
    /* ---- floats: always float 64 ---- */
    ENC(rlay_put_float(W, 1.0), "cb3ff0000000000000");
    ENC(rlay_put_float(W, 0.0), "cb0000000000000000");
    ENC(rlay_put_float(W, -0.0), "cb8000000000000000");
    ENC(rlay_put_float(W, INFINITY), "cb7ff0000000000000");
    ENC(rlay_put_float(W, -INFINITY), "cbfff0000000000000");
    ENC(rlay_put_float(W, 1.5), "cb3ff8000000000000");
    /* ---- nil, bool, str, bin: shortest headers ---- */
    ENC(rlay_put_nil(W), "c0");
    ENC(rlay_put_bool(W, 0), "c2");
    ENC(rlay_put_bool(W, 7), "c3");
    ENC(rlay_put_str(W, ""), "a0");
    ENC(rlay_put_str(W, "obs"), "a36f6273");
    ENC(rlay_put_str(W, "\xc3\xa9"), "a2c3a9");
    ENC(rlay_put_str(W, "0123456789012345678901234567890"), "bf30313233343536373839303132333435363738393031323334353637383930");
    ENC(rlay_put_str(W, "01234567890123456789012345678901"), "d9203031323334353637383930313233343536373839303132333435363738393031");
    ENC(rlay_put_bytes(W, "", 0), "c400");
    ENC(rlay_put_bytes(W, "\x01\x02", 2), "c4020102");
    /* ---- arrays and maps ---- */
    ENC(rlay_put_array(W, 0), "90");
    ENC((rlay_put_array(W, 2), rlay_put_int(W, 1), rlay_put_nil(W)), "9201c0");
    ENC(rlay_put_map(W, 0), "80");
    ENC((rlay_put_map(W, 1), rlay_put_key(W, "a"), rlay_put_int(W, 1)), "81a16101");
    ENC((rlay_put_array(W, 16), put_nils(W, 16)), "dc0010c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0");
    ENC((rlay_put_map(W, 2), rlay_put_key(W, "b"), rlay_put_map(W, 0), rlay_put_key(W, "a"), rlay_put_array(W, 0)), "82a16280a16190");
    /* ---- tensors: ext 8 type 1, dtype, ndim, shape, offset 0 until laid out ---- */
    ENC(rlay_put_tensor(W, RLAY_DT_FLOAT64, 0, NULL, &one), "c706010c0000000000");
    ENC(rlay_put_tensor(W, RLAY_DT_UINT8, 1, s3, u8), "c70a01060103000000" "00000000");
    ENC(rlay_put_tensor(W, RLAY_DT_INT32, 2, s23, dbuf), "c70e0104020200000003000000" "00000000");
    ENC(rlay_put_tensor(W, RLAY_DT_BOOL, 1, s3, b01), "c70a01010103000000" "00000000");
    /* ---- spaces (spec section 9), canonical field order ---- */
    ENC(rlay_space_discrete(W, 2, 0), "84a46b696e64a86469736372657465a16e02a5737461727400a56474797065a5696e743634");
    ENC(rlay_space_multi_binary(W, 5), "82a46b696e64ac6d756c74695f62696e617279a16e05");
    ENC(rlay_space_multi_binary_shape(W, 1, s3), "82a46b696e64ac6d756c74695f62696e617279a16e9103");
    ENC((rlay_space_sequence(W, 1), rlay_space_multi_binary(W, 2)),
        "83a46b696e64a873657175656e6365a5737061636582a46b696e64ac6d756c74695f62696e617279a16e02a5737461636bc3");
    ENC((rlay_space_graph(W), rlay_space_discrete(W, 3, 0), rlay_put_nil(W)),
        "83a46b696e64a56772617068aa6e6f64655f737061636584a46b696e64a86469736372657465a16e03a5737461727400a56474797065a5696e743634aa656467655f7370616365c0");
    ENC((rlay_space_dict(W, 1), rlay_put_key(W, "a"), rlay_space_multi_binary(W, 1)),
        "82a46b696e64a464696374a6737061636573" "81a16182a46b696e64ac6d756c74695f62696e617279a16e01");
    ENC(rlay_space_text(W, 1, 4, "ab"), "84a46b696e64a474657874aa6d696e5f6c656e67746801aa6d61785f6c656e67746804a7636861727365" "74a26162");

    /* ---- API misuse is a sticky USAGE error with a message ---- */
    ERR((rlay_put_int(W, 1), rlay_put_int(W, 2)), RLAY_E_USAGE);                  /* two values */
    ERR((rlay_put_map(W, 1), rlay_put_int(W, 1)), RLAY_E_USAGE);                  /* int key */
    ERR((rlay_put_map(W, 2), rlay_put_key(W, "a"), rlay_put_nil(W), rlay_put_key(W, "a"), rlay_put_nil(W)), RLAY_E_USAGE);
    ERR(rlay_put_str(W, "\xff"), RLAY_E_USAGE);                                    /* not UTF-8 */
    ERR(rlay_put_str(W, "\xed\xa0\x80"), RLAY_E_USAGE);                            /* surrogate */
    ERR(rlay_put_tensor(W, RLAY_DT_BOOL, 1, s1, b2), RLAY_E_USAGE);                 /* bool byte 2 */
    ERR(rlay_put_tensor(W, 13, 1, s1, b2), RLAY_E_USAGE);                           /* dtype 13 */
    ERR(rlay_put_tensor(W, RLAY_DT_UINT8, 33, s1, b2), RLAY_E_USAGE);               /* ndim 33 */
    ERR(rlay_put_tensor(W, RLAY_DT_UINT8, 1, s3, NULL), RLAY_E_USAGE);              /* no data */
    ERR(nest_arrays(W, 64), RLAY_E_USAGE);                                          /* depth 65 in a body */
    CHECK((fresh(), nest_arrays(W, 63), rlay_put_nil(W), C->err == 0 && W->depth == 0)); /* depth 64: fine */
    ERR((rlay_put_int(W, 1), rlay_put_int(W, 2), rlay_put_int(W, 3)), RLAY_E_USAGE); /* first error wins */
    CHECK((fresh(), rlay_put_tensor(W, RLAY_DT_UINT8, 1, s0, NULL), C->err == 0));  /* empty: no data needed */
    CHECK((fresh(), rlay_put_int(W, 1), rlay_put_int(W, 2), strstr(C->errmsg, "exactly one value") != NULL));

    /* ---- decoding accepts every family; keeps bool and int apart; float32 widens ---- */
    DEC_OK("d005", v->type == RLAY_T_INT && !v->neg && v->v.u == 5);
    DEC_OK("cd0005", v->type == RLAY_T_INT && v->v.u == 5);
    DEC_OK("d3ffffffffffffffff", v->type == RLAY_T_INT && v->neg && v->v.i == -1);
    DEC_OK("d37fffffffffffffff", v->type == RLAY_T_INT && !v->neg && v->v.u == INT64_MAX);
    DEC_OK("cfffffffffffffffff", v->type == RLAY_T_INT && !v->neg && v->v.u == UINT64_MAX);
    DEC_OK("c3", v->type == RLAY_T_BOOL && v->v.b == 1);
    DEC_OK("01", v->type == RLAY_T_INT);
    DEC_OK("ca3fc00000", v->type == RLAY_T_FLOAT && v->v.f == 1.5);
    DEC_OK("cb7ff8000000000000", v->type == RLAY_T_FLOAT && v->v.f != v->v.f);
    DEC_OK("da0003616263", v->type == RLAY_T_STR && v->len == 3 && memcmp(v->v.s, "abc", 3) == 0);
    DEC_OK("c6000000020102", v->type == RLAY_T_BYTES && v->len == 2);
    DEC_OK("dd00000002c0c2", v->type == RLAY_T_ARRAY && v->len == 2 && v->v.items[1].type == RLAY_T_BOOL);
    DEC_OK("de0002a162c0a16101", v->type == RLAY_T_MAP && v->len == 2 && rlay_map_get(v, "a")->v.u == 1);
    DEC_OK("c70a01060102000000" "08000000", v->type == RLAY_T_TENSOR && v->v.t->count == 2 && v->v.t->data == dbuf + 8);
    DEC_OK("c900000006010c0000000000", v->type == RLAY_T_TENSOR && v->v.t->ndim == 0 && v->v.t->nbytes == 8);
    DEC_OK("c70a01010104000000" "00000000", v->v.t->dtype == RLAY_DT_BOOL && v->v.t->nbytes == 4);
    DEC_OK("c70e01" "0602" "00000000" "00000000" "00000000", v->v.t->count == 0);  /* empty, 0 x 0 */
    /* ---- decoding refuses, naming the error of spec section 11 ---- */
    DEC_ERR("c1", RLAY_E_MALFORMED);
    DEC_ERR("", RLAY_E_MALFORMED);
    DEC_ERR("0101", RLAY_E_MALFORMED);                  /* trailing byte */
    DEC_ERR("92c0", RLAY_E_MALFORMED);                  /* array ends early */
    DEC_ERR("dbffffffff", RLAY_E_MALFORMED);            /* str 32 longer than the body */
    DEC_ERR("ddffffffff", RLAY_E_MALFORMED);            /* array 32 longer than the body */
    DEC_ERR("dfffffffff", RLAY_E_MALFORMED);            /* map 32 longer than the body */
    DEC_ERR("a1ff", RLAY_E_MALFORMED);                  /* not UTF-8 */
    DEC_ERR("a2c0af", RLAY_E_MALFORMED);                /* overlong */
    DEC_ERR("a4f4908080", RLAY_E_MALFORMED);            /* above U+10FFFF */
    DEC_ERR("8101c0", RLAY_E_MALFORMED);                /* int key */
    DEC_ERR("82a161c0a161c0", RLAY_E_MALFORMED);        /* duplicate key */
    DEC_ERR("d6ff00000000", RLAY_E_MALFORMED);          /* timestamp ext */
    DEC_ERR("d40200", RLAY_E_MALFORMED);                /* ext type 2 */
    DEC_ERR("d40100", RLAY_E_BAD_TENSOR);               /* fixext 1 tensor: 1 byte */
    DEC_ERR("c705010c00000000", RLAY_E_BAD_TENSOR);     /* 5 bytes */
    DEC_ERR("c706010c2100000000", RLAY_E_BAD_TENSOR);   /* ndim 33 */
    DEC_ERR("c70a010c000000000000000000", RLAY_E_BAD_TENSOR); /* 10 bytes for ndim 0 */
    DEC_ERR("c70601000000000000", RLAY_E_UNKNOWN_DTYPE);
    DEC_ERR("c706010d0000000000", RLAY_E_UNKNOWN_DTYPE);
    DEC_ERR("c706010c0004000000", RLAY_E_BAD_TENSOR);   /* offset 4 */
    DEC_ERR("c706010c0000000000", RLAY_E_BAD_TENSOR);   /* no data section (decode_hex gives 0 bytes) */
    /* nesting: depth 64 is fine, 65 is TOO_DEEP */
    {
        char deep[200];
        for (i = 0; i < 64; i++) { deep[2 * i] = '9'; deep[2 * i + 1] = '1'; }
        strcpy(deep + 128, "c0");
        DEC_OK(deep, v->type == RLAY_T_ARRAY);
        deep[128] = '9'; deep[129] = '1'; strcpy(deep + 130, "c0");
        DEC_ERR(deep, RLAY_E_TOO_DEEP);
    }
    /* a big map's duplicate keys are found by sorting */
    {
        char big[400];
        strcpy(big, "de0014");
        for (i = 0; i < 20; i++) sprintf(big + 6 + 6 * i, "a1%02xc0", 0x41 + (i == 19 ? 0 : i));
        DEC_ERR(big, RLAY_E_MALFORMED);
        big[6 + 6 * 19 + 3] = '9';  /* 'Y' */
        big[6 + 6 * 19 + 2] = '5';
        DEC_OK(big, v->type == RLAY_T_MAP && v->len == 20);
    }

    /* ---- frames: header, canonical tensor layout (document order, 8-aligned, zero gaps) ---- */
    {
        char got[600];
        rlay_w *b = C->w_body;
        static const uint64_t big = 0x0102030405060708u;
        rlay__w_reset(b); clear_err();
        rlay_put_array(b, 3);
        rlay_put_tensor(b, RLAY_DT_UINT8, 1, s3, u8);
        rlay_put_tensor(b, RLAY_DT_UINT8, 1, s0, NULL);
        rlay_put_tensor(b, RLAY_DT_UINT64, 0, NULL, &big);
        CHECK(rlay__frame(C, RLAY_CALL_RESULT, b) == 0 && rlay__flatten(C) == 0);
        hex(got, C->flat, C->flen);
        CHECK(strcmp(got, "524c2400" "10000000" "24000000"
                          "0102030000000000" "0807060504030201"
                          "93" "c70a010601" "03000000" "00000000" "c70a010601" "00000000" "00000000"
                          "c706010900" "08000000") == 0);
    }
    /* a STEP_RESULT as reply_step assembles it, byte for byte from spec sections 2-6 */
    {
        char got[600];
        rlay_w *b = C->w_body;
        clear_err(); rlay__w_reset(C->w_obs); rlay__w_reset(C->w_info); rlay__w_reset(b);
        rlay_put_tensor(C->w_obs, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, f4);
        rlay_put_key(C->w_info, "k"); rlay_put_bool(C->w_info, 1);
        rlay__e_map(b, 5);
        rlay__e_str(b, "obs"); rlay__splice(b, C->w_obs);
        rlay__e_str(b, "reward"); rlay__e_float(b, 1.0);
        rlay__e_str(b, "terminated"); rlay__e_bool(b, 0);
        rlay__e_str(b, "truncated"); rlay__e_bool(b, 1);
        rlay__e_str(b, "info"); rlay__splice(b, C->w_info);
        CHECK(rlay__frame(C, RLAY_STEP_RESULT, b) == 0 && rlay__flatten(C) == 0);
        hex(got, C->flat, C->flen);
        CHECK(strcmp(got, "524c2100" "10000000" "42000000"
                          "0000803f000000400000404000008040"
                          "85a36f6273c70a010b010400000000000000"
                          "a6726577617264cb3ff0000000000000"
                          "aa7465726d696e61746564c2a97472756e6361746564c3"
                          "a4696e666f81a16bc3") == 0);
    }
    /* the header is checked before anything is allocated */
    {
        static const struct { const char *hex; int code; } hdr[] = {
            {"484554202f20485454", RLAY_E_BAD_MAGIC},       /* "GET / HTTP" */
            {"52", 0}, {"524c", 0}, {"48", 0},              /* magic is judged on two bytes */
            {"524c11010000000001000000", RLAY_E_BAD_HEADER},
            {"524c11000000000000000000", RLAY_E_BAD_HEADER},
            {"524c1100ffffffff01000000", RLAY_E_FRAME_TOO_LARGE},
            {"524c03000000000001000000", RLAY_E_UNKNOWN_KIND},
        };
        for (i = 0; i < (int)(sizeof hdr / sizeof hdr[0]); i++) {
            size_t n;
            unsigned char *p = unhex(hdr[i].hex, &n);
            int r;
            rlay__conform_reset(C, RLAY__ENV, RLAY__S_IDLE);
            rlay__feed(C, p, n);
            r = rlay__rx_frame(C);
            if ((hdr[i].code == 0 && r == 0) || (hdr[i].code && r < 0 && C->err == hdr[i].code)) passed++;
            else fail_at(__LINE__, hdr[i].hex, rlay_error_name(C->err));
            free(p);
        }
        rlay__conform_reset(C, RLAY__ENV, RLAY__S_IDLE);
        rlay_set_max_frame_size(C, 100);
        rlay__feed(C, (const unsigned char *)"RL\x11\x00\x00\x00\x00\x00\x65\x00\x00\x00", 12);
        CHECK(rlay__rx_frame(C) < 0 && C->err == RLAY_E_FRAME_TOO_LARGE);
        rlay__conform_reset(C, RLAY__ENV, RLAY__S_IDLE);
        rlay_set_max_frame_size(C, RLAY_DEFAULT_MAX_FRAME_SIZE);
    }

    /* a stream of one byte, even a wrong one, is TRUNCATED (spec section 2) */
    CHECK(rlay__conform_reject(C, (const unsigned char *)"X", 1, RLAY__ENV, -1, 1) == RLAY_E_TRUNCATED);
    CHECK(rlay__conform_reject(C, (const unsigned char *)"XY", 2, RLAY__ENV, -1, 1) == RLAY_E_BAD_MAGIC);
    /* our own ENV_INFO is checked like a peer's: a bad metadata.autoreset_mode is refused */
    {
        rlay_ctx *e = rlay_new();
        rlay_space_discrete(rlay_observation_space(e), 2, 0);
        rlay_space_discrete(rlay_action_space(e), 2, 0);
        rlay_put_key(rlay_metadata(e), "autoreset_mode"); rlay_put_str(rlay_metadata(e), "sometimes");
        CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == RLAY_E_BAD_FIELD && strstr(rlay_errmsg(e), "autoreset_mode") != NULL);
        rlay_free(e);
        e = rlay_new();
        rlay_space_discrete(rlay_observation_space(e), 2, 0);
        CHECK(rlay_listen(e, "tcp://127.0.0.1:0") == RLAY_E_USAGE && strstr(rlay_errmsg(e), "action space") != NULL);
        rlay_free(e);
    }
    clear_err();

    /* ---- spaces refused (BAD_SPACE, UNKNOWN_DTYPE) ---- */
    SPACE_ERR(rlay_space_discrete(w, 0, 0), RLAY_E_BAD_SPACE);
    SPACE_ERR(put_discrete(w, 300, 0, "int8"), RLAY_E_BAD_SPACE);                  /* n does not fit int8 */
    SPACE_ERR(put_discrete(w, 3, -1, "uint16"), RLAY_E_BAD_SPACE);                 /* start does not fit */
    SPACE_ERR(put_discrete(w, 3, 0, "float32"), RLAY_E_BAD_SPACE);
    SPACE_ERR(rlay_space_multi_discrete(w, 1, (const uint32_t[]){2}, (const int64_t[]){3, 0}, NULL), RLAY_E_BAD_SPACE);
    SPACE_ERR(rlay_space_text(w, 5, 4, "ab"), RLAY_E_BAD_SPACE);
    SPACE_ERR(rlay_space_text(w, 0, 4, "ba"), RLAY_E_BAD_SPACE);
    SPACE_ERR(rlay_space_text(w, 0, 4, "aa"), RLAY_E_BAD_SPACE);
    SPACE_ERR((rlay_put_map(w, 1), rlay_put_key(w, "kind"), rlay_put_str(w, "box2")), RLAY_E_BAD_SPACE);
    SPACE_ERR((rlay_put_map(w, 4), rlay_put_key(w, "kind"), rlay_put_str(w, "discrete"), rlay_put_key(w, "n"), rlay_put_int(w, 2),
               rlay_put_key(w, "start"), rlay_put_int(w, 0), rlay_put_key(w, "dtype"), rlay_put_str(w, "int128")), RLAY_E_UNKNOWN_DTYPE);
    SPACE_ERR((rlay_put_map(w, 3), rlay_put_key(w, "kind"), rlay_put_str(w, "discrete"), rlay_put_key(w, "n"), rlay_put_int(w, 2),
               rlay_put_key(w, "start"), rlay_put_int(w, 0)), RLAY_E_BAD_SPACE);     /* missing dtype */
    SPACE_ERR((rlay_space_graph(w), rlay_space_multi_binary(w, 2), rlay_put_nil(w)), RLAY_E_BAD_SPACE);
    SPACE_ERR((rlay_put_map(w, 5), rlay_put_key(w, "kind"), rlay_put_str(w, "box"), rlay_put_key(w, "dtype"), rlay_put_str(w, "float32"),
               rlay_put_key(w, "shape"), rlay_put_array(w, 1), rlay_put_int(w, 4),
               rlay_put_key(w, "low"), rlay_put_tensor(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, f4),
               rlay_put_key(w, "high"), rlay_put_tensor(w, RLAY_DT_FLOAT64, 0, NULL, &one)), RLAY_E_BAD_SPACE);
    SPACE_ERR(rlay_space_box_uniform(w, RLAY_DT_UINT8, 1, s3, -1, 255), RLAY_E_USAGE);   /* -1 is no uint8 */
    SPACE_ERR(rlay_space_box_uniform(w, RLAY_DT_INT64, 1, s3, 0, 9223372036854775807.0), RLAY_E_USAGE); /* = 2^63 */
    SPACE_ERR(rlay_space_box_uniform(w, RLAY_DT_INT8, 1, s3, 0, 0.5), RLAY_E_USAGE);
    /* integer bounds of +-inf are the dtype's limits; temporaries are copied even into W */
    ENC(rlay_space_box_uniform(W, RLAY_DT_INT8, 0, NULL, -INFINITY, INFINITY),
        "85a46b696e64a3626f78a56474797065a4696e7438a5736861706590a36c6f77c70601020000000000a468696768c70601020000000000");
    CHECK((fresh(), rlay_space_box_uniform(W, RLAY_DT_INT8, 0, NULL, -INFINITY, INFINITY),
           W->olen == 2 && W->own[0] == 0x80 && W->own[1] == 0x7f && !W->copy));
    CHECK((fresh(), rlay__w_reset(SW), rlay_space_box_uniform(SW, RLAY_DT_INT64, 0, NULL, -INFINITY, INFINITY),
           SW->olen == 16 && memcmp(SW->own, "\x00\x00\x00\x00\x00\x00\x00\x80\xff\xff\xff\xff\xff\xff\xff\x7f", 16) == 0));
    CHECK((fresh(), rlay__w_reset(SW), rlay_space_box_uniform(SW, RLAY_DT_UINT16, 0, NULL, -INFINITY, INFINITY),
           SW->olen == 4 && memcmp(SW->own, "\x00\x00\xff\xff", 4) == 0));
    CHECK((fresh(), rlay__w_reset(SW), rlay_space_box_uniform(SW, RLAY_DT_INT16, 0, NULL, -32768, 32767),
           SW->olen == 4 && memcmp(SW->own, "\x00\x80\xff\x7f", 4) == 0));

    /* ---- values against spaces: structure (BAD_VALUE) vs bounds (INVALID_ACTION) ---- */
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_int(w, 1), 0, 0);
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_int(w, 2), 0, 1);
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_int(w, -1), 0, 1);
    VCHECK(rlay_space_discrete(w, 3, -1), rlay_put_int(w, -1), 0, 0);
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_uint(w, UINT64_MAX), -1, 0);       /* outside int64: structure */
    VCHECK(rlay_space_discrete(w, 2, INT64_MIN), rlay_put_int(w, INT64_MAX), 0, 1);
    VCHECK(put_discrete(w, 100, -50, "int8"), rlay_put_int(w, 49), 0, 0);
    VCHECK(put_discrete(w, 100, -50, "int8"), rlay_put_int(w, 50), 0, 1);           /* int8, out of range */
    VCHECK(put_discrete(w, 100, -50, "int8"), rlay_put_int(w, 200), -1, 0);         /* not an int8 at all */
    VCHECK(put_discrete(w, 100, 0, "uint8"), rlay_put_int(w, -1), -1, 0);
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_tensor(w, RLAY_DT_INT64, 0, NULL, (const int64_t[]){1}), 0, 0);
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_float(w, 1.0), -1, 0);
    VCHECK(rlay_space_discrete(w, 2, 0), rlay_put_bool(w, 1), -1, 0);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, -2.5, 4),
           rlay_put_tensor(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, f4), 0, 0);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, -2.5, 3.5),
           rlay_put_tensor(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, f4), 0, 1);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, -INFINITY, INFINITY),
           rlay_put_tensor(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, ((const float[]){0, 0, NAN, 0})), 0, 1);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, -1, 1),
           rlay_put_tensor(w, RLAY_DT_FLOAT64, 1, (const uint32_t[]){4}, dbuf), -1, 0);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){4}, -1, 1),
           rlay_put_tensor(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){2}, f4), -1, 0);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_INT64, 1, s1, -5, 5),
           rlay_put_tensor(w, RLAY_DT_INT64, 1, s1, (const int64_t[]){-6}), 0, 1);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT16, 1, s1, -1, 1),
           rlay_put_tensor(w, RLAY_DT_FLOAT16, 1, s1, (const uint16_t[]){0x3c00}), 0, 0);
    VCHECK(rlay_space_box_uniform(w, RLAY_DT_FLOAT16, 1, s1, -1, 1),
           rlay_put_tensor(w, RLAY_DT_FLOAT16, 1, s1, (const uint16_t[]){0x3c01}), 0, 1);
    VCHECK(rlay_space_multi_discrete(w, 1, (const uint32_t[]){2}, nvec, nstart),
           rlay_put_tensor(w, RLAY_DT_INT64, 1, (const uint32_t[]){2}, ((const int64_t[]){2, 13})), 0, 0);
    VCHECK(rlay_space_multi_discrete(w, 1, (const uint32_t[]){2}, nvec, nstart),
           rlay_put_tensor(w, RLAY_DT_INT64, 1, (const uint32_t[]){2}, ((const int64_t[]){2, 14})), 0, 1);
    VCHECK(rlay_space_multi_binary(w, 3), rlay_put_tensor(w, RLAY_DT_INT8, 1, s3, b01), 0, 0);
    VCHECK(rlay_space_multi_binary(w, 3), rlay_put_tensor(w, RLAY_DT_INT8, 1, s3, u8), 0, 1);
    VCHECK(rlay_space_multi_binary(w, 3), rlay_put_tensor(w, RLAY_DT_UINT8, 1, s3, b01), -1, 0);
    VCHECK(rlay_space_text(w, 1, 2, "ab"), rlay_put_str(w, "ba"), 0, 0);
    VCHECK(rlay_space_text(w, 1, 2, "ab"), rlay_put_str(w, "abc"), 0, 1);
    VCHECK(rlay_space_text(w, 1, 2, "ab"), rlay_put_str(w, "c"), 0, 1);
    VCHECK((rlay_space_dict(w, 2), rlay_put_key(w, "a"), rlay_space_discrete(w, 2, 0), rlay_put_key(w, "b"), rlay_space_multi_binary(w, 1)),
           (rlay_put_map(w, 2), rlay_put_key(w, "b"), rlay_put_tensor(w, RLAY_DT_INT8, 1, s1, b01), rlay_put_key(w, "a"), rlay_put_int(w, 1)), 0, 0);
    VCHECK((rlay_space_dict(w, 2), rlay_put_key(w, "a"), rlay_space_discrete(w, 2, 0), rlay_put_key(w, "b"), rlay_space_multi_binary(w, 1)),
           (rlay_put_map(w, 2), rlay_put_key(w, "b"), rlay_put_tensor(w, RLAY_DT_INT8, 1, s1, b01), rlay_put_key(w, "c"), rlay_put_int(w, 1)), -1, 0);
    VCHECK((rlay_space_tuple(w, 2), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)),
           (rlay_put_array(w, 2), rlay_put_int(w, 1), rlay_put_int(w, 2)), 0, 0);
    VCHECK((rlay_space_tuple(w, 2), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)),
           (rlay_put_array(w, 1), rlay_put_int(w, 1)), -1, 0);
    VCHECK((rlay_space_tuple(w, 2), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)),   /* structure beats bounds */
           (rlay_put_array(w, 2), rlay_put_int(w, 5), rlay_put_str(w, "x")), -1, 1);
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)), put_graph(w, 2, 2), 0, 0);
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)), put_graph(w, -1, -1), 0, 0);
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)), put_graph(w, -1, 0), -1, 0); /* one nil, one tensor */
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)), put_graph(w, 0, 0), 0, 0);   /* no edges, as tensors */
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)), put_graph(w, -1, 2), -1, 0);
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_space_discrete(w, 3, 0)), put_graph(w, 2, 1), -1, 0);
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_put_nil(w)), put_graph(w, -1, -1), 0, 0);
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_put_nil(w)), put_graph(w, 0, -1), -1, 0); /* no edge space: nil only */
    VCHECK((rlay_space_graph(w), rlay_space_discrete(w, 2, 0), rlay_put_nil(w)), put_graph(w, 2, 2), -1, 0);
    VCHECK((rlay_space_sequence(w, 0), rlay_space_discrete(w, 2, 0)), (rlay_put_array(w, 2), rlay_put_int(w, 1), rlay_put_int(w, 0)), 0, 0);
    VCHECK((rlay_space_one_of(w, 2), rlay_space_discrete(w, 2, 0), rlay_space_text(w, 0, 3, "a")),
           (rlay_put_array(w, 2), rlay_put_int(w, 1), rlay_put_str(w, "aa")), 0, 0);
    VCHECK((rlay_space_one_of(w, 2), rlay_space_discrete(w, 2, 0), rlay_space_text(w, 0, 3, "a")),
           (rlay_put_array(w, 2), rlay_put_int(w, 2), rlay_put_str(w, "aa")), -1, 0);

    /* ---- batches (section 10): each sub-env's value against the single space ---- */
    {
        static const int64_t a3[3] = {0, 1, 1}, a3bad[3] = {0, 1, 2}, md[4] = {2, 13, 3, 14};
        static const int32_t a3i32[3] = {0, 1, 1};
        static const float f22[4] = {0.5f, -0.5f, 1.0f, 2.0f};
        static const unsigned char mb[6] = {0, 1, 1, 1, 0, 1}, mbbad[6] = {0, 1, 1, 1, 2, 1};
        static const uint32_t n3[1] = {3}, n2[1] = {2}, s22[2] = {2, 2}, s23b[2] = {2, 3};
        BVCHECK(3, rlay_space_discrete(w, 2, 0), rlay_put_tensor(w, RLAY_DT_INT64, 1, n3, a3), 0, 0, 0);
        BVCHECK(3, rlay_space_discrete(w, 2, 0), rlay_put_tensor(w, RLAY_DT_INT64, 1, n3, a3bad), 0, 1, 2);
        BVCHECK(3, rlay_space_discrete(w, 3, 0), rlay_put_tensor(w, RLAY_DT_INT64, 1, n3, a3bad), 0, 0, 0);
        BVCHECK(3, rlay_space_discrete(w, 2, 0), rlay_put_tensor(w, RLAY_DT_INT32, 1, n3, a3i32), -1, 0, 0);   /* int64 is due */
        BVCHECK(3, rlay_space_discrete(w, 2, 0), rlay_put_tensor(w, RLAY_DT_INT64, 1, n2, a3), -1, 0, 0);       /* 2 of 3 */
        BVCHECK(3, rlay_space_discrete(w, 2, 0), rlay_put_int(w, 1), -1, 0, 0);                                  /* unbatched */
        BVCHECK(2, rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, n2, -1, 1.5), rlay_put_tensor(w, RLAY_DT_FLOAT32, 2, s22, f22), 0, 1, 1);
        BVCHECK(2, rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, n2, -1, 2), rlay_put_tensor(w, RLAY_DT_FLOAT32, 2, s22, f22), 0, 0, 0);
        BVCHECK(2, rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, n2, -1, 2), rlay_put_tensor(w, RLAY_DT_FLOAT32, 1, n2, f22), -1, 0, 0);
        BVCHECK(2, rlay_space_multi_binary(w, 3), rlay_put_tensor(w, RLAY_DT_INT8, 2, s23b, mb), 0, 0, 0);
        BVCHECK(2, rlay_space_multi_binary(w, 3), rlay_put_tensor(w, RLAY_DT_INT8, 2, s23b, mbbad), 0, 1, 1);
        BVCHECK(2, rlay_space_multi_discrete(w, 1, n2, nvec, nstart), rlay_put_tensor(w, RLAY_DT_INT64, 2, s22, md), 0, 1, 1);
        BVCHECK(2, (rlay_space_dict(w, 2), rlay_put_key(w, "a"), rlay_space_discrete(w, 2, 0), rlay_put_key(w, "b"), rlay_space_multi_binary(w, 3)),
                (rlay_put_map(w, 2), rlay_put_key(w, "b"), rlay_put_tensor(w, RLAY_DT_INT8, 2, s23b, mb), rlay_put_key(w, "a"),
                 rlay_put_tensor(w, RLAY_DT_INT64, 1, n2, a3)), 0, 0, 0);
        BVCHECK(2, (rlay_space_dict(w, 2), rlay_put_key(w, "a"), rlay_space_discrete(w, 2, 0), rlay_put_key(w, "b"), rlay_space_multi_binary(w, 3)),
                (rlay_put_map(w, 2), rlay_put_key(w, "b"), rlay_put_tensor(w, RLAY_DT_INT8, 2, s23b, mbbad), rlay_put_key(w, "a"),
                 rlay_put_tensor(w, RLAY_DT_INT64, 1, n2, a3)), 0, 1, 1);
        BVCHECK(2, (rlay_space_tuple(w, 2), rlay_space_discrete(w, 2, 0), rlay_space_text(w, 0, 2, "ab")),
                (rlay_put_array(w, 2), rlay_put_tensor(w, RLAY_DT_INT64, 1, n2, a3), rlay_put_array(w, 2), rlay_put_str(w, "ab"), rlay_put_str(w, "aab")),
                0, 1, 1);
        BVCHECK(3, rlay_space_text(w, 0, 2, "ab"), (rlay_put_array(w, 3), rlay_put_str(w, "a"), rlay_put_str(w, "b"), rlay_put_str(w, "c")), 0, 1, 2);
        BVCHECK(3, rlay_space_text(w, 0, 2, "ab"), (rlay_put_array(w, 2), rlay_put_str(w, "a"), rlay_put_str(w, "b")), -1, 0, 0);
        BVCHECK(2, (rlay_space_sequence(w, 0), rlay_space_discrete(w, 2, 0)),
                (rlay_put_array(w, 2), rlay_put_array(w, 1), rlay_put_int(w, 1), rlay_put_array(w, 1), rlay_put_int(w, 3)), 0, 1, 1);
        BVCHECK(2, (rlay_space_sequence(w, 0), rlay_space_discrete(w, 2, 0)),   /* structure in a later sub-env beats bounds */
                (rlay_put_array(w, 2), rlay_put_array(w, 1), rlay_put_int(w, 3), rlay_put_array(w, 1), rlay_put_str(w, "x")), -1, 1, 0);
        BVCHECK(2, rlay_space_box_uniform(w, RLAY_DT_FLOAT32, 1, (const uint32_t[]){0}, -1, 1),   /* empty sub-env values */
                rlay_put_tensor(w, RLAY_DT_FLOAT32, 2, ((const uint32_t[]){2, 0}), f22), 0, 0, 0);
        /* the message names the value, the caller names the sub-env */
        BVCHECK(3, rlay_space_discrete(w, 2, 0), rlay_put_tensor(w, RLAY_DT_INT64, 1, n3, a3bad), 0, 1, 2);
        fresh(); rlay__w_reset(SW); rlay__w_reset(VW);
        rlay_space_discrete(SW, 2, 0); rlay_put_tensor(VW, RLAY_DT_INT64, 1, n3, a3bad);
        { int oob; uint32_t which; bvcheck(3, &oob, &which); CHECK(strstr(C->vmsg, "Discrete(2, start=0): 2 is out of range") != NULL); }
        fresh();
        /* rlay_as_int64_at: element i of an integer tensor, or the int itself for i == 0 */
        {
            rlay_tensor t; rlay_value v; int64_t x = -1;
            memset(&t, 0, sizeof t); memset(&v, 0, sizeof v);
            t.dtype = RLAY_DT_INT64; t.ndim = 1; t.shape[0] = 3; t.count = 3; t.nbytes = 24; t.data = a3bad;
            v.type = RLAY_T_TENSOR; v.v.t = &t;
            CHECK(rlay_as_int64_at(&v, 2, &x) && x == 2);
            CHECK(!rlay_as_int64_at(&v, 3, &x));
            t.dtype = RLAY_DT_FLOAT64;
            CHECK(!rlay_as_int64_at(&v, 0, &x));
            v.type = RLAY_T_INT; v.v.u = 7;
            CHECK(rlay_as_int64_at(&v, 0, &x) && x == 7 && !rlay_as_int64_at(&v, 1, &x));
        }
    }

    /* ---- numbers ---- */
    CHECK(rlay__double_to_half(1.0) == 0x3c00);
    CHECK(rlay__double_to_half(-2.0) == 0xc000);
    CHECK(rlay__double_to_half(65504.0) == 0x7bff);
    CHECK(rlay__double_to_half(65520.0) == 0x7c00);
    CHECK(rlay__double_to_half(INFINITY) == 0x7c00);
    CHECK(rlay__double_to_half(ldexp(1.0, -24)) == 0x0001);
    CHECK(rlay__double_to_half(ldexp(1.0, -26)) == 0x0000);
    CHECK(rlay__double_to_half(1.0 + ldexp(1.0, -11)) == 0x3c00);  /* ties to even */
    CHECK(rlay__double_to_half(NAN) == 0x7e00);
    CHECK(rlay__half_to_double(0x0001) == ldexp(1.0, -24));
    CHECK(rlay__half_to_double(0x7bff) == 65504.0);
    CHECK(rlay__half_to_double(0xfc00) == -INFINITY);
    {
        rlay__wint a, s, n;
        a.neg = 0; a.u = UINT64_MAX; s.neg = 1; s.u = (uint64_t)INT64_MIN; n.neg = 0; n.u = UINT64_MAX;
        CHECK(!rlay__in_range(a, s, n));           /* the difference exceeds 2^64 */
        a.u = 5; s.neg = 0; s.u = 5; n.u = 1;
        CHECK(rlay__in_range(a, s, n));
        a.u = 6;
        CHECK(!rlay__in_range(a, s, n));
    }
    /* ---- error names are the spec's ---- */
    CHECK(strcmp(rlay_error_name(RLAY_E_FRAME_TOO_LARGE), "FRAME_TOO_LARGE") == 0);
    CHECK(strcmp(rlay_error_name(37), "INTERNAL") == 0);
    CHECK(strcmp(rlay_strerror(RLAY_E_VERSION_MISMATCH), "VERSION_MISMATCH: protocol version mismatch") == 0);
    CHECK(strcmp(rlay_error_name(99), "UNKNOWN_ERROR_CODE") == 0);

    CHECK(strcmp(rlay_error_name(RLAY_E_AGENT_MISMATCH), "AGENT_MISMATCH") == 0);

    multi_agent_misuse_test();
    session_test();
    batch_session_test();
    attr_registration_test();
    rlay__w_free(W);
    rlay__w_free(SW);
    rlay__w_free(VW);
    rlay__doc_free(&D); rlay__doc_free(&SD); rlay__doc_free(&VD);
    free(sframe[0]); free(sframe[1]);
    free(keep);
    rlay_free(C);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
