/* A game with its own frame loop, served as a Gymnasium env in loop style.

   The game runs frame after frame and asks rlay each frame whether a command is waiting
   (rlay_poll with timeout 0: never blocks). A STEP is played over FRAME_SKIP frames and only
   then answered; the command stays valid until its reply, and rlay_poll returns 0 meanwhile.
   Between commands the game keeps running (here it idles at about 1 kHz).

   The game: a cart on a line, pushed left (0), right (2) or not (1); obs float32 [x, v];
   reward -|x|; the episode ends when |x| > 10 (terminated) or after 200 steps (truncated).

   Usage: game_loop --listen [ADDRESS] | --connect [ADDRESS]
   With no flag it is a launched program (spec section 15): $RLAY_ADDRESS, and $RLAY_MODE
   (listen or dial; unset: listen). */
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

#define FRAME_SKIP 4
#define DT 0.05f

int main(int argc, char **argv) {
    const char *address = argc > 2 ? argv[2] : getenv("RLAY_ADDRESS");
    const char *mode = argc > 1 ? argv[1] + 2 : getenv("RLAY_MODE");   /* "listen" / "connect" / "dial" */
    int connect = mode && (strcmp(mode, "connect") == 0 || (argc == 1 && strcmp(mode, "dial") == 0));
    uint32_t two = 2;
    float obs[2], x = 0, v = 0, push = 0;
    int frames_left = 0, steps = 0;
    rlay_cmd cmd;
    rlay_ctx *c;
    struct timespec idle = {0, 1000000};
    if ((argc > 1 && strncmp(argv[1], "--", 2) != 0) || (!connect && mode && *mode && strcmp(mode, "listen") != 0) || !address) {
        fprintf(stderr, "usage: %s --listen|--connect [ADDRESS]   (or set RLAY_ADDRESS, and RLAY_MODE to listen or dial)\n", argv[0]);
        return 2;
    }
    c = rlay_new();
    {   /* spec section 7.1/15: the shared secret, set by a launcher (or the user) */
        const char *token = getenv("RLAY_TOKEN");
        if (token && *token) rlay_set_token(c, token, strlen(token));
    }
    rlay_space_box_uniform(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, &two, -INFINITY, INFINITY);
    rlay_space_discrete(rlay_action_space(c), 3, 0);
    rlay_set_name(c, "game_loop");
    if (connect ? rlay_connect(c, address) : rlay_listen(c, address)) {
        fprintf(stderr, "game_loop: %s\n", rlay_errmsg(c));
        rlay_free(c);
        return 1;
    }
    if (!connect) { printf("RLAY_LISTENING %s\n", rlay_address(c)); fflush(stdout); }

    for (;;) {                                   /* the game's frame loop */
        int r = rlay_poll(c, &cmd, 0);
        if (r < 0) break;                        /* session over (rlay_error says why) */
        if (r == 1 && cmd.kind == RLAY_RESET) {
            x = 0; v = 0; steps = 0;
            obs[0] = x; obs[1] = v;
            rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &two, obs);
            rlay_reply_reset(c);
        } else if (r == 1 && cmd.kind == RLAY_STEP) {
            int64_t a = 1;
            rlay_as_int64(cmd.action, &a);       /* checked against Discrete(3) by the SDK */
            push = (float)(a - 1);
            frames_left = FRAME_SKIP;            /* answered FRAME_SKIP frames from now */
        } else if (r == 1) {
            rlay_reply_default(c, &cmd);         /* CLOSE; NOT_SUPPORTED for the rest */
        }

        if (frames_left > 0) {                   /* one frame of the game */
            v += push * DT;
            x += v * DT;
            if (--frames_left == 0) {
                int terminated = x > 10 || x < -10;
                steps++;
                obs[0] = x; obs[1] = v;
                rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &two, obs);
                rlay_put_key(rlay_info(c), "frames"); rlay_put_int(rlay_info(c), FRAME_SKIP);
                rlay_reply_step(c, -(x < 0 ? -x : x), terminated, steps >= 200);
            }
        } else {
            nanosleep(&idle, NULL);              /* nothing to play: wait for the next frame */
        }
    }
    {
        int err = rlay_error(c);
        if (err) fprintf(stderr, "game_loop: %s: %s\n", rlay_error_name(err), rlay_errmsg(c));
        rlay_free(c);
        return err ? 1 : 0;   /* 0 after CLOSE or end of stream between commands (section 8) */
    }
}
