/* The smallest useful env side, for benchmarks: obs 4 x float32 (a counter), Discrete(2).
   Loop style, as a game's frame loop would do it (here the loop only waits for commands).
   With --num-envs N it hosts N such sub-envs on one connection (spec section 10), with
   next-step autoreset; the code is the same for N = 1, where nothing travels batched.

   Usage: trivial --listen [ADDRESS] | --connect [ADDRESS]   (default: $RLAY_ADDRESS, listen)
                  [--num-envs N]
   Prints RLAY_LISTENING <bound address> when listening. Episodes end after 1000 steps. */
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

int main(int argc, char **argv) {
    const char *address = NULL;
    int connect = 0, mode_given = 0, i, r;
    long n = 1;
    uint32_t shape[2], k;
    float *obs;
    long *t;
    double *reward;
    unsigned char *truncated, *terminated;
    rlay_cmd cmd;
    rlay_ctx *c;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--connect") == 0) {
            connect = argv[i][2] == 'c';
            mode_given = 1;
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) address = argv[++i];
        } else if (strcmp(argv[i], "--num-envs") == 0 && i + 1 < argc) {
            char *end;
            n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1000000) { fprintf(stderr, "trivial: --num-envs takes a number in 1..1000000\n"); return 2; }
        } else {
            fprintf(stderr, "usage: %s (--listen|--connect) [ADDRESS] [--num-envs N]\n", argv[0]);
            return 2;
        }
    }
    if (!mode_given) {   /* launched (spec section 15): RLAY_MODE decides, listen when unset */
        const char *mode = getenv("RLAY_MODE");
        if (mode && strcmp(mode, "dial") == 0) connect = 1;
        else if (mode && *mode && strcmp(mode, "listen") != 0) {
            fprintf(stderr, "%s: RLAY_MODE must be 'listen' or 'dial', got '%.40s'\n", "trivial", mode);
            return 2;
        }
    }
    if (!address) address = getenv("RLAY_ADDRESS");
    if (!address) { fprintf(stderr, "trivial: no address: pass one or set RLAY_ADDRESS\n"); return 2; }
    shape[0] = (uint32_t)n; shape[1] = 4;
    obs = (float *)calloc((size_t)n, 4 * sizeof *obs);
    t = (long *)calloc((size_t)n, sizeof *t);
    reward = (double *)calloc((size_t)n, sizeof *reward);
    terminated = (unsigned char *)calloc((size_t)n, 2);
    if (!obs || !t || !reward || !terminated) { fprintf(stderr, "trivial: out of memory\n"); return 1; }
    truncated = terminated + n;
    c = rlay_new();
    {   /* spec section 7.1/15: the shared secret, set by a launcher (or the user) */
        const char *token = getenv("RLAY_TOKEN");
        if (token && *token) rlay_set_token(c, token, strlen(token));
    }
    rlay_space_box_uniform(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, shape + 1, -INFINITY, INFINITY);
    rlay_space_discrete(rlay_action_space(c), 2, 0);
    rlay_set_name(c, "trivial");
    rlay_set_num_envs(c, (uint32_t)n);   /* N > 1: metadata.autoreset_mode is "next_step" by default */
    if (connect ? rlay_connect(c, address) : rlay_listen(c, address)) {
        fprintf(stderr, "trivial: %s\n", rlay_errmsg(c));
        rlay_free(c);
        return 1;
    }
    if (!connect) { printf("RLAY_LISTENING %s\n", rlay_address(c)); fflush(stdout); }
    while ((r = rlay_poll(c, &cmd, -1)) > 0) {
        int64_t a = 0;
        switch (cmd.kind) {
        case RLAY_RESET:
            for (k = 0; k < shape[0]; k++)
                if (cmd.reset_mask[k]) { t[k] = 0; obs[4 * k] = obs[4 * k + 1] = obs[4 * k + 2] = obs[4 * k + 3] = 0; }
            rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, n > 1 ? 2 : 1, n > 1 ? shape : shape + 1, obs);
            rlay_reply_reset(c);
            break;
        case RLAY_STEP:
            for (k = 0; k < shape[0]; k++) {
                if (n > 1 && cmd.autoreset[k]) {   /* next-step autoreset */
                    t[k] = 0; obs[4 * k] = obs[4 * k + 1] = 0;
                    reward[k] = 0; truncated[k] = 0;
                    continue;
                }
                rlay_as_int64_at(cmd.action, k, &a);
                t[k]++;
                obs[4 * k] = (float)t[k]; obs[4 * k + 1] = (float)a;
                reward[k] = 1.0; truncated[k] = t[k] >= 1000;
            }
            rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, n > 1 ? 2 : 1, n > 1 ? shape : shape + 1, obs);
            rlay_reply_step_batch(c, reward, terminated, truncated);
            break;
        default:
            rlay_reply_default(c, &cmd);
        }
    }
    r = rlay_error(c);
    if (r) fprintf(stderr, "trivial: %s: %s\n", rlay_error_name(r), rlay_errmsg(c));
    rlay_free(c);
    free(obs); free(t); free(reward); free(terminated);
    return r ? 1 : 0;
}
