/* The smallest useful env side, for benchmarks: obs 4 x float32 (a counter), Discrete(2).
   Loop style, as a game's frame loop would do it (here the loop only waits for commands).

   Usage: trivial --listen [ADDRESS] | --connect [ADDRESS]   (default: $RLAY_ADDRESS, listen)
   Prints RLAY_LISTENING <bound address> when listening. Episodes end after 1000 steps. */
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

int main(int argc, char **argv) {
    const char *address = NULL;
    int connect = 0, i, r;
    uint32_t four = 4;
    float obs[4] = {0, 0, 0, 0};
    long t = 0;
    rlay_cmd cmd;
    rlay_ctx *c;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--connect") == 0) {
            connect = argv[i][2] == 'c';
            if (i + 1 < argc) address = argv[++i];
        } else {
            fprintf(stderr, "usage: %s (--listen|--connect) [ADDRESS]\n", argv[0]);
            return 2;
        }
    }
    if (!address) address = getenv("RLAY_ADDRESS");
    if (!address) { fprintf(stderr, "trivial: no address: pass one or set RLAY_ADDRESS\n"); return 2; }
    c = rlay_new();
    rlay_space_box_uniform(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, &four, -INFINITY, INFINITY);
    rlay_space_discrete(rlay_action_space(c), 2, 0);
    rlay_set_name(c, "trivial");
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
            t = 0;
            obs[0] = obs[1] = obs[2] = obs[3] = 0;
            rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &four, obs);
            rlay_reply_reset(c);
            break;
        case RLAY_STEP:
            rlay_as_int64(cmd.action, &a);
            t++;
            obs[0] = (float)t; obs[1] = (float)a;
            rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &four, obs);
            rlay_reply_step(c, 1.0, 0, t >= 1000);
            break;
        default:
            rlay_reply_default(c, &cmd);
        }
    }
    r = rlay_error(c);
    if (r && r != RLAY_E_PEER_CLOSED) fprintf(stderr, "trivial: %s\n", rlay_errmsg(c));
    rlay_free(c);
    return r && r != RLAY_E_PEER_CLOSED ? 1 : 0;
}
