/* CartPole-v1 in C, served as a Gymnasium env over rlay (callback style): one CartPole, or
   with --num-envs N a batch of N on one connection (spec section 10).

   The dynamics are Gymnasium's CartPole-v1 (gymnasium/envs/classic_control/cartpole.py):
   euler integration in float64 with the same expressions in the same order, float32
   observations, reward 1.0 (0.0 for steps after termination), termination at |x| > 2.4 or
   |theta| > 12 degrees, and the 500-step truncation that gym.make's TimeLimit adds.

   Reset draws the state as Gymnasium does, bit for bit: np_random.uniform(low, high, size=4)
   (default [-0.05, 0.05], options "low"/"high") from numpy's Generator(PCG64(SeedSequence(seed))),
   reproduced below; a reset without a seed continues the stream (a never-seeded one starts from
   the clock). The option "state" (float64 tensor (4,), or (N, 4) for a batch) sets the initial
   state exactly. CALL "get_state" returns the float64 state (an array of N for a batch).

   Attributes (spec section 19; Python: env.set_attr("gravity", 20.0), a vector env's
   set_attr("gravity", [...]) one per sub-env): gravity, force_mag and tau, each sub-env's own,
   as Gymnasium's CartPoleEnv attributes of the same names (its defaults 9.8, 10.0, 0.02).

   A batch autoresets as Gymnasium 1.x's AutoresetMode.NEXT_STEP: the STEP after a sub-env's
   episode ended resets it (no seed: its stream goes on) and answers its first observation with
   reward 0 and terminated/truncated false; its action is ignored. A partial reset
   (options["reset_mask"]) resets only the sub-envs marked, each with its own seed.

   Usage: cartpole --listen ADDRESS     wait for rlay.ClientEnv (prints RLAY_LISTENING <bound>)
          cartpole --connect ADDRESS    dial rlay.ServerEnv
          [--num-envs N]                host N CartPoles (rlay.ClientVectorEnv / ServerVectorEnv)
          [--render-mode rgb_array]     RENDER answers a 400x600x3 uint8 frame (N of them)
          [--handshake-timeout MS]      the agent's HELLO must come within MS (default 30000)
          [--no-shm]                    never use shared memory (spec section 16; or RLAY_SHM=0)
   Without ADDRESS (or without either flag: listen) the address is $RLAY_ADDRESS.
*/
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

#include <math.h>

#define WIDTH 600
#define HEIGHT 400

/* Gymnasium's constants, computed with the same expressions (gravity, force_mag and tau are
   each CartPole's own: attributes the agent side may set, section 19). */
static const double masscart = 1.0, masspole = 0.1, length = 0.5, x_threshold = 2.4;
#define TOTAL_MASS (masspole + masscart)
#define POLEMASS_LENGTH (masspole * length)
#define THETA_THRESHOLD (12 * 2 * 3.141592653589793 / 360)   /* 12 * 2 * math.pi / 360 */
#define MAX_EPISODE_STEPS 500

/* ---- numpy's random stream: SeedSequence(seed) -> PCG64 -> Generator.uniform ---- */
/* 128-bit unsigned arithmetic on two halves (C99 has no 128-bit integer). */
typedef struct { uint64_t hi, lo; } u128;
static u128 add128(u128 a, u128 b) {
    u128 r;
    r.lo = a.lo + b.lo;
    r.hi = a.hi + b.hi + (r.lo < a.lo);
    return r;
}
static u128 mul128(u128 a, u128 b) {   /* the low 128 bits of a * b */
    uint64_t a0 = a.lo & 0xffffffffu, a1 = a.lo >> 32, b0 = b.lo & 0xffffffffu, b1 = b.lo >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    u128 r;
    r.lo = (mid << 32) | (p00 & 0xffffffffu);
    r.hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32) + a.hi * b.lo + a.lo * b.hi;
    return r;
}
typedef struct { u128 state, inc; } pcg64;
static void pcg64_step(pcg64 *g) {
    static const u128 mult = {2549297995355413924u, 4865540595714422341u};   /* PCG_DEFAULT_MULTIPLIER_128 */
    g->state = add128(mul128(g->state, mult), g->inc);
}
static uint64_t pcg64_next(pcg64 *g) {   /* XSL-RR output of the advanced state */
    uint64_t v;
    unsigned rot;
    pcg64_step(g);
    v = g->state.hi ^ g->state.lo;
    rot = (unsigned)(g->state.hi >> 58);
    return (v >> rot) | (v << ((64 - rot) & 63));
}
/* numpy/random/bit_generator.pyx: SeedSequence's hashmix and mix on a pool of 4 words */
static uint32_t hashmix(uint32_t v, uint32_t *h) {
    v ^= *h; *h *= 0x931e8875u; v *= *h; v ^= v >> 16;
    return v;
}
static uint32_t mix(uint32_t x, uint32_t y) {
    uint32_t r = 0xca01f9ddu * x - 0x4973f715u * y;
    return r ^ (r >> 16);
}
/* PCG64(SeedSequence(seed)): generate_state(4, uint64) gives the initial state and sequence. */
static void pcg64_seed(pcg64 *g, uint64_t seed) {
    uint32_t entropy[2], pool[4], h = 0x43b0d7e5u, words[8];
    int n = (seed >> 32) ? 2 : 1, i, j;
    u128 initstate, initseq;
    entropy[0] = (uint32_t)seed; entropy[1] = (uint32_t)(seed >> 32);
    for (i = 0; i < 4; i++) pool[i] = hashmix(i < n ? entropy[i] : 0, &h);
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++)
            if (i != j) pool[j] = mix(pool[j], hashmix(pool[i], &h));
    h = 0x8b51f9ddu;
    for (i = 0; i < 8; i++) {
        uint32_t d = pool[i % 4] ^ h;
        h *= 0x58f38dedu; d *= h; d ^= d >> 16;
        words[i] = d;
    }
    initstate.hi = words[0] | (uint64_t)words[1] << 32; initstate.lo = words[2] | (uint64_t)words[3] << 32;
    initseq.hi = words[4] | (uint64_t)words[5] << 32; initseq.lo = words[6] | (uint64_t)words[7] << 32;
    g->inc.hi = (initseq.hi << 1) | (initseq.lo >> 63); g->inc.lo = (initseq.lo << 1) | 1;
    g->state.hi = g->state.lo = 0;
    pcg64_step(g);
    g->state = add128(g->state, initstate);
    pcg64_step(g);
}
static double pcg64_double(pcg64 *g) { return (double)(pcg64_next(g) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- one CartPole ---- */
typedef struct {
    double s[4];                 /* x, x_dot, theta, theta_dot */
    long elapsed;                /* TimeLimit's _elapsed_steps */
    long beyond;                 /* steps_beyond_terminated; -1 is None */
    pcg64 rng;
    int seeded;
    double gravity, force_mag, tau;   /* Gymnasium's 9.8, 10.0, 0.02 unless set (section 19) */
} cartpole;

/* Gymnasium's reset: a new stream if seeded, then uniform(low, high, size=4) unless `state`. */
static void reset_one(cartpole *e, int seeded, uint64_t seed, double low, double high, const double *state, int salt) {
    int k;
    if (seeded) pcg64_seed(&e->rng, seed);
    else if (!e->seeded) pcg64_seed(&e->rng, (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32) ^ ((uint64_t)salt << 48));
    e->seeded = 1;
    for (k = 0; k < 4; k++) e->s[k] = state ? state[k] : low + (high - low) * pcg64_double(&e->rng);
    e->elapsed = 0;
    e->beyond = -1;
}

static void step_one(cartpole *e, int64_t action, double *reward, int *terminated, int *truncated) {
    double x = e->s[0], x_dot = e->s[1], theta = e->s[2], theta_dot = e->s[3];
    double force, costheta, sintheta, temp, thetaacc, xacc;
    double gravity = e->gravity, force_mag = e->force_mag, tau = e->tau;
    force = action == 1 ? force_mag : -force_mag;
    costheta = cos(theta);
    sintheta = sin(theta);
    temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
    thetaacc = (gravity * sintheta - costheta * temp) /
               (length * (4.0 / 3.0 - masspole * (costheta * costheta) / TOTAL_MASS));
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
    x = x + tau * x_dot;
    x_dot = x_dot + tau * xacc;
    theta = theta + tau * theta_dot;
    theta_dot = theta_dot + tau * thetaacc;
    e->s[0] = x; e->s[1] = x_dot; e->s[2] = theta; e->s[3] = theta_dot;
    *terminated = x < -x_threshold || x > x_threshold || theta < -THETA_THRESHOLD || theta > THETA_THRESHOLD;
    if (!*terminated) *reward = 1.0;
    else if (e->beyond < 0) { e->beyond = 0; *reward = 1.0; }
    else { e->beyond++; *reward = 0.0; }
    e->elapsed++;
    *truncated = e->elapsed >= MAX_EPISODE_STEPS;
}

/* ---- the batch served over rlay ---- */
typedef struct {
    uint32_t n;
    cartpole *envs;
    float *obs;                  /* n x 4, np.array(state, dtype=np.float32) of each */
    int rgb;
    unsigned char *frames;       /* n x HEIGHT x WIDTH x 3 */
} batch;

static void write_obs(batch *b, rlay_ctx *c) {
    uint32_t shape[2], i;
    int k;
    for (i = 0; i < b->n; i++)
        for (k = 0; k < 4; k++) b->obs[4 * i + k] = (float)b->envs[i].s[k];
    shape[0] = b->n; shape[1] = 4;
    if (b->n == 1) rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, shape + 1, b->obs);   /* one env: unbatched */
    else rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 2, shape, b->obs);
}

static int on_reset(void *ud, rlay_ctx *c, const rlay_cmd *cmd) {
    batch *b = (batch *)ud;
    const rlay_value *state = rlay_map_get(cmd->options, "state");
    const rlay_value *lo = rlay_map_get(cmd->options, "low"), *hi = rlay_map_get(cmd->options, "high");
    double low = -0.05, high = 0.05, row[4];
    uint32_t i;
    int k;
    if (state) {   /* checked before any sub-env is touched */
        const rlay_tensor *t = state->type == RLAY_T_TENSOR ? state->v.t : NULL;
        int ok = t && t->dtype == RLAY_DT_FLOAT64 &&
                 (b->n == 1 ? t->ndim == 1 && t->shape[0] == 4 : t->ndim == 2 && t->shape[0] == b->n && t->shape[1] == 4);
        if (!ok && b->n == 1)
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError", "the reset option 'state' must be a float64 tensor of shape (4,)");
        if (!ok)
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError", "the reset option 'state' must be a float64 tensor of shape (%u, 4)", b->n);
    } else {
        if ((lo && !rlay_as_double(lo, &low)) || (hi && !rlay_as_double(hi, &high)))
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError", "the reset options 'low' and 'high' must be numbers");
        if (low > high)
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError", "Lower bound (%g) must be lower than higher bound (%g).", low, high);
    }
    for (i = 0; i < b->n; i++) {
        if (!cmd->reset_mask[i]) continue;   /* a partial reset leaves the others as they are */
        if (state) for (k = 0; k < 4; k++) row[k] = rlay_tensor_get(state->v.t, 4 * (size_t)i + (size_t)k);
        reset_one(&b->envs[i], cmd->seeded[i], cmd->seeds[i], low, high, state ? row : NULL, (int)i);
    }
    write_obs(b, c);
    return 0;
}

static int on_step(void *ud, rlay_ctx *c, const rlay_cmd *cmd, rlay_step_out *out) {
    batch *b = (batch *)ud;
    uint32_t i;
    for (i = 0; i < b->n; i++) {
        cartpole *e = &b->envs[i];
        double reward = 0;
        int terminated = 0, truncated = 0;
        int64_t action = 0;
        if (b->n > 1 && cmd->autoreset[i]) {
            reset_one(e, 0, 0, -0.05, 0.05, NULL, (int)i);   /* next-step autoreset: reward 0, flags false */
        } else {
            rlay_as_int64_at(cmd->action, i, &action);   /* the SDK checked it against Discrete(2) */
            step_one(e, action, &reward, &terminated, &truncated);
        }
        if (b->n == 1) { out->reward = reward; out->terminated = terminated; out->truncated = truncated; }
        else { out->rewards[i] = reward; out->terminations[i] = (unsigned char)terminated; out->truncations[i] = (unsigned char)truncated; }
    }
    write_obs(b, c);
    return 0;
}

/* A filled convex polygon (math coordinates, y up), Gymnasium's layout without antialiasing. */
static void fill_poly(unsigned char *img, const double *px, const double *py, int n, const unsigned char *rgb) {
    double minx = px[0], maxx = px[0], miny = py[0], maxy = py[0];
    int i, x, y;
    for (i = 1; i < n; i++) {
        minx = fmin(minx, px[i]); maxx = fmax(maxx, px[i]); miny = fmin(miny, py[i]); maxy = fmax(maxy, py[i]);
    }
    for (y = (int)fmax(0, floor(miny)); y <= (int)fmin(HEIGHT - 1, ceil(maxy)); y++)
        for (x = (int)fmax(0, floor(minx)); x <= (int)fmin(WIDTH - 1, ceil(maxx)); x++) {
            int pos = 0, neg = 0;
            for (i = 0; i < n; i++) {
                int j = (i + 1) % n;
                double cr = (px[j] - px[i]) * (y + 0.5 - py[i]) - (py[j] - py[i]) * (x + 0.5 - px[i]);
                if (cr > 0) pos = 1; else if (cr < 0) neg = 1;
            }
            if (!(pos && neg)) memcpy(img + ((size_t)(HEIGHT - 1 - y) * WIDTH + (size_t)x) * 3, rgb, 3);
        }
}

static void render_one(const cartpole *e, unsigned char *frame) {
    static const unsigned char black[3] = {0, 0, 0}, pole[3] = {202, 152, 101}, axle[3] = {129, 132, 203};
    double scale = WIDTH / (x_threshold * 2), polelen = scale * (2 * length);
    double cartx = e->s[0] * scale + WIDTH / 2.0, carty = 100, axley = carty + 30 / 4.0;
    double cx[4] = {-25, -25, 25, 25}, cy[4] = {-15, 15, 15, -15};
    double lx[4] = {-5, -5, 5, 5}, ly[4] = {-5, polelen - 5, polelen - 5, -5}, qx[4], qy[4];
    int i, x, y;
    memset(frame, 255, (size_t)WIDTH * HEIGHT * 3);
    for (i = 0; i < 4; i++) { cx[i] += cartx; cy[i] += carty; }
    fill_poly(frame, cx, cy, 4, black);
    for (i = 0; i < 4; i++) {   /* rotate by -theta, as pygame's rotate_rad(-x[2]) */
        double a = -e->s[2];
        qx[i] = lx[i] * cos(a) - ly[i] * sin(a) + cartx;
        qy[i] = lx[i] * sin(a) + ly[i] * cos(a) + axley;
    }
    fill_poly(frame, qx, qy, 4, pole);
    for (y = -5; y <= 5; y++)
        for (x = -5; x <= 5; x++) {
            int px = (int)cartx + x, py = (int)axley + y;
            if (x * x + y * y <= 25 && px >= 0 && px < WIDTH && py >= 0 && py < HEIGHT)
                memcpy(frame + ((size_t)(HEIGHT - 1 - py) * WIDTH + (size_t)px) * 3, axle, 3);
        }
    for (x = 0; x < WIDTH; x++) memcpy(frame + ((size_t)(HEIGHT - 1 - (int)carty) * WIDTH + (size_t)x) * 3, black, 3);
}

static int on_render(void *ud, rlay_ctx *c) {
    batch *b = (batch *)ud;
    uint32_t shape[3] = {HEIGHT, WIDTH, 3}, i;
    size_t size = (size_t)WIDTH * HEIGHT * 3;
    if (b->n > 1) rlay_put_array(rlay_frame(c), b->n);   /* section 10: one frame per sub-env */
    for (i = 0; i < b->n; i++) {
        render_one(&b->envs[i], b->frames + i * size);
        rlay_put_tensor(rlay_frame(c), RLAY_DT_UINT8, 3, shape, b->frames + i * size);
    }
    return 0;
}

static int on_call(void *ud, rlay_ctx *c, const rlay_cmd *cmd) {
    batch *b = (batch *)ud;
    uint32_t four = 4, i;
    if (cmd->name_len == 9 && memcmp(cmd->name, "get_state", 9) == 0) {
        if (b->n > 1) rlay_put_array(rlay_result(c), b->n);   /* section 10: one value per sub-env */
        for (i = 0; i < b->n; i++) rlay_put_tensor(rlay_result(c), RLAY_DT_FLOAT64, 1, &four, b->envs[i].s);
        return 0;
    }
    return rlay_fail(c, RLAY_E_NOT_SUPPORTED, NULL, "cartpole has no function named '%.*s'", (int)cmd->name_len, cmd->name);
}

int main(int argc, char **argv) {
    static batch env;
    rlay_callbacks cb = {on_reset, on_step, on_render, on_call, NULL};
    const char *address = NULL, *render_mode = NULL;
    int connect = 0, mode_given = 0, shm = 1, i, err;
    long n = 1, handshake_ms = RLAY_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    uint32_t four = 4;
    float high[4];
    rlay_ctx *c;
    rlay_w *m;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--connect") == 0) {
            connect = argv[i][2] == 'c';
            mode_given = 1;
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) address = argv[++i];
        } else if (strcmp(argv[i], "--render-mode") == 0 && i + 1 < argc) {
            render_mode = argv[++i];
        } else if (strcmp(argv[i], "--num-envs") == 0 && i + 1 < argc) {
            char *end;
            n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 65536) { fprintf(stderr, "cartpole: --num-envs takes a number in 1..65536\n"); return 2; }
        } else if (strcmp(argv[i], "--handshake-timeout") == 0 && i + 1 < argc) {
            char *end;
            handshake_ms = strtol(argv[++i], &end, 10);
            if (*end || handshake_ms < 0 || handshake_ms > 86400000L) { fprintf(stderr, "cartpole: --handshake-timeout takes milliseconds in 0..86400000\n"); return 2; }
        } else if (strcmp(argv[i], "--no-shm") == 0) {
            shm = 0;
        } else {
            fprintf(stderr, "usage: %s (--listen|--connect) [ADDRESS] [--num-envs N] [--render-mode rgb_array] [--handshake-timeout MS] [--no-shm]\n", argv[0]);
            return 2;
        }
    }
    if (!mode_given) {   /* launched (spec section 15): RLAY_MODE decides, listen when unset */
        const char *mode = getenv("RLAY_MODE");
        if (mode && strcmp(mode, "dial") == 0) connect = 1;
        else if (mode && *mode && strcmp(mode, "listen") != 0) {
            fprintf(stderr, "%s: RLAY_MODE must be 'listen' or 'dial', got '%.40s'\n", "cartpole", mode);
            return 2;
        }
    }
    if (!address) address = getenv("RLAY_ADDRESS");
    if (!address) { fprintf(stderr, "cartpole: no address: pass one or set RLAY_ADDRESS\n"); return 2; }
    if (render_mode && strcmp(render_mode, "rgb_array") != 0) {
        fprintf(stderr, "cartpole: render mode '%s' is not offered (only rgb_array)\n", render_mode);
        return 2;
    }
    env.n = (uint32_t)n;
    env.rgb = render_mode != NULL;
    env.envs = (cartpole *)calloc(env.n, sizeof *env.envs);
    env.obs = (float *)calloc(env.n, 4 * sizeof *env.obs);
    if (env.rgb) env.frames = (unsigned char *)malloc((size_t)env.n * WIDTH * HEIGHT * 3);
    if (!env.envs || !env.obs || (env.rgb && !env.frames)) { fprintf(stderr, "cartpole: out of memory\n"); return 1; }
    for (i = 0; i < (int)env.n; i++) { env.envs[i].gravity = 9.8; env.envs[i].force_mag = 10.0; env.envs[i].tau = 0.02; }

    c = rlay_new();
    rlay_set_shm(c, shm);   /* on by default: used on unix sockets when the agent side has it too */
    {   /* spec section 7.1/15: the shared secret, set by a launcher (or the user) */
        const char *token = getenv("RLAY_TOKEN");
        if (token && *token) rlay_set_token(c, token, strlen(token));
    }
    /* Box(-high, high, float32), high = [x_threshold * 2, inf, theta_threshold_radians * 2, inf] */
    high[0] = (float)(x_threshold * 2); high[1] = INFINITY; high[2] = (float)(THETA_THRESHOLD * 2); high[3] = INFINITY;
    {
        float low[4];
        for (i = 0; i < 4; i++) low[i] = -high[i];
        rlay_space_box(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, &four, low, high);
    }
    rlay_space_discrete(rlay_action_space(c), 2, 0);
    m = rlay_metadata(c);
    rlay_put_key(m, "render_modes"); rlay_put_array(m, 1); rlay_put_str(m, "rgb_array");
    rlay_put_key(m, "render_fps"); rlay_put_int(m, 50);
    if (env.n > 1) { rlay_put_key(m, "autoreset_mode"); rlay_put_str(m, "next_step"); }
    rlay_set_name(c, "CartPole-v1");
    rlay_set_render_mode(c, render_mode);
    rlay_set_num_envs(c, env.n);
    rlay_set_handshake_timeout(c, (int)handshake_ms);
    /* section 19: typed attributes, one value per sub-env (stride: the next CartPole's) */
    rlay_attr_float(c, "gravity", &env.envs[0].gravity, sizeof(cartpole), 0.0, 1000.0, 0, "m/s^2, Gymnasium's gravity");
    rlay_attr_float(c, "force_mag", &env.envs[0].force_mag, sizeof(cartpole), 0.0, 1000.0, 0, "N pushed by each action");
    rlay_attr_float(c, "tau", &env.envs[0].tau, sizeof(cartpole), 1e-4, 1.0, 0, "seconds between state updates");
    if (!env.rgb) cb.render = NULL;

    if (connect ? rlay_connect(c, address) : rlay_listen(c, address)) {
        fprintf(stderr, "cartpole: %s: %s\n", rlay_error_name(rlay_error(c)), rlay_errmsg(c));
        rlay_free(c);
        return 1;
    }
    if (!connect) { printf("RLAY_LISTENING %s\n", rlay_address(c)); fflush(stdout); }
    err = rlay_serve(c, &cb, &env);
    /* 0 after CLOSE or the agent ending the stream between commands (section 8); else an error. */
    if (err) fprintf(stderr, "cartpole: %s: %s\n", rlay_error_name(err), rlay_errmsg(c));
    {
        const char *why;
        int dropped = rlay_dropped(c, &why);   /* connections that failed before the session */
        if (dropped) fprintf(stderr, "cartpole: dropped %d connection(s) before the session; the last: %s\n", dropped, why);
    }
    rlay_free(c);
    free(env.envs); free(env.obs); free(env.frames);
    return err ? 1 : 0;
}
