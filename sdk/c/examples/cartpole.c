/* CartPole-v1 in C, served as a Gymnasium env over rlay (callback style).

   The dynamics are Gymnasium's CartPole-v1 (gymnasium/envs/classic_control/cartpole.py):
   euler integration in float64 with the same expressions in the same order, float32
   observations, reward 1.0 (0.0 for steps after termination), termination at |x| > 2.4 or
   |theta| > 12 degrees, and the 500-step truncation that gym.make's TimeLimit adds.

   Reset draws the state uniformly in [low, high) (default [-0.05, 0.05], options "low"/"high"
   as in Gymnasium) from this program's own PRNG seeded by `seed`; numpy's stream is not
   reproduced. The option {"state": float64 tensor (4,)} sets the initial state exactly.
   CALL "get_state" returns the float64 state.

   Usage: cartpole --listen ADDRESS     wait for rlay.ClientEnv (prints RLAY_LISTENING <bound>)
          cartpole --connect ADDRESS    dial rlay.ServerEnv
          [--render-mode rgb_array]     RENDER answers a 400x600x3 uint8 frame
   Without ADDRESS (or without either flag: listen) the address is $RLAY_ADDRESS.
*/
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

#include <math.h>

#define WIDTH 600
#define HEIGHT 400

/* Gymnasium's constants, computed with the same expressions. */
static const double gravity = 9.8, masscart = 1.0, masspole = 0.1, length = 0.5;
static const double force_mag = 10.0, tau = 0.02, x_threshold = 2.4;
#define TOTAL_MASS (masspole + masscart)
#define POLEMASS_LENGTH (masspole * length)
#define THETA_THRESHOLD (12 * 2 * 3.141592653589793 / 360)   /* 12 * 2 * math.pi / 360 */
#define MAX_EPISODE_STEPS 500

typedef struct {
    double s[4];                 /* x, x_dot, theta, theta_dot */
    float obs[4];
    long elapsed;                /* TimeLimit's _elapsed_steps */
    long beyond;                 /* steps_beyond_terminated; -1 is None */
    uint64_t rng[4];
    int seeded, rgb;
    unsigned char *frame;
} cartpole;

/* xoshiro256** seeded with splitmix64 */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static void seed_rng(cartpole *e, uint64_t seed) {
    int i;
    for (i = 0; i < 4; i++) e->rng[i] = splitmix64(&seed);
    e->seeded = 1;
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static double uniform01(cartpole *e) {
    uint64_t *s = e->rng, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

static void write_obs(cartpole *e, rlay_ctx *c) {
    uint32_t four = 4;
    int i;
    for (i = 0; i < 4; i++) e->obs[i] = (float)e->s[i];   /* np.array(state, dtype=np.float32) */
    rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &four, e->obs);
}

static int on_reset(void *ud, rlay_ctx *c, const rlay_cmd *cmd) {
    cartpole *e = (cartpole *)ud;
    const rlay_value *state = rlay_map_get(cmd->options, "state");
    double low = -0.05, high = 0.05;
    int i;
    if (cmd->has_seed) seed_rng(e, cmd->seed);
    else if (!e->seeded) seed_rng(e, (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32));
    if (state) {
        const rlay_tensor *t = state->type == RLAY_T_TENSOR ? state->v.t : NULL;
        if (!t || t->dtype != RLAY_DT_FLOAT64 || t->ndim != 1 || t->shape[0] != 4)
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError",
                             "the reset option 'state' must be a float64 tensor of shape (4,)");
        for (i = 0; i < 4; i++) e->s[i] = rlay_tensor_get(t, i);
    } else {
        const rlay_value *lo = rlay_map_get(cmd->options, "low"), *hi = rlay_map_get(cmd->options, "high");
        if ((lo && !rlay_as_double(lo, &low)) || (hi && !rlay_as_double(hi, &high)))
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError", "the reset options 'low' and 'high' must be numbers");
        if (low > high)
            return rlay_fail(c, RLAY_E_ENV_EXCEPTION, "ValueError", "Lower bound (%g) must be lower than higher bound (%g).", low, high);
        for (i = 0; i < 4; i++) e->s[i] = low + (high - low) * uniform01(e);
    }
    e->elapsed = 0;
    e->beyond = -1;
    write_obs(e, c);
    return 0;
}

static int on_step(void *ud, rlay_ctx *c, const rlay_cmd *cmd, rlay_step_out *out) {
    cartpole *e = (cartpole *)ud;
    double x = e->s[0], x_dot = e->s[1], theta = e->s[2], theta_dot = e->s[3];
    double force, costheta, sintheta, temp, thetaacc, xacc;
    int64_t action = 0;
    int terminated;
    rlay_as_int64(cmd->action, &action);   /* the SDK checked it against Discrete(2) */
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
    terminated = x < -x_threshold || x > x_threshold || theta < -THETA_THRESHOLD || theta > THETA_THRESHOLD;
    if (!terminated) out->reward = 1.0;
    else if (e->beyond < 0) { e->beyond = 0; out->reward = 1.0; }
    else { e->beyond++; out->reward = 0.0; }
    out->terminated = terminated;
    e->elapsed++;
    out->truncated = e->elapsed >= MAX_EPISODE_STEPS;
    write_obs(e, c);
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

static int on_render(void *ud, rlay_ctx *c) {
    static const unsigned char black[3] = {0, 0, 0}, pole[3] = {202, 152, 101}, axle[3] = {129, 132, 203};
    cartpole *e = (cartpole *)ud;
    uint32_t shape[3] = {HEIGHT, WIDTH, 3};
    double scale = WIDTH / (x_threshold * 2), polelen = scale * (2 * length);
    double cartx = e->s[0] * scale + WIDTH / 2.0, carty = 100, axley = carty + 30 / 4.0;
    double cx[4] = {-25, -25, 25, 25}, cy[4] = {-15, 15, 15, -15};
    double lx[4] = {-5, -5, 5, 5}, ly[4] = {-5, polelen - 5, polelen - 5, -5}, qx[4], qy[4];
    int i, x, y;
    memset(e->frame, 255, (size_t)WIDTH * HEIGHT * 3);
    for (i = 0; i < 4; i++) { cx[i] += cartx; cy[i] += carty; }
    fill_poly(e->frame, cx, cy, 4, black);
    for (i = 0; i < 4; i++) {   /* rotate by -theta, as pygame's rotate_rad(-x[2]) */
        double a = -e->s[2];
        qx[i] = lx[i] * cos(a) - ly[i] * sin(a) + cartx;
        qy[i] = lx[i] * sin(a) + ly[i] * cos(a) + axley;
    }
    fill_poly(e->frame, qx, qy, 4, pole);
    for (y = -5; y <= 5; y++)
        for (x = -5; x <= 5; x++) {
            int px = (int)cartx + x, py = (int)axley + y;
            if (x * x + y * y <= 25 && px >= 0 && px < WIDTH && py >= 0 && py < HEIGHT)
                memcpy(e->frame + ((size_t)(HEIGHT - 1 - py) * WIDTH + (size_t)px) * 3, axle, 3);
        }
    for (x = 0; x < WIDTH; x++) memcpy(e->frame + ((size_t)(HEIGHT - 1 - (int)carty) * WIDTH + (size_t)x) * 3, black, 3);
    rlay_put_tensor(rlay_frame(c), RLAY_DT_UINT8, 3, shape, e->frame);
    return 0;
}

static int on_call(void *ud, rlay_ctx *c, const rlay_cmd *cmd) {
    cartpole *e = (cartpole *)ud;
    uint32_t four = 4;
    if (cmd->name_len == 9 && memcmp(cmd->name, "get_state", 9) == 0) {
        rlay_put_tensor(rlay_result(c), RLAY_DT_FLOAT64, 1, &four, e->s);
        return 0;
    }
    return rlay_fail(c, RLAY_E_NOT_SUPPORTED, NULL, "cartpole has no function named '%.*s'", (int)cmd->name_len, cmd->name);
}

int main(int argc, char **argv) {
    static cartpole env;
    rlay_callbacks cb = {on_reset, on_step, on_render, on_call, NULL};
    const char *address = NULL, *render_mode = NULL;
    int connect = 0, i, err;
    uint32_t four = 4;
    float high[4];
    rlay_ctx *c;
    rlay_w *m;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--connect") == 0) {
            connect = argv[i][2] == 'c';
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) address = argv[++i];
        } else if (strcmp(argv[i], "--render-mode") == 0 && i + 1 < argc) {
            render_mode = argv[++i];
        } else {
            fprintf(stderr, "usage: %s (--listen|--connect) [ADDRESS] [--render-mode rgb_array]\n", argv[0]);
            return 2;
        }
    }
    if (!address) address = getenv("RLAY_ADDRESS");
    if (!address) { fprintf(stderr, "cartpole: no address: pass one or set RLAY_ADDRESS\n"); return 2; }
    if (render_mode && strcmp(render_mode, "rgb_array") != 0) {
        fprintf(stderr, "cartpole: render mode '%s' is not offered (only rgb_array)\n", render_mode);
        return 2;
    }
    env.rgb = render_mode != NULL;
    if (env.rgb && !(env.frame = (unsigned char *)malloc((size_t)WIDTH * HEIGHT * 3))) return 1;

    c = rlay_new();
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
    rlay_set_name(c, "CartPole-v1");
    rlay_set_render_mode(c, render_mode);
    if (!env.rgb) cb.render = NULL;

    if (connect ? rlay_connect(c, address) : rlay_listen(c, address)) {
        fprintf(stderr, "cartpole: %s: %s\n", rlay_error_name(rlay_error(c)), rlay_errmsg(c));
        rlay_free(c);
        return 1;
    }
    if (!connect) { printf("RLAY_LISTENING %s\n", rlay_address(c)); fflush(stdout); }
    err = rlay_serve(c, &cb, &env);
    /* The agent closing the connection between commands (no CLOSE) is a normal end too. */
    if (err && err != RLAY_E_PEER_CLOSED) fprintf(stderr, "cartpole: %s: %s\n", rlay_error_name(err), rlay_errmsg(c));
    rlay_free(c);
    free(env.frame);
    return err && err != RLAY_E_PEER_CLOSED ? 1 : 0;
}
