/* arena.c - a multi-agent game (spec section 18) for rlay.pettingzoo.ClientParallelEnv /
   ServerParallelEnv: three agents with different spaces; two leave during an episode (one
   terminated, one truncated) and one joins mid-episode. The same rules in Python are
   rlay/testing/arena.py; the tests compare the two step by step.

     hunter  obs Box(-inf, inf, (3,), float32) = [t, base, score]   action Discrete(4)
             reward 1 when the action is (t + base) % 4; truncated at t == 8; info {"score": score}
     scout   obs Box(-10, 10, (2,), float32), its position            action Box(-1, 1, (2,), float32)
             moves by the action (float32, clipped to +-10); reward -(|x| + |y|); terminated at t == 4
     medic   joins at t == 2                                          obs Discrete(16) = t % 16
             action MultiDiscrete([3, 2]); reward a[0] + a[1]; terminated at t == 6

   reset(seed): t = 0, base = seed % 100 (no seed: the last base), live agents hunter and scout.
   Loop style (rlay_poll), as a game with its own frame loop would do it.

     arena --listen ADDR | --connect ADDR | (nothing: RLAY_MODE and RLAY_ADDRESS decide)       */
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HUNTER, SCOUT, MEDIC };
static const char *const NAMES[3] = {"hunter", "scout", "medic"};
static const int END[3] = {8, 4, 6};

typedef struct {
    uint64_t base;
    int t;
    double score;
    float pos[2];
    int live[3];            /* which agents are live */
    float hunter_obs[3];    /* observation buffers: referenced by the writer until the reply */
    int64_t medic_obs;
} arena;

static void declare(rlay_ctx *c) {
    uint32_t two = 2, three = 3;
    int64_t nvec[2] = {3, 2};
    rlay_w *o = rlay_observation_space(c), *a = rlay_action_space(c), *m = rlay_metadata(c);
    rlay_space_dict(o, 3);
    rlay_put_key(o, "hunter"); rlay_space_box_uniform(o, RLAY_DT_FLOAT32, 1, &three, -INFINITY, INFINITY);
    rlay_put_key(o, "scout"); rlay_space_box_uniform(o, RLAY_DT_FLOAT32, 1, &two, -10, 10);
    rlay_put_key(o, "medic"); rlay_space_discrete(o, 16, 0);
    rlay_space_dict(a, 3);
    rlay_put_key(a, "hunter"); rlay_space_discrete(a, 4, 0);
    rlay_put_key(a, "scout"); rlay_space_box_uniform(a, RLAY_DT_FLOAT32, 1, &two, -1, 1);
    rlay_put_key(a, "medic"); rlay_space_multi_discrete(a, 1, &two, nvec, NULL);
    rlay_put_key(m, "render_modes"); rlay_put_array(m, 0);
    rlay_put_key(m, "name"); rlay_put_str(m, "arena_v0");
    rlay_set_name(c, "arena_v0");
    rlay_set_multi_agent(c, 1);
}

/* Writes agent k's observation into the obs map (key, then value). */
static void put_obs(rlay_ctx *c, arena *g, int k) {
    uint32_t two = 2, three = 3;
    rlay_w *o = rlay_obs(c);
    rlay_put_key(o, NAMES[k]);
    if (k == HUNTER) {
        g->hunter_obs[0] = (float)g->t; g->hunter_obs[1] = (float)g->base; g->hunter_obs[2] = (float)g->score;
        rlay_put_tensor(o, RLAY_DT_FLOAT32, 1, &three, g->hunter_obs);
    } else if (k == SCOUT) {
        rlay_put_tensor(o, RLAY_DT_FLOAT32, 1, &two, g->pos);
    } else {
        g->medic_obs = g->t % 16;
        rlay_put_int(o, g->medic_obs);
    }
}

static int on_reset(rlay_ctx *c, arena *g, const rlay_cmd *cmd) {
    static const char *const ids[2] = {"hunter", "scout"};
    if (cmd->has_seed) g->base = cmd->seed % 100;
    g->t = 0; g->score = 0; g->pos[0] = g->pos[1] = 0;
    g->live[HUNTER] = g->live[SCOUT] = 1; g->live[MEDIC] = 0;
    rlay_put_map(rlay_obs(c), 2);
    put_obs(c, g, HUNTER);
    put_obs(c, g, SCOUT);
    return rlay_reply_agents(c, 2, ids, NULL, NULL, NULL);   /* infos: nothing written, {} each */
}

static int on_step(rlay_ctx *c, arena *g, const rlay_cmd *cmd) {
    const char *ids[3];
    double rewards[3];
    unsigned char term[3], trunc[3];
    int keys[3], n = 0, i, k;
    rlay_w *info = rlay_info(c);
    g->t++;
    for (k = 0; k < 3; k++) {   /* the SDK checked: exactly the live agents acted, each in its space */
        const rlay_value *a = rlay_agent_action(cmd, NAMES[k]);
        double r = 0;
        if (!g->live[k]) continue;
        if (k == HUNTER) {
            int64_t x;
            rlay_as_int64(a, &x);
            r = x == (int64_t)((g->t + g->base) % 4) ? 1.0 : 0.0;
            g->score += r;
        } else if (k == SCOUT) {
            for (i = 0; i < 2; i++) {
                float p = g->pos[i] + (float)rlay_tensor_get(a->v.t, (size_t)i);
                g->pos[i] = p > 10 ? 10 : p < -10 ? -10 : p;
            }
            r = -(fabs((double)g->pos[0]) + fabs((double)g->pos[1]));
        } else {
            int64_t a0, a1;
            rlay_as_int64_at(a, 0, &a0); rlay_as_int64_at(a, 1, &a1);
            r = (double)(a0 + a1);
        }
        keys[n] = k; rewards[n++] = r;
    }
    if (g->t == 2) { keys[n] = MEDIC; rewards[n++] = 0.0; g->live[MEDIC] = 1; }   /* the medic joins */
    rlay_put_map(rlay_obs(c), (uint32_t)n);
    for (i = 0; i < n; i++) {
        k = keys[i];
        ids[i] = NAMES[k];
        term[i] = k != HUNTER && g->t == END[k];
        trunc[i] = k == HUNTER && g->t == END[k];
        put_obs(c, g, k);
        rlay_put_key(info, NAMES[k]);
        if (k == HUNTER) { rlay_put_map(info, 1); rlay_put_key(info, "score"); rlay_put_float(info, g->score); }
        else rlay_put_map(info, 0);
    }
    for (i = 0; i < n; i++) if (term[i] || trunc[i]) g->live[keys[i]] = 0;   /* they leave */
    return rlay_reply_agents(c, (uint32_t)n, ids, rewards, term, trunc);
}

int main(int argc, char **argv) {
    static arena g;
    const char *address = NULL;
    int connect = 0, mode_given = 0, i, err;
    rlay_ctx *c;
    rlay_cmd cmd;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--connect") == 0) {
            connect = argv[i][2] == 'c';
            mode_given = 1;
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) address = argv[++i];
        } else {
            fprintf(stderr, "usage: %s (--listen|--connect) [ADDRESS]\n", argv[0]);
            return 2;
        }
    }
    if (!mode_given) {   /* launched (spec section 15): RLAY_MODE decides, listen when unset */
        const char *mode = getenv("RLAY_MODE");
        if (mode && strcmp(mode, "dial") == 0) connect = 1;
        else if (mode && *mode && strcmp(mode, "listen") != 0) {
            fprintf(stderr, "arena: RLAY_MODE must be 'listen' or 'dial', got '%.40s'\n", mode);
            return 2;
        }
    }
    if (!address) address = getenv("RLAY_ADDRESS");
    if (!address) { fprintf(stderr, "arena: no address: pass one or set RLAY_ADDRESS\n"); return 2; }

    c = rlay_new();
    declare(c);   /* rlay_listen/rlay_connect take $RLAY_TOKEN themselves (section 15) */
    if (connect ? rlay_connect(c, address) : rlay_listen(c, address)) {
        fprintf(stderr, "arena: %s: %s\n", rlay_error_name(rlay_error(c)), rlay_errmsg(c));
        rlay_free(c);
        return 1;
    }
    if (!connect) { printf("RLAY_LISTENING %s\n", rlay_address(c)); fflush(stdout); }
    while (rlay_poll(c, &cmd, -1) > 0) {   /* a game passes 0 once per frame instead */
        if (cmd.kind == RLAY_RESET) on_reset(c, &g, &cmd);
        else if (cmd.kind == RLAY_MULTI_STEP) on_step(c, &g, &cmd);
        else rlay_reply_default(c, &cmd);   /* CLOSE; NOT_SUPPORTED for RENDER and CALL */
    }
    err = rlay_error(c);
    if (err) fprintf(stderr, "arena: %s: %s\n", rlay_error_name(err), rlay_errmsg(c));
    rlay_free(c);
    return err ? 1 : 0;
}
