/* rlay.h - turn a C program into a Gymnasium environment (rlay protocol v1, env side).

   Single header, C99 (C11 for <stdatomic.h> in shared memory; C99 and C++ use GCC/Clang's
   __atomic builtins instead), also valid C++. Needs only libc, libm, BSD sockets and mmap.
   In exactly one .c file, before any other #include:

       #define RLAY_IMPLEMENTATION
       #include "rlay.h"

   (or compile that file with -D_POSIX_C_SOURCE=200809L / -std=gnu99). Link with -lm.

   EXAMPLE - a walk on a line, served to Python's rlay.ClientEnv("tcp://127.0.0.1:5555"):

       rlay_ctx *c = rlay_new();
       uint32_t one = 1; float pos = 0;
       rlay_space_box_uniform(rlay_observation_space(c), RLAY_DT_FLOAT32, 1, &one, -10, 10);
       rlay_space_discrete(rlay_action_space(c), 2, 0);
       if (rlay_listen(c, "tcp://127.0.0.1:5555")) { puts(rlay_errmsg(c)); return 1; }
       rlay_cmd cmd; int64_t a;
       while (rlay_poll(c, &cmd, -1) > 0) {        // a game passes 0: never blocks
           if (cmd.kind == RLAY_RESET) { pos = 0;
               rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &one, &pos);
               rlay_reply_reset(c);
           } else if (cmd.kind == RLAY_STEP) { rlay_as_int64(cmd.action, &a); pos += a ? 1 : -1;
               rlay_put_tensor(rlay_obs(c), RLAY_DT_FLOAT32, 1, &one, &pos);
               rlay_reply_step(c, pos >= 5 ? 1.0 : 0.0, pos >= 5 || pos <= -5, 0);
           } else rlay_reply_default(c, &cmd);        // CLOSE, and NOT_SUPPORTED for the rest
       }
       int err = rlay_error(c); rlay_free(c); return err == RLAY_OK ? 0 : 1;

   MODEL. The agent side (Python) sends commands; the env side answers each with one reply.
   rlay_listen() waits for the agent to dial (Python rlay.ClientEnv); rlay_connect() dials an
   agent that listens (Python rlay.ServerEnv). Both return at once; rlay_poll() does the
   connection, the handshake (spec/protocol.md section 7) and reading, never blocking longer than
   timeout_ms (0 = not at all, -1 = until a command). It returns 1 with a command, 0 if none is
   ready, -1 when the session is over: rlay_error() is then RLAY_OK (CLOSE answered), or why.
   Answer a command with its rlay_reply_*() (the command's values stay valid until then; while a
   reply is owed, rlay_poll returns 0). Callback style: rlay_serve(c, &callbacks, userdata).

   VALUES. Writers (rlay_w) encode observations, info, render frames and spaces:
   rlay_obs(c) takes one value; rlay_info(c) and rlay_metadata(c) take key/value pairs
   (rlay_put_key then a value); containers need their item count up front. Tensor data is
   referenced, not copied, and must stay valid until the reply is sent (space writers copy).
   Decoded values (actions, reset options, call arguments) are rlay_value trees.

   ERRORS are sticky: the first one wins, later calls do nothing; check rlay_error(c) and
   rlay_errmsg(c) once. Codes 1..37 are the wire codes of spec section 11; negative codes are
   local conditions. A protocol error ends the session (the peer is told why with a fatal ERROR).
   A failure in your env code is not an rlay error: answer it with rlay_reply_error(c,
   RLAY_E_ENV_EXCEPTION, 0, "ValueError", "...") (or return rlay_fail(...) from a callback).

   BATCHES (spec section 10). rlay_set_num_envs(c, n) before rlay_listen/rlay_connect hosts n
   sub-envs on the one connection (Python: rlay.ClientVectorEnv / rlay.ServerVectorEnv). The
   spaces you declare are one sub-env's; on the wire every value is Gymnasium's
   batch_space(space, n): a Box, Discrete, MultiDiscrete or MultiBinary value is one tensor with
   a leading n (a Discrete action arrives as an int64 (n,) tensor: rlay_as_int64_at(action, i,
   &a)), a Dict or Tuple holds the batches of its parts, any other space is an array of n values.
   The SDK checks every sub-env's action against the single action space: structure is BAD_VALUE
   (fatal), a sub-env outside the bounds is a non-fatal INVALID_ACTION naming the sub-env.
   Write the observation batched (a Box: one tensor of shape (n, ...)) and answer a STEP with
   rlay_reply_step_batch(c, rewards, terminated, truncated): n doubles, n bytes, n bytes (in
   callback style fill out->rewards[i], out->terminations[i], out->truncations[i]). The
   per-sub-env arrays of rlay_cmd say what RESET asks (seeded[i]/seeds[i]: an int seed s gives
   sub-env i s + i; reset_mask[i]: Gymnasium's partial reset, options["reset_mask"]) and which
   sub-envs ended at the previous STEP (autoreset[i]). Your code does the autoreset, in the mode
   of metadata["autoreset_mode"] ("next_step" unless you write another): under next_step, a
   sub-env with autoreset[i] is reset instead of stepped, and answers its reset observation with
   reward 0 and both flags 0. info follows Gymnasium's vector convention (key -> n entries,
   "_key" -> bool (n,) mask); a CALL answers an array of n values, a RENDER nil or n frames. With
   n == 1 (the default) nothing is batched: the single-env API of the example above.

   MULTI-AGENT (spec section 18). rlay_set_multi_agent(c, 1) before rlay_listen/rlay_connect
   serves the agents of one game to Python's rlay.pettingzoo.ClientParallelEnv / ServerParallelEnv
   (a PettingZoo ParallelEnv). Declare both spaces as a Dict (rlay_space_dict) with one entry per
   possible agent, the same agent ids in the same order; each agent has its own spaces. The
   context announces the multi_agent capability; an agent side that does not is refused with a
   fatal NOT_SUPPORTED. RESET is answered, and each step arrives, as:
       cmd.kind == RLAY_MULTI_STEP: cmd.action is a map agent id -> action, already checked to hold
       exactly the live agents (else AGENT_MISMATCH), each action in its agent's space (structure:
       BAD_VALUE, fatal; bounds: INVALID_ACTION naming the agent); rlay_agent_action(&cmd, "id").
   Answer both with rlay_reply_agents(c, n, ids, rewards, terminations, truncations): ids are the n
   agents the result covers (after RESET: the live agents; after a step: every agent live before
   it, then any agent that joins in it); rlay_obs(c) holds a map of exactly those n agents, in that
   order (rlay_put_map(obs, n), then rlay_put_key + the agent's observation); rlay_info(c) nothing
   (each agent gets an empty info) or the n pairs id -> info map in that order. After a step the
   agents with a nonzero termination or truncation leave; the others are live (rlay_num_agents,
   rlay_agent(c, i)). After RESET the arrays may be NULL. sdk/c/examples/arena.c is a full game.

   LIMITS. One session per context. The host must be little-endian (tensor bytes are used in
   place). Decoding treats all input as hostile: every length is checked before use, frames above
   rlay_set_max_frame_size (default 64 MiB) are refused on their header, and so is a first frame
   (the agent's HELLO) above 64 KiB; a body declaring more than rlay_set_max_values values
   (default 262144) is refused at the container header that passes the limit (spec section 13).
   The agent's HELLO must arrive within rlay_set_handshake_timeout ms of the connection (default
   30000, like Python's; 0 = no limit): whoever connects first cannot hold the env side without
   saying HELLO. A listening context (spec section 17.4) holds up to RLAY_MAX_PENDING (64)
   connections before the agent is in, and serves first the one whose whole HELLO has arrived
   (a slow one being greeted for 200 ms gives way to it). A connection that fails before the
   agent is in - it ends, stays silent past the timeout, sends garbage, an oversized or wrong
   HELLO, a wrong token proof - is told why (a fatal ERROR) and dropped, and the listener serves
   the next: a port scanner or an impostor cannot end the program. rlay_dropped() counts them
   and says why the last one was dropped. The listener stops listening once the agent is in
   (its HELLO, and its proof with a token). A dialling context fails with RLAY_E_TIMEOUT.
   TCP connections use keep-alive (30 s idle, 6 probes 10 s apart: a vanished host is noticed;
   a process paused in a debugger is not reported). A unix socket is created
   owner-only (0600) whatever the umask, and rlay_listen refuses a path where another process
   is listening (an existing socket nobody answers on is stale: it is replaced). Nothing is allocated per
   step once the buffers have grown to the largest frame (per-sub-env arrays: at rlay_listen /
   rlay_connect).

   SHARED MEMORY (spec section 16). On a unix:// connection, when the agent side supports it too
   (Python does), frames travel through a memory region the agent creates and passes over the
   socket (a sealed memfd); the socket then carries only wake-up bytes, frames larger than the
   region (8 MiB each way by default) and liveness: the agent's death is still end of stream,
   noticed at once. Nothing changes in the API. On by default; rlay_set_shm(c, 0) before
   rlay_listen/rlay_connect, or RLAY_SHM=0 in the environment, turns it off (TCP never uses it).
   Waiting for a command: rlay_poll(c, &cmd, 0) only looks at the region and the socket, never
   blocks; with a timeout (or -1, and rlay_serve) it spins up to RLAY_SHM_SPIN_US microseconds
   (default 50, bounded by the timeout) re-reading the region, then sleeps in poll() on the
   socket until the agent's wake-up byte: an agent that thinks for a second costs ~no CPU here.
   Received frames are copied out of the region and checked like socket frames (same limits).
   Needs C11 <stdatomic.h> or GCC/Clang __atomic builtins with lock-free 64-bit atomics, and
   POSIX mmap; elsewhere (or with RLAY_NO_SHM defined) it is compiled out and never announced.
*/
#if defined(RLAY_IMPLEMENTATION) && !defined(_WIN32) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#ifndef RLAY_H
#define RLAY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RLAY_PROTOCOL_VERSION 1
#define RLAY_SDK_NAME "rlay-c"
#define RLAY_SDK_VERSION "0.2.0"
#define RLAY_MAX_NDIM 32
#define RLAY_MAX_DEPTH 64
#define RLAY_DEFAULT_MAX_FRAME_SIZE 67108864u
#define RLAY_DEFAULT_MAX_VALUES 262144u          /* section 13 */
#define RLAY_MAX_HANDSHAKE_FRAME_SIZE 65536u     /* section 13: the first frame received */
#define RLAY_DEFAULT_HANDSHAKE_TIMEOUT_MS 30000   /* the agent's HELLO, from the connection */
#ifndef RLAY_MAX_PENDING
#define RLAY_MAX_PENDING 64   /* connections a listener holds before the agent's HELLO (17.4) */
#endif

/* Error codes: 1..37 are spec section 11; negative ones are local and never sent. */
enum {
    RLAY_OK = 0,
    RLAY_E_BAD_MAGIC = 1, RLAY_E_BAD_HEADER = 2, RLAY_E_FRAME_TOO_LARGE = 3,
    RLAY_E_TRUNCATED = 4, RLAY_E_MALFORMED = 5, RLAY_E_UNKNOWN_KIND = 6, RLAY_E_BAD_FIELD = 7,
    RLAY_E_BAD_TENSOR = 8, RLAY_E_UNKNOWN_DTYPE = 9, RLAY_E_TOO_DEEP = 10,
    RLAY_E_UNEXPECTED_MESSAGE = 11, RLAY_E_VERSION_MISMATCH = 12, RLAY_E_ROLE_CONFLICT = 13,
    RLAY_E_BAD_SPACE = 14, RLAY_E_BAD_VALUE = 15, RLAY_E_AUTH_FAILED = 16,
    RLAY_E_AGENT_MISMATCH = 19,  /* section 18: a step's agents are not the live agents (non-fatal) */
    RLAY_E_BAD_ATTRIBUTE = 20,   /* section 19: a refused rlay.get/rlay.set (non-fatal) */
    RLAY_E_ENV_EXCEPTION = 32, RLAY_E_INVALID_ACTION = 33, RLAY_E_NOT_SUPPORTED = 34,
    RLAY_E_RESET_NEEDED = 35, RLAY_E_SHUTTING_DOWN = 36, RLAY_E_INTERNAL = 37,
    RLAY_E_IO = -1,          /* a socket call failed */
    RLAY_E_PEER_CLOSED = -2, /* the peer closed the connection outside state `closed` */
    RLAY_E_USAGE = -3,       /* this API was misused (message says how) */
    RLAY_E_NOMEM = -4,
    RLAY_E_ADDRESS = -5,     /* an address string could not be used */
    RLAY_E_TIMEOUT = -6      /* the agent did not say HELLO within the handshake timeout */
};
#define RLAY_DEFAULT_MAX_SHM_SIZE 1073741824ull   /* section 16.3: the largest region accepted */
#define RLAY_DEFAULT_SHM_SPIN_US 50               /* section 16.6; RLAY_SHM_SPIN_US overrides */

/* Dtype codes (spec section 4). */
enum {
    RLAY_DT_BOOL = 1, RLAY_DT_INT8, RLAY_DT_INT16, RLAY_DT_INT32, RLAY_DT_INT64,
    RLAY_DT_UINT8, RLAY_DT_UINT16, RLAY_DT_UINT32, RLAY_DT_UINT64,
    RLAY_DT_FLOAT16, RLAY_DT_FLOAT32, RLAY_DT_FLOAT64
};

/* Message kinds (spec section 6). */
enum {
    RLAY_HELLO = 1, RLAY_ENV_INFO = 2, RLAY_AUTH = 4, RLAY_SHM = 5,
    RLAY_MULTI_STEP = 8, RLAY_MULTI_RESULT = 9,   /* section 18, multi-agent sessions only */
    RLAY_RESET = 16, RLAY_STEP = 17, RLAY_RENDER = 18, RLAY_CLOSE = 19, RLAY_CALL = 20,
    RLAY_RESET_RESULT = 32, RLAY_STEP_RESULT = 33, RLAY_RENDER_RESULT = 34,
    RLAY_CLOSE_RESULT = 35, RLAY_CALL_RESULT = 36, RLAY_ERROR = 48
};

/* Decoded value types. */
enum {
    RLAY_T_NIL = 1, RLAY_T_BOOL, RLAY_T_INT, RLAY_T_FLOAT, RLAY_T_STR, RLAY_T_BYTES,
    RLAY_T_ARRAY, RLAY_T_MAP, RLAY_T_TENSOR
};

typedef struct rlay_ctx rlay_ctx;
typedef struct rlay_w rlay_w;

typedef struct rlay_tensor {
    int dtype, ndim;
    uint32_t shape[RLAY_MAX_NDIM];
    uint32_t offset;    /* in the frame's data section */
    size_t count;       /* number of elements (product of shape) */
    size_t nbytes;
    const void *data;   /* C order, little-endian, 8-byte aligned */
} rlay_tensor;

typedef struct rlay_value rlay_value;
struct rlay_value {
    int type;           /* RLAY_T_* */
    int neg;            /* RLAY_T_INT: 1 if negative (read v.i), else read v.u */
    uint32_t len;       /* STR/BYTES: byte count (no NUL); ARRAY: items; MAP: pairs */
    union {
        int b;                      /* BOOL */
        uint64_t u;                 /* INT, neg == 0 */
        int64_t i;                  /* INT, neg == 1 */
        double f;                   /* FLOAT */
        const char *s;              /* STR, BYTES */
        const rlay_value *items;    /* ARRAY: items[k]; MAP: key items[2k], value items[2k+1] */
        const rlay_tensor *t;       /* TENSOR */
    } v;
};

/* A command from the agent side, filled by rlay_poll. */
typedef struct rlay_cmd {
    int kind;                   /* RLAY_RESET, RLAY_STEP, RLAY_RENDER, RLAY_CALL, RLAY_CLOSE, RLAY_MULTI_STEP */
    int has_seed;               /* RESET: seed given? */
    uint64_t seed;              /* RESET */
    const rlay_value *options;  /* RESET: a map, or NULL for None */
    const rlay_value *action;   /* STEP: already checked against the action space; MULTI_STEP: a map agent -> action */
    const char *name;           /* CALL: function name (not NUL-terminated) */
    uint32_t name_len;
    const rlay_value *args;     /* CALL: array */
    const rlay_value *kwargs;   /* CALL: map */
    /* Per sub-env: arrays of rlay_num_envs(c) entries (also for one env), valid until the reply.
       RESET: seeded[i] 1 if sub-env i got a seed, seeds[i] its seed (has_seed/seed are sub-env
       0's); reset_mask[i] 1 if sub-env i is to be reset (all of them unless options held
       "reset_mask", section 10). STEP: autoreset[i] 1 if sub-env i's episode ended at the
       previous STEP and it was not reset since (its action is then to be ignored under
       "next_step" autoreset: reset it instead). */
    const unsigned char *seeded;
    const uint64_t *seeds;
    const unsigned char *reset_mask;
    const unsigned char *autoreset;
} rlay_cmd;

/* ---- context ---- */
rlay_ctx *rlay_new(void);
void rlay_free(rlay_ctx *c);      /* tells a live peer SHUTTING_DOWN, closes, frees */
int rlay_error(const rlay_ctx *c);
const char *rlay_errmsg(const rlay_ctx *c);
const char *rlay_strerror(int code);    /* "FRAME_TOO_LARGE: ..." */
const char *rlay_error_name(int code);  /* "FRAME_TOO_LARGE" */
void rlay_set_max_frame_size(rlay_ctx *c, uint32_t bytes);
void rlay_set_max_values(rlay_ctx *c, uint32_t values);          /* section 13, default 262144 */
void rlay_set_handshake_timeout(rlay_ctx *c, int ms);            /* default 30000; 0: no limit */
/* Shared-secret authentication (spec section 7.1): before rlay_listen/rlay_connect. With a token
   the agent side must prove it (HMAC-SHA256 challenge-response; the token never travels), and a
   peer without one is refused with AUTH_FAILED. len 0: no token. At most 256 bytes. Without a
   call, rlay_listen/rlay_connect take $RLAY_TOKEN (set by a launcher, section 15) if it is set. */
int rlay_set_token(rlay_ctx *c, const void *secret, size_t len);
/* HMAC-SHA256 (RFC 2104 over FIPS 180-4), exposed for tests. */
void rlay_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char out[32]);
/* Shared memory (spec section 16, see SHARED MEMORY above): on (1, the default) or off (0),
   before rlay_listen/rlay_connect; RLAY_SHM=0 in the environment turns it off too. */
void rlay_set_shm(rlay_ctx *c, int on);
void rlay_set_max_shm_size(rlay_ctx *c, uint64_t bytes);  /* largest region accepted; default 1 GiB */
int rlay_shm_active(const rlay_ctx *c);        /* 1 while frames travel through shared memory */
const char *rlay_shm_status(const rlay_ctx *c); /* "active", or why not (e.g. "refused: ...") */
void rlay_set_name(rlay_ctx *c, const char *name);               /* ENV_INFO.name */
void rlay_set_render_mode(rlay_ctx *c, const char *render_mode); /* e.g. "rgb_array" */
rlay_w *rlay_observation_space(rlay_ctx *c);   /* write exactly one space */
rlay_w *rlay_action_space(rlay_ctx *c);        /* write exactly one space */
rlay_w *rlay_metadata(rlay_ctx *c);            /* key/value pairs */
void rlay_set_num_envs(rlay_ctx *c, uint32_t n); /* host n sub-envs (section 10); default 1 */
uint32_t rlay_num_envs(const rlay_ctx *c);
/* Multi-agent (section 18): before rlay_listen/rlay_connect; both spaces are Dicts agent -> space. */
void rlay_set_multi_agent(rlay_ctx *c, int on);
uint32_t rlay_num_agents(const rlay_ctx *c);            /* the live agents (0 before the first RESET) */
const char *rlay_agent(const rlay_ctx *c, uint32_t i);  /* live agent i's id, NULL past the end */
const rlay_value *rlay_agent_action(const rlay_cmd *cmd, const char *agent); /* MULTI_STEP; NULL if none */
/* Answers RESET or MULTI_STEP of a multi-agent session (see MULTI-AGENT above). */
int rlay_reply_agents(rlay_ctx *c, uint32_t n, const char *const *ids, const double *rewards,
                      const unsigned char *terminations, const unsigned char *truncations);

/* ---- connection ---- */
int rlay_listen(rlay_ctx *c, const char *address);  /* "tcp://127.0.0.1:0", "unix:///tmp/x" */
int rlay_connect(rlay_ctx *c, const char *address);
const char *rlay_address(const rlay_ctx *c);        /* the address actually bound/dialled */
/* A listener drops a connection that fails before its session (section 17.4): how many it
   dropped, and why the last one was ("AUTH_FAILED: the peer's proof ..."; "" if none). */
int rlay_dropped(const rlay_ctx *c, const char **last_why);

/* ---- loop style ---- */
int rlay_poll(rlay_ctx *c, rlay_cmd *cmd, int timeout_ms);
rlay_w *rlay_obs(rlay_ctx *c);      /* observation of the RESET/STEP reply */
rlay_w *rlay_info(rlay_ctx *c);     /* info map of the RESET/STEP reply: key/value pairs */
rlay_w *rlay_frame(rlay_ctx *c);    /* RENDER reply: uint8 (H,W,3) tensor, str, or nil */
rlay_w *rlay_result(rlay_ctx *c);   /* CALL reply value */
int rlay_reply_reset(rlay_ctx *c);
int rlay_reply_step(rlay_ctx *c, double reward, int terminated, int truncated);
/* Any num_envs: num_envs rewards and flags (a flag byte is true if nonzero); the arrays are
   read before it returns. With one env it is rlay_reply_step(c, rewards[0], ...). */
int rlay_reply_step_batch(rlay_ctx *c, const double *rewards, const unsigned char *terminated,
                          const unsigned char *truncated);
int rlay_reply_render(rlay_ctx *c);
int rlay_reply_call(rlay_ctx *c);
int rlay_reply_close(rlay_ctx *c);
int rlay_reply_error(rlay_ctx *c, int code, int fatal, const char *remote_type,
                     const char *fmt, ...);
int rlay_reply_default(rlay_ctx *c, const rlay_cmd *cmd); /* CLOSE: close; else NOT_SUPPORTED */

/* ---- callback style ---- */
/* One env: set reward, terminated, truncated. num_envs > 1: fill rewards[i], terminations[i],
   truncations[i] (arrays of num_envs the SDK owns, zeroed before each call; NULL for one env). */
typedef struct rlay_step_out {
    double reward; int terminated, truncated;
    double *rewards; unsigned char *terminations, *truncations;
} rlay_step_out;
typedef struct rlay_callbacks {
    int (*reset)(void *ud, rlay_ctx *c, const rlay_cmd *cmd);   /* write rlay_obs, rlay_info */
    int (*step)(void *ud, rlay_ctx *c, const rlay_cmd *cmd, rlay_step_out *out);
    int (*render)(void *ud, rlay_ctx *c);                       /* NULL: NOT_SUPPORTED */
    int (*call)(void *ud, rlay_ctx *c, const rlay_cmd *cmd);    /* NULL: NOT_SUPPORTED */
    void (*close)(void *ud, rlay_ctx *c);                       /* may be NULL */
} rlay_callbacks;
/* Runs until the session ends; returns rlay_error(c). A callback returns 0, or nonzero after
   rlay_fail() to answer with an ERROR (default: ENV_EXCEPTION, type "EnvError"). */
int rlay_serve(rlay_ctx *c, const rlay_callbacks *cb, void *ud);
int rlay_fail(rlay_ctx *c, int code, const char *remote_type, const char *fmt, ...);

/* ---- writing values ---- */
void rlay_put_nil(rlay_w *w);
void rlay_put_bool(rlay_w *w, int b);
void rlay_put_int(rlay_w *w, int64_t v);
void rlay_put_uint(rlay_w *w, uint64_t v);
void rlay_put_float(rlay_w *w, double v);
void rlay_put_str(rlay_w *w, const char *s);           /* UTF-8 */
void rlay_put_strn(rlay_w *w, const char *s, size_t n);
void rlay_put_key(rlay_w *w, const char *key);         /* = rlay_put_str */
void rlay_put_bytes(rlay_w *w, const void *p, size_t n);
void rlay_put_array(rlay_w *w, uint32_t n);            /* then n values */
void rlay_put_map(rlay_w *w, uint32_t n);              /* then n (str key, value) pairs */
void rlay_put_tensor(rlay_w *w, int dtype, int ndim, const uint32_t *shape, const void *data);

/* ---- writing spaces (spec section 9) ---- */
/* low/high: prod(shape) elements of dtype each (float16 as uint16_t bits). */
void rlay_space_box(rlay_w *w, int dtype, int ndim, const uint32_t *shape,
                    const void *low, const void *high);
/* The same bound for every element (+-INFINITY allowed for floats). */
void rlay_space_box_uniform(rlay_w *w, int dtype, int ndim, const uint32_t *shape,
                            double low, double high);
void rlay_space_discrete(rlay_w *w, int64_t n, int64_t start);           /* dtype int64 */
void rlay_space_multi_discrete(rlay_w *w, int ndim, const uint32_t *shape,
                               const int64_t *nvec, const int64_t *start); /* start NULL: 0 */
void rlay_space_multi_binary(rlay_w *w, uint32_t n);                     /* MultiBinary(n) */
void rlay_space_multi_binary_shape(rlay_w *w, int ndim, const uint32_t *shape);
void rlay_space_text(rlay_w *w, uint32_t min_length, uint32_t max_length, const char *charset);
void rlay_space_dict(rlay_w *w, uint32_t n);      /* then n x (rlay_put_key, space) */
void rlay_space_tuple(rlay_w *w, uint32_t n);     /* then n spaces */
void rlay_space_one_of(rlay_w *w, uint32_t n);    /* then n spaces */
void rlay_space_sequence(rlay_w *w, int stack);   /* then the element space */
void rlay_space_graph(rlay_w *w);                 /* then node space, then edge space or nil */

/* ---- attributes: typed settings the agent side reads and writes (spec section 19) ---- */
/* Offer an attribute (Python: env.attributes, env.get_attr(name), env.set_attr(name, value); a
   vector env's get_attr/set_attr, one value per sub-env). The SDK answers the reserved CALLs
   rlay.describe / rlay.get / rlay.set itself, straight from your variables: sub-env i's value
   is at (char *)ptr + i * stride (stride 0: one variable shared by every sub-env). Before
   storing anything it checks the type, [min, max] (inclusive; -INFINITY / INFINITY or INT64_MIN /
   INT64_MAX: unbounded) and RLAY_ATTR_READ_ONLY, and refuses a bad value with a non-fatal
   BAD_ATTRIBUTE: nothing changes and the session goes on. The value at registration is the
   advertised default (it must be within [min, max]). Register before rlay_listen/rlay_connect;
   name (1-64 chars of A-Z a-z 0-9 _ . -, starting with a letter or _) and doc are copied. The
   standard names have a fixed type: time_scale float; target_frame_rate, quality_level,
   action_repeat int. A usage error is sticky (rlay_error). */
enum { RLAY_ATTR_READ_ONLY = 1 };
int rlay_attr_float(rlay_ctx *c, const char *name, double *ptr, size_t stride, double min, double max,
                    int flags, const char *doc);
int rlay_attr_int(rlay_ctx *c, const char *name, int64_t *ptr, size_t stride, int64_t min, int64_t max,
                  int flags, const char *doc);
int rlay_attr_bool(rlay_ctx *c, const char *name, int *ptr, size_t stride, int flags, const char *doc);
/* Called after rlay.set stored new values (e.g. to hand them to the engine); NULL: none. */
void rlay_attr_on_set(rlay_ctx *c, void (*fn)(void *ud, rlay_ctx *c, const char *name), void *ud);

/* ---- reading values ---- */
const rlay_value *rlay_map_get(const rlay_value *map, const char *key); /* NULL if absent */
int rlay_str_eq(const rlay_value *v, const char *s);
int rlay_as_int64(const rlay_value *v, int64_t *out);  /* int, or 0-d integer tensor */
/* Element i of an integer tensor (a batched Discrete action), or for i == 0 an int. */
int rlay_as_int64_at(const rlay_value *v, size_t i, int64_t *out);
int rlay_as_double(const rlay_value *v, double *out);  /* float or int */
double rlay_tensor_get(const rlay_tensor *t, size_t i); /* element i as double */
const char *rlay_dtype_name(int dtype);
int rlay_dtype_size(int dtype);                        /* 0 if unknown */

#ifdef __cplusplus
}
#endif
#endif /* RLAY_H */

/* ======================================================================================== */
#ifdef RLAY_IMPLEMENTATION
#ifndef RLAY__IMPLEMENTED
#define RLAY__IMPLEMENTED

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32 /* untested */
#include <winsock2.h>
#include <ws2tcpip.h>
typedef SOCKET rlay__sock;
#define RLAY__NOSOCK INVALID_SOCKET
#define rlay__closesock closesocket
#define rlay__poll WSAPoll
#define rlay__errno() WSAGetLastError()
#define RLAY__EAGAIN(e) ((e) == WSAEWOULDBLOCK)
#define RLAY__EINPROGRESS(e) ((e) == WSAEWOULDBLOCK || (e) == WSAEINPROGRESS)
#else
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
typedef int rlay__sock;
#define RLAY__NOSOCK (-1)
#define rlay__closesock close
#define rlay__poll poll
#define rlay__errno() errno
#define RLAY__EAGAIN(e) ((e) == EAGAIN || (e) == EWOULDBLOCK)
#define RLAY__EINPROGRESS(e) ((e) == EINPROGRESS)
#endif

/* Shared memory (spec section 16) needs atomic, address-free 64-bit loads and stores with
   acquire/release ordering and a sequentially consistent fence (16.2, 16.6): C11 <stdatomic.h>,
   or the GCC/Clang builtins it is made of (C99, C++). Without them the capability is compiled
   out and never announced (16.6: "MUST NOT announce"). */
#if defined(RLAY_NO_SHM) || defined(_WIN32)
#define RLAY__SHM 0
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
      !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#if ATOMIC_LLONG_LOCK_FREE == 2
#define RLAY__SHM 1
typedef _Atomic uint64_t rlay__au64;
#define RLAY__LOAD(p, o) atomic_load_explicit((p), memory_order_##o)
#define RLAY__STORE(p, v, o) atomic_store_explicit((p), (v), memory_order_##o)
#define RLAY__FENCE() atomic_thread_fence(memory_order_seq_cst)
#else
#define RLAY__SHM 0
#endif
#elif defined(__GNUC__) && defined(__GCC_ATOMIC_LLONG_LOCK_FREE) && __GCC_ATOMIC_LLONG_LOCK_FREE == 2
#define RLAY__SHM 1
typedef uint64_t rlay__au64;
#define RLAY__ATOMIC_relaxed __ATOMIC_RELAXED
#define RLAY__ATOMIC_acquire __ATOMIC_ACQUIRE
#define RLAY__ATOMIC_release __ATOMIC_RELEASE
#define RLAY__LOAD(p, o) __atomic_load_n((p), RLAY__ATOMIC_##o)
#define RLAY__STORE(p, v, o) __atomic_store_n((p), (v), RLAY__ATOMIC_##o)
#define RLAY__FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#else
#define RLAY__SHM 0
#endif
#if RLAY__SHM
#include <sys/mman.h>
#if defined(__linux__) && !defined(F_GET_SEALS)   /* <fcntl.h> shows them only with _GNU_SOURCE */
#define F_GET_SEALS 1034
#define F_SEAL_SHRINK 0x0002
#endif
#if defined(__linux__) && !defined(MSG_CMSG_CLOEXEC)
#define MSG_CMSG_CLOEXEC 0x40000000
#endif
#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0
#endif
#if defined(RLAY__RELAX)
/* given by the build */
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RLAY__RELAX() __builtin_ia32_pause()
#elif defined(__GNUC__) && defined(__aarch64__)
#define RLAY__RELAX() __asm__ __volatile__("yield")
#else
#define RLAY__RELAX() ((void)0)
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RLAY__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RLAY__PRINTF(a, b)
#endif

/* Conversation states, spec section 8. */
enum { RLAY__S_HELLO, RLAY__S_DESCRIBE, RLAY__S_IDLE, RLAY__S_RESET, RLAY__S_STEP,
       RLAY__S_RENDER, RLAY__S_CALL, RLAY__S_CLOSE, RLAY__S_CLOSED, RLAY__S_AUTH,
       RLAY__S_SHM, RLAY__S_SHM_ANSWER };
static const char *const rlay__state_names[] = {
    "hello", "describe", "idle", "reset", "step", "render", "call", "close", "closed", "auth",
    "shm", "shm-answer"};
enum { RLAY__ENV = 0, RLAY__AGENT = 1 };                 /* roles */
enum { RLAY__P_NONE, RLAY__P_LISTEN, RLAY__P_CONNECTING, RLAY__P_OPEN, RLAY__P_DONE }; /* phases */

/* ---- the dtype table (spec section 4); every mapping below is derived from it ---- */
static const struct { const char *name; unsigned char size; char cls; } rlay__dt[13] = {
    {NULL, 0, 0}, {"bool", 1, 'b'}, {"int8", 1, 'i'}, {"int16", 2, 'i'}, {"int32", 4, 'i'},
    {"int64", 8, 'i'}, {"uint8", 1, 'u'}, {"uint16", 2, 'u'}, {"uint32", 4, 'u'},
    {"uint64", 8, 'u'}, {"float16", 2, 'f'}, {"float32", 4, 'f'}, {"float64", 8, 'f'}};

static int rlay__dt_ok(int d) { return d >= 1 && d <= 12; }
const char *rlay_dtype_name(int d) { return rlay__dt_ok(d) ? rlay__dt[d].name : "?"; }
int rlay_dtype_size(int d) { return rlay__dt_ok(d) ? rlay__dt[d].size : 0; }
static int rlay__dtype_from_name(const char *s, size_t n) {
    int d;
    for (d = 1; d <= 12; d++)
        if (strlen(rlay__dt[d].name) == n && memcmp(rlay__dt[d].name, s, n) == 0) return d;
    return 0;
}

/* ---- error codes (spec section 11) ---- */
typedef struct { int code; const char *name, *text; } rlay__errdef;
#define RLAY__E(code, name, text) {code, name, name ": " text}
static const rlay__errdef rlay__errs[] = {
    RLAY__E(RLAY_OK, "OK", "no error"),
    RLAY__E(1, "BAD_MAGIC", "the peer is not speaking rlay"),
    RLAY__E(2, "BAD_HEADER", "bad frame header"),
    RLAY__E(3, "FRAME_TOO_LARGE", "frame larger than max_frame_size"),
    RLAY__E(4, "TRUNCATED", "the stream ended inside a frame"),
    RLAY__E(5, "MALFORMED", "the body is not one valid value"),
    RLAY__E(6, "UNKNOWN_KIND", "unknown message kind"),
    RLAY__E(7, "BAD_FIELD", "a message field is missing, unknown or of the wrong type"),
    RLAY__E(8, "BAD_TENSOR", "malformed tensor descriptor or bytes out of range"),
    RLAY__E(9, "UNKNOWN_DTYPE", "unknown dtype"),
    RLAY__E(10, "TOO_DEEP", "nesting deeper than max_depth"),
    RLAY__E(11, "UNEXPECTED_MESSAGE", "message not allowed in the current state"),
    RLAY__E(12, "VERSION_MISMATCH", "protocol version mismatch"),
    RLAY__E(13, "ROLE_CONFLICT", "both sides claim the same role"),
    RLAY__E(14, "BAD_SPACE", "invalid space descriptor"),
    RLAY__E(15, "BAD_VALUE", "value does not match its space"),
    RLAY__E(16, "AUTH_FAILED", "the shared secret was not proven (wrong or missing token)"),
    RLAY__E(19, "AGENT_MISMATCH", "the actions' agents are not exactly the live agents"),
    RLAY__E(20, "BAD_ATTRIBUTE", "an attribute read or write was refused (section 19)"),
    RLAY__E(32, "ENV_EXCEPTION", "env code raised an exception"),
    RLAY__E(33, "INVALID_ACTION", "action outside the action space"),
    RLAY__E(34, "NOT_SUPPORTED", "not supported by the env side"),
    RLAY__E(35, "RESET_NEEDED", "step before the first reset"),
    RLAY__E(36, "SHUTTING_DOWN", "the env side is closing"),
    RLAY__E(37, "INTERNAL", "internal error"),
    RLAY__E(RLAY_E_IO, "IO", "socket error"),
    RLAY__E(RLAY_E_PEER_CLOSED, "PEER_CLOSED", "connection closed by peer"),
    RLAY__E(RLAY_E_USAGE, "USAGE", "API misuse"),
    RLAY__E(RLAY_E_NOMEM, "NOMEM", "out of memory"),
    RLAY__E(RLAY_E_ADDRESS, "ADDRESS", "bad address"),
    RLAY__E(RLAY_E_TIMEOUT, "TIMEOUT", "timed out")};

static const rlay__errdef *rlay__errdef_of(int code) {
    size_t i;
    for (i = 0; i < sizeof rlay__errs / sizeof rlay__errs[0]; i++)
        if (rlay__errs[i].code == code) return &rlay__errs[i];
    return NULL;
}
const char *rlay_error_name(int code) {
    const rlay__errdef *e = rlay__errdef_of(code);
    return e ? e->name : "UNKNOWN_ERROR_CODE";
}
const char *rlay_strerror(int code) {
    const rlay__errdef *e = rlay__errdef_of(code);
    return e ? e->text : "UNKNOWN_ERROR_CODE: an error code this SDK does not know";
}
static int rlay__fatal_code(int code) { return (code >= 1 && code <= 16) || code == 36 || code == 37; }

/* ---- containers ---- */
typedef struct { const char *p; uint32_t n; } rlay__key;
typedef struct {
    rlay_value *nodes; size_t nn, ncap;
    rlay_tensor *ts; size_t nt, tcap;
} rlay__doc;
typedef struct { size_t pos; const void *data; size_t own; size_t nbytes; } rlay__tref;
typedef struct { uint32_t left, n; int map, hook, hookv; size_t start; } rlay__lvl;
enum { RLAY__HOOK_NONE, RLAY__HOOK_SEQ, RLAY__HOOK_GRAPH };

struct rlay_w {
    rlay_ctx *c;
    unsigned char *buf; size_t len, cap;       /* MessagePack bytes */
    rlay__tref *tr; size_t ntr, trcap;          /* tensors, in document order */
    unsigned char *own; size_t olen, ocap;      /* copied tensor bytes (copy writers) */
    int copy, automap, base, depth;
    uint32_t top;                               /* top-level items written */
    rlay__lvl st[RLAY_MAX_DEPTH];
};

typedef struct { const void *p; size_t n; } rlay__iov;

struct rlay_ctx {
    int err, err_from_peer;
    char errmsg[512];
    int role, state, phase, has_reset, pending;
    uint32_t max_frame, max_values;
    int handshake_ms; long hs_deadline;         /* the agent's HELLO by hs_deadline (ms), if set */
    /* section 7.1: the token (token_len 0: none), our nonce (the last 32 bytes of our HELLO
       frame, fresh per connection), the agent's nonce, our AUTH frame */
    unsigned char token[256]; size_t token_len;
    unsigned char peer_nonce[32], auth_frame[53];
    /* sub-envs (section 10), and their per-sub-env arrays, allocated by rlay__prepare */
    uint32_t nenv;
    uint64_t *b_seeds; double *b_rew;
    unsigned char *b_bytes;   /* seeded | reset_mask | ended | flags (2n) | terminations | truncations | was_reset */
    unsigned char *b_seeded, *b_mask, *b_ended, *b_flags, *b_term, *b_trunc, *b_was_reset;
    uint32_t nreset;          /* sub-envs reset at least once: STEP is RESET_NEEDED until all were */
    /* section 18: multi-agent (ma), negotiated (ma_on); the possible agents (ids NUL-terminated, in
       one block), their spaces (in idoc), the live agents (indices, in order); scratch arrays */
    int ma, ma_on;
    uint32_t ma_n, ma_nlive;
    char **ma_ids;
    const rlay_value **ma_obs_sp, **ma_act_sp;
    uint32_t *ma_live, *ma_idx;
    unsigned char *ma_mark;
    char *name, *render_mode;
    rlay_w *w_obs_space, *w_act_space, *w_meta, *w_obs, *w_info, *w_val, *w_body;
    unsigned char *hello, *envinfo; size_t hello_len, envinfo_len;
    rlay__doc idoc;                             /* our own ENV_INFO, decoded */
    const rlay_value *obs_sp, *act_sp;
    /* receiving: rbuf = ralloc + 4, so the data section (rbuf + 12) is 16-byte aligned */
    unsigned char *ralloc, *rbuf; size_t rhave, rcap, rneed;
    int rkind; uint32_t rdlen, rblen;
    rlay__doc rdoc, sdoc;                       /* received message; scratch (obs checks) */
    const rlay_value *rroot;
    rlay__key *keys; size_t kcap;               /* scratch for duplicate-key checks */
    /* sending */
    rlay__iov *iov; size_t niov, iovcap;
    unsigned char hdr[12];
    unsigned char *flat; size_t flen, fcap;
    unsigned char *ebuf; size_t elen, ecap;     /* ERROR bodies, built even after an error */
    char vmsg[400];                             /* why a value does not fit its space */
    /* failure recorded by rlay_fail */
    int fail_code; char fail_type[64]; char fail_msg[400];
    /* transport */
    rlay__sock fd, lfd;
    /* section 17.4: connections accepted but not yet served (a listener reads their first bytes
       and serves the first one whose HELLO is all there), with when each was accepted */
    rlay__sock pend[RLAY_MAX_PENDING]; long pend_at[RLAY_MAX_PENDING]; int npend;
    long open_at;                               /* when the connection served now was accepted */
    int ndropped; char dropmsg[448];            /* connections dropped before the session, why */
    char address[320], upath[256];
    struct sockaddr_storage caddr; size_t caddr_len;
    /* shared memory (section 16): want (rlay_set_shm), announced in our HELLO, used (both
       HELLOs), on (offer accepted: frames through the region) */
    struct {
        int want, unix_addr, announced, use, on;
        int rxfd, nfds;                   /* descriptors that came with the offer */
        unsigned char *base; size_t size; /* the mapping */
        uint64_t a2e_off, a2e_cap, e2a_off, e2a_cap;   /* checked once (16.3), never re-read */
        uint64_t sent, got;               /* frames written to e2a, read from a2e (16.4) */
        int sockwait, eof;                /* frame got+1 is on the socket; the socket ended */
        int readable;                     /* the socket may hold bytes: recv() before waiting */
        unsigned misses, waits;           /* spins in a row that ended asleep; waits (adaptive spin) */
        long spin_us;
        uint64_t max_size;
        char status[200];
    } shm;
    /* section 19: offered attributes */
    struct rlay__attr *attrs; size_t nattr, attrcap;
    void (*attr_hook)(void *ud, rlay_ctx *c, const char *name); void *attr_ud;
};
/* One offered attribute (section 19); its values live in the user's variables. */
enum { RLAY__A_BOOL = 1, RLAY__A_INT, RLAY__A_FLOAT };
typedef struct rlay__attr {
    char name[65]; int type, flags; void *ptr; size_t stride; char *doc;
    double fmin, fmax, fdef; int64_t imin, imax, idef; int bdef;
} rlay__attr;
typedef union { double f; int64_t i; int b; } rlay__aval;
static int rlay__attr_call(rlay_ctx *c, const rlay_value *name, const rlay_value *args, const rlay_value *kwargs);

static int rlay__verr(rlay_ctx *c, int code, const char *fmt, va_list ap) {
    if (!c) return code;   /* a check whose outcome is already known */
    if (c->err) return c->err;
    c->err = code;
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    return code;
}
static RLAY__PRINTF(3, 4) int rlay__err(rlay_ctx *c, int code, const char *fmt, ...) {
    va_list ap; int r;
    va_start(ap, fmt); r = rlay__verr(c, code, fmt, ap); va_end(ap);
    return r;
}
int rlay_error(const rlay_ctx *c) { return c ? c->err : RLAY_E_NOMEM; }
int rlay_dropped(const rlay_ctx *c, const char **last_why) {
    if (last_why) *last_why = c ? c->dropmsg : "";
    return c ? c->ndropped : 0;
}
const char *rlay_errmsg(const rlay_ctx *c) {
    if (!c) return "rlay_new failed: out of memory";
    return c->err ? c->errmsg : "no error";
}

/* Grow *p (elements of size `elem`, capacity *cap) to hold `need`; 0 on success. */
static int rlay__grow(rlay_ctx *c, void **p, size_t *cap, size_t need, size_t elem) {
    size_t nc; void *np;
    if (need <= *cap) return 0;
    nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > ((size_t)-1) / 2) { nc = need; break; }
        nc *= 2;
    }
    if (nc > ((size_t)-1) / elem) return rlay__err(c, RLAY_E_NOMEM, "allocation too large");
    np = realloc(*p, nc * elem);
    if (!np) return rlay__err(c, RLAY_E_NOMEM, "out of memory (%lu bytes)", (unsigned long)(nc * elem));
    *p = np; *cap = nc;
    return 0;
}
#define RLAY__GROW(c, ptr, cap, need) \
    rlay__grow((c), (void **)(void *)&(ptr), &(cap), (need), sizeof *(ptr))

/* ---- UTF-8 (strict: no overlongs, no surrogates, max U+10FFFF) ---- */
/* Decodes one code point at s[*i]; returns it, or -1 if invalid. */
static long rlay__utf8_next(const unsigned char *s, size_t n, size_t *i) {
    unsigned char b = s[*i];
    long cp; int k, j;
    if (b < 0x80) { (*i)++; return b; }
    if (b >= 0xc2 && b <= 0xdf) { k = 1; cp = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) { k = 2; cp = b & 0x0f; }
    else if (b >= 0xf0 && b <= 0xf4) { k = 3; cp = b & 0x07; }
    else return -1;
    if (n - *i < (size_t)k + 1) return -1;
    for (j = 1; j <= k; j++) {
        unsigned char x = s[*i + j];
        if ((x & 0xc0) != 0x80) return -1;
        cp = (cp << 6) | (x & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    *i += (size_t)k + 1;
    return cp;
}
static int rlay__utf8_ok(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) if (rlay__utf8_next((const unsigned char *)s, n, &i) < 0) return 0;
    return 1;
}

/* ---- numbers ---- */
/* A wire int: value is u if !neg, else (int64_t)u. */
typedef struct { int neg; uint64_t u; } rlay__wint;
static int rlay__wcmp(rlay__wint a, rlay__wint b) {
    if (a.neg != b.neg) return a.neg ? -1 : 1;
    if (a.neg) return (int64_t)a.u < (int64_t)b.u ? -1 : (int64_t)a.u > (int64_t)b.u;
    return a.u < b.u ? -1 : a.u > b.u;
}
/* Does x fit integer dtype dt (bool: 0/1)? */
static int rlay__fits(rlay__wint x, int dt) {
    int bits = rlay__dt[dt].size * 8;
    if (rlay__dt[dt].cls == 'b') return !x.neg && x.u <= 1;
    if (rlay__dt[dt].cls == 'u') return !x.neg && (bits == 64 || x.u < ((uint64_t)1 << bits));
    if (bits == 64) return x.neg || x.u <= (uint64_t)INT64_MAX;
    if (x.neg) return (int64_t)x.u >= -((int64_t)1 << (bits - 1));
    return x.u < ((uint64_t)1 << (bits - 1));
}
/* start <= x < start + n (n >= 0), without overflow. */
static int rlay__in_range(rlay__wint x, rlay__wint start, rlay__wint n) {
    uint64_t d;
    if (n.neg || rlay__wcmp(x, start) < 0) return 0;
    if (!x.neg && start.neg) {
        uint64_t ms = (uint64_t)0 - start.u; /* |start| */
        if (x.u > ((uint64_t)-1) - ms) return 0;
        d = x.u + ms;
    } else d = x.u - start.u;
    return d < n.u;
}
static double rlay__half_to_double(uint16_t h) {
    int e = (h >> 10) & 0x1f; unsigned m = h & 0x3ff; double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp((double)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}
static uint16_t rlay__double_to_half(double x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double r; int e, E;
    if (x != x) return 0x7e00;
    x = fabs(x);
    if (x >= 65520.0) return (uint16_t)(sign | 0x7c00);  /* rounds to +-inf */
    if (x < ldexp(1.0, -14)) {                            /* subnormal: m * 2^-24 */
        r = nearbyint(x * 16777216.0);
        return (uint16_t)(sign | (uint16_t)r);
    }
    r = nearbyint((frexp(x, &e) * 2.0 - 1.0) * 1024.0);
    E = e - 1 + 15;
    if (r >= 1024.0) { r = 0; E++; }
    if (E >= 31) return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | (E << 10) | (int)r);
}
static uint64_t rlay__rd_le(const unsigned char *p, int n) {
    uint64_t v = 0; int i;
    for (i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t rlay__rd32le(const unsigned char *p) { return (uint32_t)rlay__rd_le(p, 4); }
static void rlay__wr32le(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
/* Element i of a tensor as a wire int (integer and bool dtypes). */
static rlay__wint rlay__elem_w(const rlay_tensor *t, size_t i) {
    int sz = rlay__dt[t->dtype].size, sgn = rlay__dt[t->dtype].cls == 'i';
    uint64_t raw = rlay__rd_le((const unsigned char *)t->data + i * (size_t)sz, sz);
    rlay__wint w;
    if (sgn && sz < 8 && ((raw >> (sz * 8 - 1)) & 1)) raw |= ~(uint64_t)0 << (sz * 8);
    w.neg = sgn && (int64_t)raw < 0;
    w.u = raw;
    return w;
}
double rlay_tensor_get(const rlay_tensor *t, size_t i) {
    const unsigned char *p;
    if (!t || !t->data || i >= t->count || !rlay__dt_ok(t->dtype)) return NAN;
    p = (const unsigned char *)t->data + i * rlay__dt[t->dtype].size;
    switch (t->dtype) {
    case RLAY_DT_FLOAT16: return rlay__half_to_double((uint16_t)rlay__rd_le(p, 2));
    case RLAY_DT_FLOAT32: { uint32_t b = (uint32_t)rlay__rd_le(p, 4); float f; memcpy(&f, &b, 4); return f; }
    case RLAY_DT_FLOAT64: { uint64_t b = rlay__rd_le(p, 8); double d; memcpy(&d, &b, 8); return d; }
    default: { rlay__wint w = rlay__elem_w(t, i); return w.neg ? (double)(int64_t)w.u : (double)w.u; }
    }
}

/* ======================================================================================== */
/* Writer. Low-level emitters (rlay__e_*) append bytes; the public rlay_put_* check the API
   rules (one value, item counts, str keys, depth) and keep errors sticky. */

static void rlay__wbytes(rlay_w *w, const void *p, size_t n) {
    if (n == 0) return;
    if (w->len + n < w->len || RLAY__GROW(w->c, w->buf, w->cap, w->len + n)) {
        rlay__err(w->c, RLAY_E_NOMEM, "out of memory");
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}
static void rlay__wbe(rlay_w *w, unsigned char tag, uint64_t v, int n) {
    unsigned char b[9]; int i;
    b[0] = tag;
    for (i = 0; i < n; i++) b[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    rlay__wbytes(w, b, (size_t)n + 1);
}
/* Canonical forms, spec section 5. */
static void rlay__e_uint(rlay_w *w, uint64_t v) {
    if (v <= 0x7f) { unsigned char b = (unsigned char)v; rlay__wbytes(w, &b, 1); }
    else if (v <= 0xff) rlay__wbe(w, 0xcc, v, 1);
    else if (v <= 0xffff) rlay__wbe(w, 0xcd, v, 2);
    else if (v <= 0xffffffffu) rlay__wbe(w, 0xce, v, 4);
    else rlay__wbe(w, 0xcf, v, 8);
}
static void rlay__e_int(rlay_w *w, int64_t v) {
    if (v >= 0) rlay__e_uint(w, (uint64_t)v);
    else if (v >= -32) { unsigned char b = (unsigned char)(uint8_t)(int8_t)v; rlay__wbytes(w, &b, 1); }
    else if (v >= -128) rlay__wbe(w, 0xd0, (uint64_t)v & 0xff, 1);
    else if (v >= -32768) rlay__wbe(w, 0xd1, (uint64_t)v & 0xffff, 2);
    else if (v >= -2147483647 - 1) rlay__wbe(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    else rlay__wbe(w, 0xd3, (uint64_t)v, 8);
}
static void rlay__e_float(rlay_w *w, double d) {
    uint64_t b; memcpy(&b, &d, 8); rlay__wbe(w, 0xcb, b, 8);
}
static void rlay__e_hdr(rlay_w *w, unsigned char fix, unsigned fixmax, unsigned char t8,
                        unsigned char t16, unsigned char t32, uint32_t n) {
    if (n <= fixmax) { unsigned char b = (unsigned char)(fix | n); rlay__wbytes(w, &b, 1); }
    else if (t8 && n <= 0xff) rlay__wbe(w, t8, n, 1);
    else if (n <= 0xffff) rlay__wbe(w, t16, n, 2);
    else rlay__wbe(w, t32, n, 4);
}
static void rlay__e_strn(rlay_w *w, const char *s, uint32_t n) {
    rlay__e_hdr(w, 0xa0, 31, 0xd9, 0xda, 0xdb, n); rlay__wbytes(w, s, n);
}
static void rlay__e_str(rlay_w *w, const char *s) { rlay__e_strn(w, s, (uint32_t)strlen(s)); }
static void rlay__e_map(rlay_w *w, uint32_t n) { rlay__e_hdr(w, 0x80, 15, 0, 0xde, 0xdf, n); }
static void rlay__e_array(rlay_w *w, uint32_t n) { rlay__e_hdr(w, 0x90, 15, 0, 0xdc, 0xdd, n); }
static void rlay__e_nil(rlay_w *w) { unsigned char b = 0xc0; rlay__wbytes(w, &b, 1); }
static void rlay__e_bool(rlay_w *w, int v) { unsigned char b = v ? 0xc3 : 0xc2; rlay__wbytes(w, &b, 1); }

static rlay_w *rlay__w_new(rlay_ctx *c, int copy, int automap, int base) {
    rlay_w *w = (rlay_w *)calloc(1, sizeof *w);
    if (!w) { rlay__err(c, RLAY_E_NOMEM, "out of memory"); return NULL; }
    w->c = c; w->copy = copy; w->automap = automap; w->base = base;
    return w;
}
static void rlay__w_reset(rlay_w *w) { w->len = w->ntr = w->olen = 0; w->depth = 0; w->top = 0; }
static void rlay__w_free(rlay_w *w) {
    if (!w) return;
    free(w->buf); free(w->tr); free(w->own); free(w);
}

static int rlay__usage(rlay_w *w, const char *what) {
    return rlay__err(w->c, RLAY_E_USAGE, "%s", what);
}
/* Checks that an item may be written here; 1 if so. */
static int rlay__ibegin(rlay_w *w, int is_str) {
    if (!w || w->c->err) return 0;
    if (w->depth > 0) {
        rlay__lvl *l = &w->st[w->depth - 1];
        if (l->map && ((2 * l->n - l->left) % 2) == 0 && !is_str)
            return !rlay__usage(w, "map keys must be str (write the key with rlay_put_key first)");
    } else if (w->automap) {
        if (w->top % 2 == 0 && !is_str)
            return !rlay__usage(w, "this writer holds key/value pairs: write a str key first");
    } else if (w->top >= 1) {
        return !rlay__usage(w, "this writer takes exactly one value, and it is already written");
    }
    return 1;
}
static int rlay__skip(const unsigned char *p, size_t n, size_t *pos);
static int rlay__dup_keys(rlay_ctx *c, const unsigned char *p, size_t n, size_t start, uint32_t pairs,
                          const char **dup, uint32_t *duplen);
static void rlay__pop(rlay_w *w) {
    rlay__lvl *l = &w->st[w->depth - 1];
    const char *d; uint32_t dl;
    if (l->map && l->n >= 2 && rlay__dup_keys(w->c, w->buf, w->len, l->start, l->n, &d, &dl))
        rlay__err(w->c, RLAY_E_USAGE, "duplicate map key '%.*s'", (int)(dl > 100 ? 100 : dl), d);
    w->depth--;
}
static void rlay_put_str_(rlay_w *w, const char *s, size_t n);
static void rlay__idone(rlay_w *w) {
    rlay__lvl *l;
    if (w->depth == 0) { w->top++; return; }
    l = &w->st[w->depth - 1];
    l->left--;
    if (l->left == 0) { rlay__pop(w); rlay__idone(w); return; }
    if (l->hook && l->left == 2) {   /* a space field that follows a user-written sub-space */
        int hook = l->hook, v = l->hookv;
        l->hook = RLAY__HOOK_NONE;
        if (hook == RLAY__HOOK_SEQ) { rlay_put_str_(w, "stack", 5); rlay_put_bool(w, v); }
        else rlay_put_str_(w, "edge_space", 10);
    }
}
static void rlay__open(rlay_w *w, int map, uint32_t n, int hook, int hookv) {
    rlay__lvl *l;
    if (!rlay__ibegin(w, 0)) return;
    if (w->base + w->depth + 1 > RLAY_MAX_DEPTH) { rlay__usage(w, "nesting deeper than 64 (max_depth)"); return; }
    if (map && n > 0x7fffffffu) { rlay__usage(w, "map too large"); return; }
    if (map) rlay__e_map(w, n); else rlay__e_array(w, n);
    if (n == 0) { rlay__idone(w); return; }
    l = &w->st[w->depth++];
    l->left = map ? 2 * n : n; l->n = n; l->map = map; l->hook = hook; l->hookv = hookv;
    l->start = w->len;
}

void rlay_put_nil(rlay_w *w) { if (rlay__ibegin(w, 0)) { rlay__e_nil(w); rlay__idone(w); } }
void rlay_put_bool(rlay_w *w, int b) { if (rlay__ibegin(w, 0)) { rlay__e_bool(w, b); rlay__idone(w); } }
void rlay_put_int(rlay_w *w, int64_t v) { if (rlay__ibegin(w, 0)) { rlay__e_int(w, v); rlay__idone(w); } }
void rlay_put_uint(rlay_w *w, uint64_t v) { if (rlay__ibegin(w, 0)) { rlay__e_uint(w, v); rlay__idone(w); } }
void rlay_put_float(rlay_w *w, double v) { if (rlay__ibegin(w, 0)) { rlay__e_float(w, v); rlay__idone(w); } }
static void rlay_put_str_(rlay_w *w, const char *s, size_t n) {
    if (!rlay__ibegin(w, 1)) return;
    if (n > 0xffffffffu) { rlay__usage(w, "str longer than 4 GiB"); return; }
    if (!rlay__utf8_ok(s, n)) { rlay__usage(w, "str is not valid UTF-8"); return; }
    rlay__e_strn(w, s, (uint32_t)n);
    rlay__idone(w);
}
void rlay_put_strn(rlay_w *w, const char *s, size_t n) { rlay_put_str_(w, s ? s : "", s ? n : 0); }
void rlay_put_str(rlay_w *w, const char *s) { rlay_put_strn(w, s, s ? strlen(s) : 0); }
void rlay_put_key(rlay_w *w, const char *key) { rlay_put_str(w, key); }
void rlay_put_bytes(rlay_w *w, const void *p, size_t n) {
    if (!rlay__ibegin(w, 0)) return;
    if (n > 0xffffffffu) { rlay__usage(w, "bytes longer than 4 GiB"); return; }
    if (n && !p) { rlay__usage(w, "rlay_put_bytes: NULL data"); return; }
    if (n <= 0xff) rlay__wbe(w, 0xc4, n, 1); /* bin has no fix form */
    else if (n <= 0xffff) rlay__wbe(w, 0xc5, n, 2);
    else rlay__wbe(w, 0xc6, n, 4);
    rlay__wbytes(w, p, n);
    rlay__idone(w);
}
void rlay_put_array(rlay_w *w, uint32_t n) { rlay__open(w, 0, n, 0, 0); }
void rlay_put_map(rlay_w *w, uint32_t n) { rlay__open(w, 1, n, 0, 0); }

/* Element count of a shape, or 0 with *ovf set when it does not fit size_t. */
static size_t rlay__count(int ndim, const uint32_t *shape, int *ovf) {
    size_t n = 1; int i;
    *ovf = 0;
    for (i = 0; i < ndim; i++) if (shape[i] == 0) return 0;
    for (i = 0; i < ndim; i++) {
        if (n > ((size_t)-1) / shape[i]) { *ovf = 1; return 0; }
        n *= shape[i];
    }
    return n;
}
static void rlay__e_tensor(rlay_w *w, int dtype, int ndim, const uint32_t *shape, const void *data, size_t nbytes);
void rlay_put_tensor(rlay_w *w, int dtype, int ndim, const uint32_t *shape, const void *data) {
    size_t count, nbytes, i; int ovf;
    if (!w || w->c->err) return;
    if (!rlay__dt_ok(dtype)) { rlay__err(w->c, RLAY_E_USAGE, "rlay_put_tensor: unknown dtype code %d", dtype); return; }
    if (ndim < 0 || ndim > RLAY_MAX_NDIM || (ndim > 0 && !shape)) {
        rlay__err(w->c, RLAY_E_USAGE, "rlay_put_tensor: ndim %d is not in 0..32", ndim); return;
    }
    count = rlay__count(ndim, shape, &ovf);
    if (ovf || count > 0xffffffffu / rlay__dt[dtype].size) { rlay__usage(w, "rlay_put_tensor: tensor larger than 4 GiB"); return; }
    nbytes = count * rlay__dt[dtype].size;
    if (nbytes && !data) { rlay__usage(w, "rlay_put_tensor: NULL data"); return; }
    if (dtype == RLAY_DT_BOOL)
        for (i = 0; i < nbytes; i++)
            if (((const unsigned char *)data)[i] > 1) {
                rlay__err(w->c, RLAY_E_USAGE, "rlay_put_tensor: bool element %lu is %u, not 0 or 1",
                          (unsigned long)i, ((const unsigned char *)data)[i]);
                return;
            }
    if (!rlay__ibegin(w, 0)) return;
    rlay__e_tensor(w, dtype, ndim, shape, data, nbytes);
    rlay__idone(w);
}
/* Appends a tensor descriptor and its reference (copied into a copying writer). No API checks. */
static void rlay__e_tensor(rlay_w *w, int dtype, int ndim, const uint32_t *shape, const void *data, size_t nbytes) {
    unsigned char d[6 + 4 * RLAY_MAX_NDIM + 3];
    rlay__tref *t;
    int k;
    /* ext 8 always: 6 + 4*ndim is never 1, 2, 4, 8 or 16, and at most 134 */
    d[0] = 0xc7; d[1] = (unsigned char)(6 + 4 * ndim); d[2] = 1;
    d[3] = (unsigned char)dtype; d[4] = (unsigned char)ndim;
    for (k = 0; k < ndim; k++) rlay__wr32le(d + 5 + 4 * k, shape[k]);
    rlay__wr32le(d + 5 + 4 * ndim, 0); /* offset, set when the frame is laid out */
    if (RLAY__GROW(w->c, w->tr, w->trcap, w->ntr + 1)) return;
    t = &w->tr[w->ntr];
    t->pos = w->len + 5 + 4 * (size_t)ndim; t->nbytes = nbytes; t->data = data; t->own = 0;
    if (w->copy && nbytes) {
        if (RLAY__GROW(w->c, w->own, w->ocap, w->olen + nbytes)) return;
        memcpy(w->own + w->olen, data, nbytes);
        t->data = NULL; t->own = w->olen; w->olen += nbytes;
    }
    w->ntr++;
    rlay__wbytes(w, d, 9 + 4 * (size_t)ndim);
}

/* ======================================================================================== */
/* Decoder (spec sections 3-4). Input is hostile: every length is checked against the bytes
   left before it is used, containers reserve nodes only after that check, depth is bounded.
   Values are stored as a flat node array; a container's items are contiguous. */

typedef struct {
    rlay_ctx *c; rlay__doc *d;
    const unsigned char *p; size_t n, pos;
    const unsigned char *data; size_t dlen;
    int nodata;   /* decoding our own writer bytes: tensors have no data section */
} rlay__dec;

static const char *rlay__tname(int type) {
    static const char *const n[] = {"?", "nil", "bool", "int", "float", "str", "bytes", "array", "map", "tensor"};
    return (type >= 1 && type <= 9) ? n[type] : "?";
}
static uint64_t rlay__be(const unsigned char *p, int n) {
    uint64_t v = 0; int i;
    for (i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}
static int rlay__need(rlay__dec *s, uint64_t k, const char *what, size_t at) {
    if (k <= (uint64_t)(s->n - s->pos)) return 0;
    return rlay__err(s->c, RLAY_E_MALFORMED, "%s at body byte %lu declares %llu bytes, but only %lu remain",
                     what, (unsigned long)at, (unsigned long long)k, (unsigned long)(s->n - s->pos));
}
static int rlay__keycmp(const void *a, const void *b) {
    const rlay__key *x = (const rlay__key *)a, *y = (const rlay__key *)b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return memcmp(x->p, y->p, x->n);
}
/* Finds a duplicate among c->keys[0..n); returns its index or -1. O(n log n) for big maps. */
static long rlay__find_dup(rlay_ctx *c, size_t n) {
    size_t i, j;
    if (n <= 16) {
        for (i = 0; i < n; i++)
            for (j = i + 1; j < n; j++)
                if (c->keys[i].n == c->keys[j].n && memcmp(c->keys[i].p, c->keys[j].p, c->keys[i].n) == 0)
                    return (long)i;
        return -1;
    }
    qsort(c->keys, n, sizeof *c->keys, rlay__keycmp);
    for (i = 1; i < n; i++) if (rlay__keycmp(&c->keys[i - 1], &c->keys[i]) == 0) return (long)i;
    return -1;
}
/* Skips one value of trusted, already-written bytes; -1 if they run out. */
static int rlay__skip(const unsigned char *p, size_t n, size_t *pos) {
    uint64_t todo = 1, len;
    while (todo) {
        unsigned char b;
        todo--;
        if (*pos >= n) return -1;
        b = p[(*pos)++]; len = 0;
        if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3)) continue;
        if (b <= 0x8f) { todo += 2u * (b & 15); continue; }
        if (b <= 0x9f) { todo += b & 15u; continue; }
        if (b <= 0xbf) len = b & 31u;
        else if (b >= 0xc4 && b <= 0xc6) { int k = 1 << (b - 0xc4); if (n - *pos < (size_t)k) return -1; len = rlay__be(p + *pos, k); *pos += (size_t)k; }
        else if (b >= 0xc7 && b <= 0xc9) { int k = 1 << (b - 0xc7); if (n - *pos < (size_t)k) return -1; len = rlay__be(p + *pos, k) + 1; *pos += (size_t)k; }
        else if (b == 0xca) len = 4;
        else if (b == 0xcb) len = 8;
        else if (b >= 0xcc && b <= 0xcf) len = 1u << (b - 0xcc);
        else if (b >= 0xd0 && b <= 0xd3) len = 1u << (b - 0xd0);
        else if (b >= 0xd4 && b <= 0xd8) len = (1u << (b - 0xd4)) + 1;
        else if (b >= 0xd9 && b <= 0xdb) { int k = 1 << (b - 0xd9); if (n - *pos < (size_t)k) return -1; len = rlay__be(p + *pos, k); *pos += (size_t)k; }
        else if (b == 0xdc || b == 0xdd) { int k = b == 0xdc ? 2 : 4; if (n - *pos < (size_t)k) return -1; todo += rlay__be(p + *pos, k); *pos += (size_t)k; }
        else if (b == 0xde || b == 0xdf) { int k = b == 0xde ? 2 : 4; if (n - *pos < (size_t)k) return -1; todo += 2 * rlay__be(p + *pos, k); *pos += (size_t)k; }
        else return -1;
        if (len > n - *pos) return -1;
        *pos += (size_t)len;
    }
    return 0;
}
/* Duplicate check of a written map's keys (pairs at p[start..]). */
static int rlay__dup_keys(rlay_ctx *c, const unsigned char *p, size_t n, size_t start, uint32_t pairs,
                          const char **dup, uint32_t *duplen) {
    size_t pos = start, i; long d;
    if (RLAY__GROW(c, c->keys, c->kcap, pairs)) return 0;
    for (i = 0; i < pairs; i++) {
        size_t k0 = pos, h;
        unsigned char b;
        if (pos >= n) return 0;
        b = p[pos];
        if (b >= 0xa0 && b <= 0xbf) { h = 1; c->keys[i].n = b & 31u; }
        else if (b >= 0xd9 && b <= 0xdb) { int k = 1 << (b - 0xd9); h = 1 + (size_t)k; if (n - pos < h) return 0; c->keys[i].n = (uint32_t)rlay__be(p + pos + 1, k); }
        else return 0;
        c->keys[i].p = (const char *)p + k0 + h;
        if (rlay__skip(p, n, &pos) || rlay__skip(p, n, &pos)) return 0;
    }
    d = rlay__find_dup(c, pairs);
    if (d < 0) return 0;
    *dup = c->keys[d].p; *duplen = c->keys[d].n;
    return 1;
}

static int rlay__dec_tensor(rlay__dec *s, size_t idx, const unsigned char *q, uint32_t L, size_t at) {
    rlay_ctx *c = s->c;
    rlay_tensor *t;
    int dt, nd, i, zero = 0;
    size_t count = 1, isz;
    if (L < 6) return rlay__err(c, RLAY_E_BAD_TENSOR, "tensor descriptor at body byte %lu is %u bytes, shorter than 6", (unsigned long)at, L);
    dt = q[0]; nd = q[1];
    if (nd > RLAY_MAX_NDIM) return rlay__err(c, RLAY_E_BAD_TENSOR, "tensor at body byte %lu has ndim %d, more than 32", (unsigned long)at, nd);
    if (L != 6u + 4u * (uint32_t)nd)
        return rlay__err(c, RLAY_E_BAD_TENSOR, "tensor descriptor at body byte %lu is %u bytes; ndim %d needs %d", (unsigned long)at, L, nd, 6 + 4 * nd);
    if (!rlay__dt_ok(dt)) return rlay__err(c, RLAY_E_UNKNOWN_DTYPE, "tensor at body byte %lu has unknown dtype code %d", (unsigned long)at, dt);
    if (RLAY__GROW(c, s->d->ts, s->d->tcap, s->d->nt + 1)) return c->err;
    t = &s->d->ts[s->d->nt];
    t->dtype = dt; t->ndim = nd;
    for (i = 0; i < nd; i++) { t->shape[i] = rlay__rd32le(q + 2 + 4 * i); if (!t->shape[i]) zero = 1; }
    t->offset = rlay__rd32le(q + 2 + 4 * nd);
    if (t->offset % 8) return rlay__err(c, RLAY_E_BAD_TENSOR, "tensor at body byte %lu has offset %u, not a multiple of 8", (unsigned long)at, t->offset);
    isz = rlay__dt[dt].size;
    /* Stop multiplying as soon as the product exceeds the data section: it cannot fit. */
    if (zero) count = 0;
    else for (i = 0; i < nd; i++) {
        if (count > ((size_t)-1) / t->shape[i]) { count = (size_t)-1; break; }
        count *= t->shape[i];
        if (!s->nodata && count > s->dlen) break;
    }
    if (s->nodata) {
        t->count = count; t->nbytes = count > ((size_t)-1) / isz ? (size_t)-1 : count * isz; t->data = NULL;
    } else {
        if (count > s->dlen / isz || t->offset > s->dlen || count * isz > s->dlen - t->offset)
            return rlay__err(c, RLAY_E_BAD_TENSOR, "tensor at body byte %lu: its bytes (offset %u) do not fit in the %lu-byte data section",
                             (unsigned long)at, t->offset, (unsigned long)s->dlen);
        t->count = count; t->nbytes = count * isz; t->data = s->data + t->offset;
        if (dt == RLAY_DT_BOOL) {
            size_t k;
            const unsigned char *b = (const unsigned char *)t->data;
            for (k = 0; k < t->nbytes; k++)
                if (b[k] > 1) return rlay__err(c, RLAY_E_BAD_TENSOR, "bool tensor element %lu is byte %u, not 0 or 1", (unsigned long)k, b[k]);
        }
    }
    s->d->nodes[idx].type = RLAY_T_TENSOR;
    s->d->nodes[idx].v.u = s->d->nt++;
    return 0;
}

static int rlay__dec_val(rlay__dec *s, size_t idx, int depth) {
    rlay_ctx *c = s->c;
    const unsigned char *p = s->p;
    size_t at = s->pos;
    unsigned char b;
    uint64_t len = 0;
    int kind = 0, k;   /* kind: 1 str, 2 bin, 3 array, 4 map, 5 ext (k = length bytes) */
    rlay_value *v;
    if (s->pos >= s->n) return rlay__err(c, RLAY_E_MALFORMED, "the body ends inside a value (at body byte %lu)", (unsigned long)at);
    b = p[s->pos++];
    v = &s->d->nodes[idx];
    v->neg = 0; v->len = 0; v->v.u = 0;
    if (b <= 0x7f) { v->type = RLAY_T_INT; v->v.u = b; return 0; }
    if (b >= 0xe0) { v->type = RLAY_T_INT; v->neg = 1; v->v.i = (int8_t)b; return 0; }
    if (b <= 0x8f) { kind = 4; len = b & 15u; }
    else if (b <= 0x9f) { kind = 3; len = b & 15u; }
    else if (b <= 0xbf) { kind = 1; len = b & 31u; }
    else if (b == 0xc0) { v->type = RLAY_T_NIL; return 0; }
    else if (b == 0xc2 || b == 0xc3) { v->type = RLAY_T_BOOL; v->v.b = b == 0xc3; return 0; }
    else if (b >= 0xc4 && b <= 0xc6) { kind = 2; k = 1 << (b - 0xc4); if (rlay__need(s, (uint64_t)k, "bin header", at)) return c->err; len = rlay__be(p + s->pos, k); s->pos += (size_t)k; }
    else if (b >= 0xc7 && b <= 0xc9) { kind = 5; k = 1 << (b - 0xc7); if (rlay__need(s, (uint64_t)k, "ext header", at)) return c->err; len = rlay__be(p + s->pos, k); s->pos += (size_t)k; }
    else if (b >= 0xd4 && b <= 0xd8) { kind = 5; len = 1u << (b - 0xd4); }
    else if (b >= 0xd9 && b <= 0xdb) { kind = 1; k = 1 << (b - 0xd9); if (rlay__need(s, (uint64_t)k, "str header", at)) return c->err; len = rlay__be(p + s->pos, k); s->pos += (size_t)k; }
    else if (b == 0xdc || b == 0xdd) { kind = 3; k = b == 0xdc ? 2 : 4; if (rlay__need(s, (uint64_t)k, "array header", at)) return c->err; len = rlay__be(p + s->pos, k); s->pos += (size_t)k; }
    else if (b == 0xde || b == 0xdf) { kind = 4; k = b == 0xde ? 2 : 4; if (rlay__need(s, (uint64_t)k, "map header", at)) return c->err; len = rlay__be(p + s->pos, k); s->pos += (size_t)k; }
    else if (b == 0xca || b == 0xcb) {
        k = b == 0xca ? 4 : 8;
        if (rlay__need(s, (uint64_t)k, "float", at)) return c->err;
        if (k == 4) { uint32_t u = (uint32_t)rlay__be(p + s->pos, 4); float f; memcpy(&f, &u, 4); v->v.f = f; }
        else { uint64_t u = rlay__be(p + s->pos, 8); memcpy(&v->v.f, &u, 8); }
        v->type = RLAY_T_FLOAT; s->pos += (size_t)k;
        return 0;
    } else if (b >= 0xcc && b <= 0xd3) {
        int sgn = b >= 0xd0;
        k = 1 << (b - (sgn ? 0xd0 : 0xcc));
        if (rlay__need(s, (uint64_t)k, "int", at)) return c->err;
        v->type = RLAY_T_INT; v->v.u = rlay__be(p + s->pos, k); s->pos += (size_t)k;
        if (sgn) {
            uint64_t u = v->v.u;
            if (k < 8 && ((u >> (8 * k - 1)) & 1)) u |= ~(uint64_t)0 << (8 * k);
            v->v.u = u; v->neg = (int64_t)u < 0;   /* non-negative values are stored unsigned */
        }
        return 0;
    } else {
        return rlay__err(c, RLAY_E_MALFORMED, "byte 0x%02x at body byte %lu does not start a MessagePack value", b, (unsigned long)at);
    }
    if (kind == 1 || kind == 2) {
        if (rlay__need(s, len, kind == 1 ? "str" : "bin", at)) return c->err;
        if (kind == 1 && !rlay__utf8_ok((const char *)p + s->pos, (size_t)len))
            return rlay__err(c, RLAY_E_MALFORMED, "str at body byte %lu is not valid UTF-8", (unsigned long)at);
        v->type = kind == 1 ? RLAY_T_STR : RLAY_T_BYTES;
        v->len = (uint32_t)len; v->v.s = (const char *)p + s->pos;
        s->pos += (size_t)len;
        return 0;
    }
    if (kind == 5) {
        int type;
        if (rlay__need(s, len + 1, "ext", at)) return c->err;
        type = (int8_t)p[s->pos++];
        if (type != 1)
            return rlay__err(c, RLAY_E_MALFORMED, "ext type %d at body byte %lu is not allowed (only 1, tensor)%s",
                             type, (unsigned long)at, type == -1 ? "; the timestamp ext is not part of rlay" : "");
        s->pos += (size_t)len;
        if (s->d->nn + 7 * ((uint64_t)s->d->nt + 1) > c->max_values)   /* section 3: a tensor counts as 8 values */
            return rlay__err(c, RLAY_E_FRAME_TOO_LARGE, "the body declares more than max_values %u values (a tensor at body byte %lu)",
                             c->max_values, (unsigned long)at);
        return rlay__dec_tensor(s, idx, p + s->pos - len, (uint32_t)len, at);
    }
    {   /* array or map */
        uint64_t items = kind == 4 ? 2 * len : len, i;
        size_t first;
        if (depth > RLAY_MAX_DEPTH)
            return rlay__err(c, RLAY_E_TOO_DEEP, "nesting deeper than %d at body byte %lu", RLAY_MAX_DEPTH, (unsigned long)at);
        if (items > (uint64_t)(s->n - s->pos))
            return rlay__err(c, RLAY_E_MALFORMED, "%s at body byte %lu declares %llu items, but only %lu bytes remain",
                             kind == 4 ? "map" : "array", (unsigned long)at, (unsigned long long)items, (unsigned long)(s->n - s->pos));
        if (s->d->nn + items + 7 * (uint64_t)s->d->nt > c->max_values)   /* section 3: the values a body declares */
            return rlay__err(c, RLAY_E_FRAME_TOO_LARGE, "the body declares more than max_values %u values (%s at body byte %lu)",
                             c->max_values, kind == 4 ? "map" : "array", (unsigned long)at);
        if (RLAY__GROW(c, s->d->nodes, s->d->ncap, s->d->nn + (size_t)items)) return c->err;
        first = s->d->nn; s->d->nn += (size_t)items;
        v = &s->d->nodes[idx];
        v->type = kind == 4 ? RLAY_T_MAP : RLAY_T_ARRAY; v->len = (uint32_t)len; v->v.u = first;
        for (i = 0; i < items; i++) {
            if (kind == 4 && i % 2 == 0 && s->pos < s->n) {
                unsigned char kb = p[s->pos];
                if (!((kb >= 0xa0 && kb <= 0xbf) || (kb >= 0xd9 && kb <= 0xdb)))
                    return rlay__err(c, RLAY_E_MALFORMED, "map key at body byte %lu is not a str", (unsigned long)s->pos);
            }
            if (rlay__dec_val(s, first + (size_t)i, depth + 1)) return c->err;
        }
        if (kind == 4 && len >= 2) {
            long d;
            if (RLAY__GROW(c, c->keys, c->kcap, (size_t)len)) return c->err;
            for (i = 0; i < len; i++) {
                const rlay_value *kv = &s->d->nodes[first + 2 * (size_t)i];
                c->keys[i].p = kv->v.s; c->keys[i].n = kv->len;
            }
            d = rlay__find_dup(c, (size_t)len);
            if (d >= 0)
                return rlay__err(c, RLAY_E_MALFORMED, "map at body byte %lu has the key '%.*s' twice", (unsigned long)at,
                                 (int)(c->keys[d].n > 100 ? 100 : c->keys[d].n), c->keys[d].p);
        }
        return 0;
    }
}

/* Decodes one value filling body[0..blen); tensors index data[0..dlen). */
static int rlay__decode(rlay_ctx *c, rlay__doc *d, const unsigned char *body, size_t blen,
                        const unsigned char *data, size_t dlen, int nodata, const rlay_value **root) {
    rlay__dec s;
    size_t i;
    d->nn = 0; d->nt = 0;
    if (c->err) return c->err;
    if (RLAY__GROW(c, d->nodes, d->ncap, 1)) return c->err;
    d->nn = 1;
    s.c = c; s.d = d; s.p = body; s.n = blen; s.pos = 0; s.data = data; s.dlen = dlen; s.nodata = nodata;
    if (rlay__dec_val(&s, 0, 1)) return c->err;
    if (s.pos != blen)
        return rlay__err(c, RLAY_E_MALFORMED, "%lu trailing bytes after the body's value", (unsigned long)(blen - s.pos));
    for (i = 0; i < d->nn; i++) {   /* indices become pointers now that nothing moves */
        rlay_value *v = &d->nodes[i];
        if (v->type == RLAY_T_ARRAY || v->type == RLAY_T_MAP) v->v.items = d->nodes + (size_t)v->v.u;
        else if (v->type == RLAY_T_TENSOR) v->v.t = d->ts + (size_t)v->v.u;
    }
    *root = d->nodes;
    return 0;
}

/* ---- reading helpers ---- */
int rlay_str_eq(const rlay_value *v, const char *s) {
    size_t n = strlen(s);
    return v && v->type == RLAY_T_STR && v->len == n && memcmp(v->v.s, s, n) == 0;
}
static const rlay_value *rlay__map_getn(const rlay_value *m, const char *key, size_t n) {
    uint32_t i;
    if (!m || m->type != RLAY_T_MAP) return NULL;
    for (i = 0; i < m->len; i++) {
        const rlay_value *k = &m->v.items[2 * i];
        if (k->len == n && memcmp(k->v.s, key, n) == 0) return &m->v.items[2 * i + 1];
    }
    return NULL;
}
const rlay_value *rlay_map_get(const rlay_value *m, const char *key) { return rlay__map_getn(m, key, strlen(key)); }
static int rlay__wint_of(const rlay_value *v, rlay__wint *out) {
    if (v->type == RLAY_T_INT) { out->neg = v->neg; out->u = v->v.u; return 1; }
    if (v->type == RLAY_T_TENSOR && v->v.t->ndim == 0 && v->v.t->data &&
        (rlay__dt[v->v.t->dtype].cls == 'i' || rlay__dt[v->v.t->dtype].cls == 'u')) {
        *out = rlay__elem_w(v->v.t, 0);
        return 1;
    }
    return 0;
}
int rlay_as_int64(const rlay_value *v, int64_t *out) {
    rlay__wint w;
    if (!v || !rlay__wint_of(v, &w) || (!w.neg && w.u > (uint64_t)INT64_MAX)) return 0;
    *out = (int64_t)w.u;
    return 1;
}
int rlay_as_int64_at(const rlay_value *v, size_t i, int64_t *out) {
    rlay__wint w;
    char cls;
    if (!v || !out) return 0;
    if (v->type != RLAY_T_TENSOR) return i == 0 && rlay_as_int64(v, out);
    cls = rlay__dt[v->v.t->dtype].cls;
    if (!v->v.t->data || i >= v->v.t->count || (cls != 'i' && cls != 'u' && cls != 'b')) return 0;
    w = rlay__elem_w(v->v.t, i);
    if (!w.neg && w.u > (uint64_t)INT64_MAX) return 0;
    *out = (int64_t)w.u;
    return 1;
}
int rlay_as_double(const rlay_value *v, double *out) {
    if (!v) return 0;
    if (v->type == RLAY_T_FLOAT) { *out = v->v.f; return 1; }
    if (v->type == RLAY_T_INT) { *out = v->neg ? (double)v->v.i : (double)v->v.u; return 1; }
    return 0;
}
static const char *rlay__fmt_shape(char *buf, size_t n, int ndim, const uint32_t *shape) {
    size_t k = 0; int i;
    k += (size_t)snprintf(buf, n, "(");
    for (i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %u" : "%u", shape[i]);
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
    return buf;
}
/* A short description of a value for error messages. */
static const char *rlay__describe(const rlay_value *v, char *buf, size_t n) {
    char sh[200];
    if (!v) snprintf(buf, n, "nothing");
    else if (v->type == RLAY_T_INT && v->neg) snprintf(buf, n, "int %lld", (long long)v->v.i);
    else if (v->type == RLAY_T_INT) snprintf(buf, n, "int %llu", (unsigned long long)v->v.u);
    else if (v->type == RLAY_T_STR) snprintf(buf, n, "str \"%.*s\"", (int)(v->len > 40 ? 40 : v->len), v->v.s);
    else if (v->type == RLAY_T_TENSOR)
        snprintf(buf, n, "%s tensor of shape %s", rlay__dt[v->v.t->dtype].name,
                 rlay__fmt_shape(sh, sizeof sh, v->v.t->ndim, v->v.t->shape));
    else snprintf(buf, n, "%s", rlay__tname(v->type));
    return buf;
}

/* ======================================================================================== */
/* Spaces (spec section 9). */
enum { RLAY__SP_BOX, RLAY__SP_DISCRETE, RLAY__SP_MULTI_DISCRETE, RLAY__SP_MULTI_BINARY, RLAY__SP_TEXT,
       RLAY__SP_DICT, RLAY__SP_TUPLE, RLAY__SP_SEQUENCE, RLAY__SP_GRAPH, RLAY__SP_ONE_OF, RLAY__SP_N };
static const char *const rlay__sp_kinds[RLAY__SP_N] = {
    "box", "discrete", "multi_discrete", "multi_binary", "text", "dict", "tuple", "sequence", "graph", "one_of"};
/* Field names in canonical order (kind first). */
static const char *const rlay__sp_fields[RLAY__SP_N][6] = {
    {"kind", "dtype", "shape", "low", "high", NULL}, {"kind", "n", "start", "dtype", NULL},
    {"kind", "nvec", "start", NULL}, {"kind", "n", NULL}, {"kind", "min_length", "max_length", "charset", NULL},
    {"kind", "spaces", NULL}, {"kind", "spaces", NULL}, {"kind", "space", "stack", NULL},
    {"kind", "node_space", "edge_space", NULL}, {"kind", "spaces", NULL}};

/* The kind of a space map and its fields in canonical order; -1 if not a valid shape. */
static int rlay__sp_get(rlay_ctx *c, const rlay_value *sp, const rlay_value **f, const char *where) {
    const rlay_value *k = rlay_map_get(sp, "kind");
    int kind, nf, i; uint32_t j;
    char d[80];
    if (!sp || sp->type != RLAY_T_MAP) { rlay__err(c, RLAY_E_BAD_SPACE, "%s: a space must be a map, got %s", where, rlay__describe(sp, d, sizeof d)); return -1; }
    for (kind = 0; kind < RLAY__SP_N; kind++) if (rlay_str_eq(k, rlay__sp_kinds[kind])) break;
    if (kind == RLAY__SP_N) { rlay__err(c, RLAY_E_BAD_SPACE, "%s: unknown space kind %s", where, rlay__describe(k, d, sizeof d)); return -1; }
    for (nf = 0; rlay__sp_fields[kind][nf]; nf++) f[nf] = NULL;
    for (j = 0; j < sp->len; j++) {
        const rlay_value *key = &sp->v.items[2 * j];
        for (i = 0; i < nf; i++)
            if (rlay_str_eq(key, rlay__sp_fields[kind][i])) { f[i] = &sp->v.items[2 * j + 1]; break; }
        if (i == nf) { rlay__err(c, RLAY_E_BAD_SPACE, "%s: %s space has an unknown field '%.*s'", where, rlay__sp_kinds[kind], (int)(key->len > 60 ? 60 : key->len), key->v.s); return -1; }
    }
    for (i = 0; i < nf; i++)
        if (!f[i]) { rlay__err(c, RLAY_E_BAD_SPACE, "%s: %s space lacks the field '%s'", where, rlay__sp_kinds[kind], rlay__sp_fields[kind][i]); return -1; }
    return kind;
}
static int rlay__is_uint(const rlay_value *v, uint64_t max) { return v && v->type == RLAY_T_INT && !v->neg && v->v.u <= max; }
/* Checks a shape given as an array of ints; fills dims. */
static int rlay__shape_of(const rlay_value *a, int *ndim, uint32_t *dims) {
    uint32_t i;
    if (!a || a->type != RLAY_T_ARRAY || a->len > RLAY_MAX_NDIM) return 0;
    for (i = 0; i < a->len; i++) {
        if (!rlay__is_uint(&a->v.items[i], 0xffffffffu)) return 0;
        dims[i] = (uint32_t)a->v.items[i].v.u;
    }
    *ndim = (int)a->len;
    return 1;
}
static int rlay__same_shape(const rlay_tensor *t, int ndim, const uint32_t *dims) {
    return t->ndim == ndim && memcmp(t->shape, dims, sizeof *dims * (size_t)ndim) == 0;
}
static int rlay__check_space(rlay_ctx *c, const rlay_value *sp, const char *where) {
    const rlay_value *f[6];
    char d[200], e[200];
    int kind = rlay__sp_get(c, sp, f, where), ndim = 0, dt, i;
    uint32_t dims[RLAY_MAX_NDIM], j;
    if (kind < 0) return c->err;
    switch (kind) {
    case RLAY__SP_BOX:
        if (f[1]->type != RLAY_T_STR) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: box dtype must be a str", where);
        if (!(dt = rlay__dtype_from_name(f[1]->v.s, f[1]->len)))
            return rlay__err(c, RLAY_E_UNKNOWN_DTYPE, "%s: box dtype '%.*s' is not a dtype of spec section 4", where, (int)(f[1]->len > 40 ? 40 : f[1]->len), f[1]->v.s);
        if (!rlay__shape_of(f[2], &ndim, dims)) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: box shape must be an array of at most 32 non-negative ints", where);
        for (i = 3; i <= 4; i++)
            if (f[i]->type != RLAY_T_TENSOR || f[i]->v.t->dtype != dt || !rlay__same_shape(f[i]->v.t, ndim, dims))
                return rlay__err(c, RLAY_E_BAD_SPACE, "%s: box '%s' must be a %s tensor of shape %s, got %s", where,
                                 i == 3 ? "low" : "high", rlay__dt[dt].name, rlay__fmt_shape(e, sizeof e, ndim, dims), rlay__describe(f[i], d, sizeof d));
        if (rlay__dt[dt].cls == 'f')   /* section 9: a bound is a number or +-inf, never NaN */
            for (i = 3; i <= 4; i++)
                for (j = 0; j < f[i]->v.t->count; j++) {
                    double x = rlay_tensor_get(f[i]->v.t, j);
                    if (x != x) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: box '%s' has a NaN bound at element %u", where, i == 3 ? "low" : "high", (unsigned)j);
                }
        return 0;
    case RLAY__SP_DISCRETE:
        if (f[1]->type != RLAY_T_INT || f[1]->neg || f[1]->v.u < 1) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete n must be an int >= 1", where);
        if (f[2]->type != RLAY_T_INT) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete start must be an int", where);
        if (f[3]->type != RLAY_T_STR) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete dtype must be a str", where);
        if (!(dt = rlay__dtype_from_name(f[3]->v.s, f[3]->len))) return rlay__err(c, RLAY_E_UNKNOWN_DTYPE, "%s: discrete dtype '%.*s' is unknown", where, (int)(f[3]->len > 40 ? 40 : f[3]->len), f[3]->v.s);
        if (rlay__dt[dt].cls != 'i' && rlay__dt[dt].cls != 'u') return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete dtype must be an integer dtype, got %s", where, rlay__dt[dt].name);
        {
            rlay__wint n, st;
            n.neg = 0; n.u = f[1]->v.u; st.neg = f[2]->neg; st.u = f[2]->v.u;
            rlay__wint last;   /* section 9: the last value, start + n - 1, fits the dtype too */
            uint64_t k = n.u - 1;
            if (!rlay__fits(n, dt) || !rlay__fits(st, dt))
                return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete n and start must fit its dtype %s", where, rlay__dt[dt].name);
            if (!st.neg) {
                if (st.u > UINT64_MAX - k) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete start + n - 1 is above 2^64 - 1", where);
                last.neg = 0; last.u = st.u + k;
            } else {
                uint64_t m = (uint64_t)0 - st.u;   /* |start| */
                if (k < m) { last.neg = 1; last.u = (uint64_t)0 - (m - k); } else { last.neg = 0; last.u = k - m; }
            }
            if (!rlay__fits(last, dt))
                return rlay__err(c, RLAY_E_BAD_SPACE, "%s: discrete start + n - 1 must fit its dtype %s", where, rlay__dt[dt].name);
        }
        return 0;
    case RLAY__SP_MULTI_DISCRETE: {
        const rlay_tensor *nv, *st;
        if (f[1]->type != RLAY_T_TENSOR || f[2]->type != RLAY_T_TENSOR) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: multi_discrete nvec and start must be tensors", where);
        nv = f[1]->v.t; st = f[2]->v.t;
        if (rlay__dt[nv->dtype].cls != 'i' && rlay__dt[nv->dtype].cls != 'u') return rlay__err(c, RLAY_E_BAD_SPACE, "%s: multi_discrete nvec must have an integer dtype, got %s", where, rlay__dt[nv->dtype].name);
        if (st->dtype != nv->dtype || !rlay__same_shape(st, nv->ndim, nv->shape)) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: multi_discrete start must have nvec's dtype and shape", where);
        if (nv->data) {
            size_t k;
            for (k = 0; k < nv->count; k++) {
                rlay__wint w = rlay__elem_w(nv, k);
                if (w.neg || w.u < 1) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: multi_discrete nvec element %lu is < 1", where, (unsigned long)k);
            }
        }
        return 0; }
    case RLAY__SP_MULTI_BINARY:
        if (rlay__is_uint(f[1], 0xffffffffu) && f[1]->v.u >= 1) return 0;
        if (rlay__shape_of(f[1], &ndim, dims)) {
            for (i = 0; i < ndim; i++) if (dims[i] < 1) break;
            if (i == ndim) return 0;
        }
        return rlay__err(c, RLAY_E_BAD_SPACE, "%s: multi_binary n must be an int >= 1 or an array of them", where);
    case RLAY__SP_TEXT: {
        size_t k = 0; long prev = -1, cp;
        if (!rlay__is_uint(f[1], (uint64_t)INT64_MAX) || !rlay__is_uint(f[2], (uint64_t)INT64_MAX)) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: text min_length and max_length must be ints >= 0", where);
        if (f[1]->v.u > f[2]->v.u) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: text min_length %llu > max_length %llu", where, (unsigned long long)f[1]->v.u, (unsigned long long)f[2]->v.u);
        if (f[3]->type != RLAY_T_STR) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: text charset must be a str", where);
        while (k < f[3]->len) {
            cp = rlay__utf8_next((const unsigned char *)f[3]->v.s, f[3]->len, &k);
            if (cp <= prev) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: text charset must list each character once, in ascending code-point order", where);
            prev = cp;
        }
        return 0; }
    case RLAY__SP_DICT:
        if (f[1]->type != RLAY_T_MAP) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: dict spaces must be a map", where);
        for (j = 0; j < f[1]->len; j++) if (rlay__check_space(c, &f[1]->v.items[2 * j + 1], where)) return c->err;
        return 0;
    case RLAY__SP_TUPLE: case RLAY__SP_ONE_OF:
        if (f[1]->type != RLAY_T_ARRAY) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: %s spaces must be an array", where, rlay__sp_kinds[kind]);
        if (kind == RLAY__SP_ONE_OF && f[1]->len < 1) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: one_of needs at least one space", where);
        for (j = 0; j < f[1]->len; j++) if (rlay__check_space(c, &f[1]->v.items[j], where)) return c->err;
        return 0;
    case RLAY__SP_SEQUENCE:
        if (f[2]->type != RLAY_T_BOOL) return rlay__err(c, RLAY_E_BAD_SPACE, "%s: sequence stack must be a bool", where);
        return rlay__check_space(c, f[1], where);
    default: /* graph */
        for (i = 1; i <= 2; i++) {
            const rlay_value *g[6];
            if (i == 2 && f[i]->type == RLAY_T_NIL) continue;
            if (rlay__check_space(c, f[i], where)) return c->err;
            kind = rlay__sp_get(c, f[i], g, where);
            if (kind != RLAY__SP_BOX && kind != RLAY__SP_DISCRETE)
                return rlay__err(c, RLAY_E_BAD_SPACE, "%s: graph %s must be a box or discrete space", where, i == 1 ? "node_space" : "edge_space");
        }
        return 0;
    }
}

/* Checks a value against a space (spec section 9). Returns 0, or -1 for a structural mismatch
   (BAD_VALUE; c->vmsg says why). With `bounds`, a value outside the space sets *oob (the
   first such finding goes to c->vmsg unless a structural one replaces it). */
static RLAY__PRINTF(2, 3) int rlay__vfail(rlay_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt); vsnprintf(c->vmsg, sizeof c->vmsg, fmt, ap); va_end(ap);
    return -1;
}
static RLAY__PRINTF(3, 4) void rlay__voob(rlay_ctx *c, int *oob, const char *fmt, ...) {
    va_list ap;
    if (*oob) return;
    *oob = 1;
    va_start(ap, fmt); vsnprintf(c->vmsg, sizeof c->vmsg, fmt, ap); va_end(ap);
}
static int rlay__tensor_like(rlay_ctx *c, const rlay_value *v, int dt, int ndim, const uint32_t *dims, const char *sk) {
    char d[200], e[200];
    if (v->type != RLAY_T_TENSOR || v->v.t->dtype != dt || !rlay__same_shape(v->v.t, ndim, dims))
        return rlay__vfail(c, "%s: expected a %s tensor of shape %s, actual %s", sk, rlay__dt[dt].name,
                           rlay__fmt_shape(e, sizeof e, ndim, dims), rlay__describe(v, d, sizeof d));
    return 0;
}
static int rlay__vcheck(rlay_ctx *c, const rlay_value *sp, const rlay_value *v, int bounds, int *oob) {
    const rlay_value *f[6];
    char d[200];
    int kind, ndim = 0, i;
    uint32_t dims[RLAY_MAX_NDIM], j;
    size_t k;
    kind = rlay__sp_get(NULL, sp, f, "");   /* the space was validated: cannot fail */
    switch (kind) {
    case RLAY__SP_BOX: {
        int dt = rlay__dtype_from_name(f[1]->v.s, f[1]->len);
        const rlay_tensor *t, *lo = f[3]->v.t, *hi = f[4]->v.t;
        rlay__shape_of(f[2], &ndim, dims);
        if (rlay__tensor_like(c, v, dt, ndim, dims, "Box")) return -1;
        t = v->v.t;
        if (!bounds || !t->data) return 0;
        for (k = 0; k < t->count && !*oob; k++) {
            int in;
            if (rlay__dt[dt].cls == 'f') {
                double x = rlay_tensor_get(t, k);
                in = rlay_tensor_get(lo, k) <= x && x <= rlay_tensor_get(hi, k);
            } else {
                rlay__wint x = rlay__elem_w(t, k);
                in = rlay__wcmp(rlay__elem_w(lo, k), x) <= 0 && rlay__wcmp(x, rlay__elem_w(hi, k)) <= 0;
            }
            if (!in) rlay__voob(c, oob, "Box element %lu is %g, outside [%g, %g]", (unsigned long)k,
                                rlay_tensor_get(t, k), rlay_tensor_get(lo, k), rlay_tensor_get(hi, k));
        }
        return 0; }
    case RLAY__SP_DISCRETE: {
        rlay__wint x, st, n;
        if (!(v->type == RLAY_T_INT || (v->type == RLAY_T_TENSOR && v->v.t->ndim == 0 &&
              (rlay__dt[v->v.t->dtype].cls == 'i' || rlay__dt[v->v.t->dtype].cls == 'u'))))
            return rlay__vfail(c, "Discrete: expected an int, actual %s", rlay__describe(v, d, sizeof d));
        if (!rlay__wint_of(v, &x)) return 0;   /* a 0-d tensor of our own, not yet laid out */
        if (!rlay__fits(x, rlay__dtype_from_name(f[3]->v.s, f[3]->len)))
            return rlay__vfail(c, "Discrete: %s does not fit the space's dtype %.*s", rlay__describe(v, d, sizeof d), (int)f[3]->len, f[3]->v.s);
        if (!bounds) return 0;
        st.neg = f[2]->neg; st.u = f[2]->v.u; n.neg = 0; n.u = f[1]->v.u;
        if (!rlay__in_range(x, st, n)) {
            if (x.neg) snprintf(d, sizeof d, "%lld", (long long)(int64_t)x.u);
            else snprintf(d, sizeof d, "%llu", (unsigned long long)x.u);
            rlay__voob(c, oob, "Discrete(%llu, start=%lld): %s is out of range", (unsigned long long)n.u,
                       (long long)(int64_t)st.u, d);
        }
        return 0; }
    case RLAY__SP_MULTI_DISCRETE: {
        const rlay_tensor *nv = f[1]->v.t, *st = f[2]->v.t, *t;
        if (rlay__tensor_like(c, v, nv->dtype, nv->ndim, nv->shape, "MultiDiscrete")) return -1;
        t = v->v.t;
        if (!bounds || !t->data) return 0;
        for (k = 0; k < t->count && !*oob; k++)
            if (!rlay__in_range(rlay__elem_w(t, k), rlay__elem_w(st, k), rlay__elem_w(nv, k)))
                rlay__voob(c, oob, "MultiDiscrete element %lu is %g, outside [%g, %g)", (unsigned long)k, rlay_tensor_get(t, k),
                           rlay_tensor_get(st, k), rlay_tensor_get(st, k) + rlay_tensor_get(nv, k));
        return 0; }
    case RLAY__SP_MULTI_BINARY:
        if (f[1]->type == RLAY_T_INT) { ndim = 1; dims[0] = (uint32_t)f[1]->v.u; }
        else rlay__shape_of(f[1], &ndim, dims);
        if (rlay__tensor_like(c, v, RLAY_DT_INT8, ndim, dims, "MultiBinary")) return -1;
        if (!bounds || !v->v.t->data) return 0;
        for (k = 0; k < v->v.t->count && !*oob; k++) {
            int8_t b = (int8_t)((const unsigned char *)v->v.t->data)[k];
            if (b != 0 && b != 1) rlay__voob(c, oob, "MultiBinary element %lu is %d, not 0 or 1", (unsigned long)k, b);
        }
        return 0;
    case RLAY__SP_TEXT: {
        uint64_t n = 0;
        if (v->type != RLAY_T_STR) return rlay__vfail(c, "Text: expected a str, actual %s", rlay__describe(v, d, sizeof d));
        if (!bounds) return 0;
        k = 0;
        while (k < v->len) {   /* at most max_length + 1 characters are looked at */
            long cp = rlay__utf8_next((const unsigned char *)v->v.s, v->len, &k);
            size_t m = 0; int found = 0;
            if (n >= f[2]->v.u) { rlay__voob(c, oob, "Text: longer than max_length %llu", (unsigned long long)f[2]->v.u); break; }
            while (m < f[3]->len && !found) found = rlay__utf8_next((const unsigned char *)f[3]->v.s, f[3]->len, &m) == cp;
            if (!found) { rlay__voob(c, oob, "Text: character U+%04lX is not in the charset", (unsigned long)cp); break; }
            n++;
        }
        if (n < f[1]->v.u)
            rlay__voob(c, oob, "Text: length %llu is outside [%llu, %llu]", (unsigned long long)n,
                       (unsigned long long)f[1]->v.u, (unsigned long long)f[2]->v.u);
        return 0; }
    case RLAY__SP_DICT:
        if (v->type != RLAY_T_MAP || v->len != f[1]->len)
            return rlay__vfail(c, "Dict: expected a map with the %u keys of the space, actual %s", f[1]->len, rlay__describe(v, d, sizeof d));
        for (j = 0; j < f[1]->len; j++) {
            const rlay_value *key = &f[1]->v.items[2 * j];
            const rlay_value *x = rlay__map_getn(v, key->v.s, key->len);
            if (!x) return rlay__vfail(c, "Dict: the key '%.*s' is missing", (int)(key->len > 60 ? 60 : key->len), key->v.s);
            if (rlay__vcheck(c, &f[1]->v.items[2 * j + 1], x, bounds, oob)) return -1;
        }
        return 0;
    case RLAY__SP_TUPLE:
        if (v->type != RLAY_T_ARRAY || v->len != f[1]->len)
            return rlay__vfail(c, "Tuple: expected an array of %u values, actual %s", f[1]->len, rlay__describe(v, d, sizeof d));
        for (j = 0; j < v->len; j++) if (rlay__vcheck(c, &f[1]->v.items[j], &v->v.items[j], bounds, oob)) return -1;
        return 0;
    case RLAY__SP_SEQUENCE:
        if (v->type != RLAY_T_ARRAY) return rlay__vfail(c, "Sequence: expected an array, actual %s", rlay__describe(v, d, sizeof d));
        for (j = 0; j < v->len; j++) if (rlay__vcheck(c, f[1], &v->v.items[j], bounds, oob)) return -1;
        return 0;
    case RLAY__SP_ONE_OF: {
        rlay__wint x;
        if (v->type != RLAY_T_ARRAY || v->len != 2 || v->v.items[0].type != RLAY_T_INT)
            return rlay__vfail(c, "OneOf: expected an array [index, value], actual %s", rlay__describe(v, d, sizeof d));
        x.neg = v->v.items[0].neg; x.u = v->v.items[0].v.u;
        if (x.neg || x.u >= f[1]->len) return rlay__vfail(c, "OneOf: index %s is out of range", rlay__describe(&v->v.items[0], d, sizeof d));
        return rlay__vcheck(c, &f[1]->v.items[x.u], &v->v.items[1], bounds, oob); }
    case RLAY__SP_GRAPH: {
        const rlay_value *part[3];
        static const char *const names[3] = {"nodes", "edges", "edge_links"};
        if (v->type != RLAY_T_MAP || v->len != 3) return rlay__vfail(c, "Graph: expected a map of nodes, edges, edge_links, actual %s", rlay__describe(v, d, sizeof d));
        for (i = 0; i < 3; i++)
            if (!(part[i] = rlay_map_get(v, names[i]))) return rlay__vfail(c, "Graph: the key '%s' is missing", names[i]);
        for (i = 0; i < 2; i++) {
            const rlay_value *g[6], *x = part[i];
            int gk, gdt; uint32_t gd[RLAY_MAX_NDIM + 1];
            if (i == 1 && f[2]->type == RLAY_T_NIL) {   /* section 9: no edge space, no edges */
                if (x->type != RLAY_T_NIL || part[2]->type != RLAY_T_NIL)
                    return rlay__vfail(c, "Graph: edges and edge_links must both be nil without an edge space, actual %s", rlay__describe(x->type != RLAY_T_NIL ? x : part[2], d, sizeof d));
                continue;
            }
            if (i == 1 && (x->type == RLAY_T_NIL) != (part[2]->type == RLAY_T_NIL))
                return rlay__vfail(c, "Graph: edges and edge_links must be both nil or both tensors");
            if (i == 1 && x->type == RLAY_T_NIL) continue;   /* a graph without edges */
            gk = rlay__sp_get(NULL, f[1 + i], g, "");
            if (gk == RLAY__SP_BOX) { gdt = rlay__dtype_from_name(g[1]->v.s, g[1]->len); rlay__shape_of(g[2], &ndim, gd + 1); }
            else { gdt = rlay__dtype_from_name(g[3]->v.s, g[3]->len); ndim = 0; }
            if (x->type != RLAY_T_TENSOR || x->v.t->ndim < 1) return rlay__vfail(c, "Graph: %s must be a tensor, actual %s", names[i], rlay__describe(x, d, sizeof d));
            gd[0] = x->v.t->shape[0];
            if (rlay__tensor_like(c, x, gdt, ndim + 1, gd, i ? "Graph edges" : "Graph nodes")) return -1;
        }
        if (part[2]->type != RLAY_T_NIL) {
            uint32_t ld[2];
            ld[0] = part[1]->type == RLAY_T_TENSOR && part[1]->v.t->ndim ? part[1]->v.t->shape[0] : 0;   /* m edges */
            ld[1] = 2;
            /* int64, or int32 as Gymnasium's own Graph.sample() makes them (section 9) */
            if (rlay__tensor_like(c, part[2], part[2]->type == RLAY_T_TENSOR && part[2]->v.t->dtype == RLAY_DT_INT32 ? RLAY_DT_INT32 : RLAY_DT_INT64,
                                  2, ld, "Graph edge_links")) return -1;
        }
        return 0; }
    default:
        return rlay__vfail(c, "unknown space");
    }
}

/* Checks a value of batch_space(sp, n) (spec section 10) as rlay__vcheck checks a value of sp;
   *which gets the sub-env of the first out-of-bounds finding. The batch of a Box, Discrete,
   MultiDiscrete or MultiBinary is one tensor with a leading n (each sub-env's slice is checked
   in place); of a Dict or Tuple, the batches of its parts; of any other space, n values. */
static int rlay__bvcheck(rlay_ctx *c, const rlay_value *sp, const rlay_value *v, uint32_t n, int bounds,
                         int *oob, uint32_t *which) {
    static const char *const names[] = {"Box", "Discrete", "MultiDiscrete", "MultiBinary"};
    const rlay_value *f[6];
    char d[200];
    int kind = rlay__sp_get(NULL, sp, f, ""), dt, ndim = 0, before;
    uint32_t dims[RLAY_MAX_NDIM + 1], i, j;
    switch (kind) {
    case RLAY__SP_BOX:
        dt = rlay__dtype_from_name(f[1]->v.s, f[1]->len);
        rlay__shape_of(f[2], &ndim, dims + 1);
        break;
    case RLAY__SP_DISCRETE:
        dt = rlay__dtype_from_name(f[3]->v.s, f[3]->len);
        break;
    case RLAY__SP_MULTI_DISCRETE:
        dt = f[1]->v.t->dtype; ndim = f[1]->v.t->ndim;
        memcpy(dims + 1, f[1]->v.t->shape, sizeof *dims * (size_t)ndim);
        break;
    case RLAY__SP_MULTI_BINARY:
        dt = RLAY_DT_INT8;
        if (f[1]->type == RLAY_T_INT) { ndim = 1; dims[1] = (uint32_t)f[1]->v.u; }
        else rlay__shape_of(f[1], &ndim, dims + 1);
        break;
    case RLAY__SP_DICT:
        if (v->type != RLAY_T_MAP || v->len != f[1]->len)
            return rlay__vfail(c, "Dict: expected a map with the %u keys of the space, actual %s", f[1]->len, rlay__describe(v, d, sizeof d));
        for (j = 0; j < f[1]->len; j++) {
            const rlay_value *key = &f[1]->v.items[2 * j];
            const rlay_value *x = rlay__map_getn(v, key->v.s, key->len);
            if (!x) return rlay__vfail(c, "Dict: the key '%.*s' is missing", (int)(key->len > 60 ? 60 : key->len), key->v.s);
            if (rlay__bvcheck(c, &f[1]->v.items[2 * j + 1], x, n, bounds, oob, which)) return -1;
        }
        return 0;
    case RLAY__SP_TUPLE:
        if (v->type != RLAY_T_ARRAY || v->len != f[1]->len)
            return rlay__vfail(c, "Tuple: expected an array of %u batches, actual %s", f[1]->len, rlay__describe(v, d, sizeof d));
        for (j = 0; j < v->len; j++) if (rlay__bvcheck(c, &f[1]->v.items[j], &v->v.items[j], n, bounds, oob, which)) return -1;
        return 0;
    default:   /* text, sequence, graph, one_of: Gymnasium batches them as a Tuple of n */
        if (v->type != RLAY_T_ARRAY || v->len != n)
            return rlay__vfail(c, "%s batch: expected an array of %u values (one per sub-env), actual %s", rlay__sp_kinds[kind], n, rlay__describe(v, d, sizeof d));
        for (i = 0; i < n; i++) {
            before = *oob;
            if (rlay__vcheck(c, sp, &v->v.items[i], bounds, oob)) return -1;
            if (!before && *oob) *which = i;
        }
        return 0;
    }
    if (ndim + 1 > RLAY_MAX_NDIM) return rlay__vfail(c, "%s of %d dimensions: its batch would have more than 32", names[kind], ndim);
    dims[0] = n;
    if (rlay__tensor_like(c, v, dt, ndim + 1, dims, names[kind])) return -1;
    if (bounds && v->v.t->data && !*oob) {
        rlay_tensor t = *v->v.t;   /* a view of sub-env i's slice, checked against the single space */
        rlay_value tv;
        t.ndim = ndim;
        memmove(t.shape, t.shape + 1, sizeof *t.shape * (size_t)ndim);
        t.count = n ? v->v.t->count / n : 0;
        t.nbytes = t.count * rlay__dt[dt].size;
        memset(&tv, 0, sizeof tv);
        tv.type = RLAY_T_TENSOR; tv.v.t = &t;
        for (i = 0; i < n && !*oob; i++) {
            t.data = (const unsigned char *)v->v.t->data + (size_t)i * t.nbytes;
            if (rlay__vcheck(c, sp, &tv, 1, oob)) return -1;
            if (*oob) *which = i;
        }
    }
    return 0;
}

/* ======================================================================================== */
/* Messages (spec section 6): one table of fields per kind, in canonical order. */
enum { RLAY__F_NIL = 1, RLAY__F_BOOL = 2, RLAY__F_INT = 4, RLAY__F_FLOAT = 8, RLAY__F_STR = 16,
       RLAY__F_BYTES = 32, RLAY__F_ARRAY = 64, RLAY__F_MAP = 128, RLAY__F_TENSOR = 256,
       RLAY__F_ANY = 511, RLAY__F_SPACE = 1024 };
typedef struct { const char *name; int types; } rlay__field;
static const rlay__field rlay__f_hello[] = {{"protocol", RLAY__F_STR}, {"version", RLAY__F_INT}, {"role", RLAY__F_STR},
    {"sdk", RLAY__F_STR}, {"sdk_version", RLAY__F_STR}, {"capabilities", RLAY__F_MAP}, {NULL, 0}};
static const rlay__field rlay__f_auth[] = {{"proof", RLAY__F_BYTES}, {NULL, 0}};
/* SHM (section 16.1) has a fixed sender in each role: the agent offers, the env answers */
static const rlay__field rlay__f_shm_offer[] = {{"size", RLAY__F_INT}, {NULL, 0}};
static const rlay__field rlay__f_shm_answer[] = {{"accepted", RLAY__F_BOOL}, {"reason", RLAY__F_STR | RLAY__F_NIL}, {NULL, 0}};
static const rlay__field rlay__f_env_info[] = {{"observation_space", RLAY__F_SPACE}, {"action_space", RLAY__F_SPACE},
    {"num_envs", RLAY__F_INT}, {"metadata", RLAY__F_MAP}, {"render_mode", RLAY__F_STR | RLAY__F_NIL},
    {"name", RLAY__F_STR | RLAY__F_NIL}, {NULL, 0}};
/* seed may be an array and reward/terminated/truncated tensors only when num_envs > 1 (section 10) */
static const rlay__field rlay__f_reset[] = {{"seed", RLAY__F_INT | RLAY__F_NIL | RLAY__F_ARRAY},
    {"options", RLAY__F_MAP | RLAY__F_NIL}, {NULL, 0}};
static const rlay__field rlay__f_step[] = {{"action", RLAY__F_ANY}, {NULL, 0}};
static const rlay__field rlay__f_empty[] = {{NULL, 0}};
static const rlay__field rlay__f_call[] = {{"name", RLAY__F_STR}, {"args", RLAY__F_ARRAY}, {"kwargs", RLAY__F_MAP}, {NULL, 0}};
static const rlay__field rlay__f_reset_result[] = {{"obs", RLAY__F_ANY}, {"info", RLAY__F_MAP}, {NULL, 0}};
static const rlay__field rlay__f_step_result[] = {{"obs", RLAY__F_ANY}, {"reward", RLAY__F_FLOAT | RLAY__F_TENSOR},
    {"terminated", RLAY__F_BOOL | RLAY__F_TENSOR}, {"truncated", RLAY__F_BOOL | RLAY__F_TENSOR}, {"info", RLAY__F_MAP}, {NULL, 0}};
static const rlay__field rlay__f_render_result[] = {{"frame", RLAY__F_ANY}, {NULL, 0}};
static const rlay__field rlay__f_call_result[] = {{"value", RLAY__F_ANY}, {NULL, 0}};
static const rlay__field rlay__f_multi_step[] = {{"actions", RLAY__F_MAP}, {NULL, 0}};
static const rlay__field rlay__f_multi_result[] = {{"agents", RLAY__F_ARRAY}, {"obs", RLAY__F_MAP}, {"rewards", RLAY__F_MAP},
    {"terminations", RLAY__F_MAP}, {"truncations", RLAY__F_MAP}, {"infos", RLAY__F_MAP}, {NULL, 0}};
static const rlay__field rlay__f_error[] = {{"code", RLAY__F_INT}, {"message", RLAY__F_STR}, {"fatal", RLAY__F_BOOL},
    {"remote_type", RLAY__F_STR | RLAY__F_NIL}, {"traceback", RLAY__F_STR | RLAY__F_NIL}, {NULL, 0}};

static const rlay__field *rlay__schema(int kind) {
    switch (kind) {
    case RLAY_HELLO: return rlay__f_hello;
    case RLAY_AUTH: return rlay__f_auth;
    case RLAY_SHM: return rlay__f_shm_offer;   /* received by the env side; rlay__check_fields: the agent's role */
    case RLAY_ENV_INFO: return rlay__f_env_info;
    case RLAY_RESET: return rlay__f_reset;
    case RLAY_STEP: return rlay__f_step;
    case RLAY_RENDER: case RLAY_CLOSE: case RLAY_CLOSE_RESULT: return rlay__f_empty;
    case RLAY_CALL: return rlay__f_call;
    case RLAY_RESET_RESULT: return rlay__f_reset_result;
    case RLAY_STEP_RESULT: return rlay__f_step_result;
    case RLAY_RENDER_RESULT: return rlay__f_render_result;
    case RLAY_CALL_RESULT: return rlay__f_call_result;
    case RLAY_ERROR: return rlay__f_error;
    case RLAY_MULTI_STEP: return rlay__f_multi_step;
    case RLAY_MULTI_RESULT: return rlay__f_multi_result;
    default: return NULL;
    }
}
static const char *rlay__kind_name(int kind) {
    switch (kind) {
    case RLAY_HELLO: return "HELLO"; case RLAY_ENV_INFO: return "ENV_INFO"; case RLAY_AUTH: return "AUTH";
    case RLAY_SHM: return "SHM";
    case RLAY_RESET: return "RESET"; case RLAY_STEP: return "STEP"; case RLAY_RENDER: return "RENDER";
    case RLAY_CLOSE: return "CLOSE"; case RLAY_CALL: return "CALL";
    case RLAY_RESET_RESULT: return "RESET_RESULT"; case RLAY_STEP_RESULT: return "STEP_RESULT";
    case RLAY_RENDER_RESULT: return "RENDER_RESULT"; case RLAY_CLOSE_RESULT: return "CLOSE_RESULT";
    case RLAY_CALL_RESULT: return "CALL_RESULT"; case RLAY_ERROR: return "ERROR";
    case RLAY_MULTI_STEP: return "MULTI_STEP"; case RLAY_MULTI_RESULT: return "MULTI_RESULT";
    default: return NULL;
    }
}
static const char *rlay__types_text(int m) {
    switch (m) {
    case RLAY__F_STR: return "a str"; case RLAY__F_INT: return "an int"; case RLAY__F_MAP: return "a map";
    case RLAY__F_ARRAY: return "an array"; case RLAY__F_BOOL: return "a bool";
    case RLAY__F_STR | RLAY__F_NIL: return "a str or nil"; case RLAY__F_MAP | RLAY__F_NIL: return "a map or nil";
    case RLAY__F_INT | RLAY__F_NIL | RLAY__F_ARRAY: return "an int, nil or an array";
    case RLAY__F_FLOAT | RLAY__F_TENSOR: return "a float"; case RLAY__F_BOOL | RLAY__F_TENSOR: return "a bool";
    default: return "a value of another type";
    }
}
/* Checks a body against its kind's fields; out[i] gets field i (canonical order). */
static int rlay__check_fields(rlay_ctx *c, int kind, const rlay_value *b, const rlay_value **out) {
    const rlay__field *fs = kind == RLAY_SHM && c->role == RLAY__AGENT ? rlay__f_shm_answer : rlay__schema(kind);
    const char *kn = rlay__kind_name(kind);
    char d[200];
    int nf, i; uint32_t j;
    for (nf = 0; fs[nf].name; nf++) out[nf] = NULL;
    if (b->type != RLAY_T_MAP) return rlay__err(c, RLAY_E_BAD_FIELD, "the %s body must be a map, got %s", kn, rlay__describe(b, d, sizeof d));
    for (j = 0; j < b->len; j++) {
        const rlay_value *key = &b->v.items[2 * j];
        for (i = 0; i < nf; i++) if (rlay_str_eq(key, fs[i].name)) { out[i] = &b->v.items[2 * j + 1]; break; }
        if (i == nf) return rlay__err(c, RLAY_E_BAD_FIELD, "%s has an unknown field '%.*s'", kn, (int)(key->len > 60 ? 60 : key->len), key->v.s);
    }
    for (i = 0; i < nf; i++) {
        const rlay_value *v = out[i];
        int m = fs[i].types;
        if (!v) return rlay__err(c, RLAY_E_BAD_FIELD, "%s lacks the field '%s'", kn, fs[i].name);
        if (m == RLAY__F_SPACE) {   /* not a map: a field of the wrong type; a bad map: BAD_SPACE */
            if (v->type != RLAY_T_MAP) return rlay__err(c, RLAY_E_BAD_FIELD, "%s.%s must be a space (a map), got %s", kn, fs[i].name, rlay__describe(v, d, sizeof d));
            if (rlay__check_space(c, v, fs[i].name)) return c->err;
            continue;
        }
        if (m & RLAY__F_FLOAT) m |= RLAY__F_INT;   /* an int is accepted where a float is due */
        if (!(m & (1 << (v->type - 1))))
            return rlay__err(c, RLAY_E_BAD_FIELD, "%s.%s must be %s, got %s", kn, fs[i].name, rlay__types_text(fs[i].types), rlay__describe(v, d, sizeof d));
    }
    if (kind == RLAY_ENV_INFO && (out[2]->neg || out[2]->v.u < 1 || out[2]->v.u > 0x7fffffff))
        return rlay__err(c, RLAY_E_BAD_FIELD, "ENV_INFO.num_envs must be >= 1, got %s", rlay__describe(out[2], d, sizeof d));
    if (kind == RLAY_ENV_INFO && rlay_map_get(out[3], "autoreset_mode")) {   /* section 10 */
        const rlay_value *m = rlay_map_get(out[3], "autoreset_mode");
        if (!rlay_str_eq(m, "next_step") && !rlay_str_eq(m, "same_step") && !rlay_str_eq(m, "disabled"))
            return rlay__err(c, RLAY_E_BAD_FIELD, "ENV_INFO.metadata.autoreset_mode must be \"next_step\", \"same_step\" or \"disabled\", got %s",
                             rlay__describe(m, d, sizeof d));
    }
    if (kind == RLAY_ERROR && (out[0]->neg || out[0]->v.u < 1 || out[0]->v.u > 0x7fffffff))
        return rlay__err(c, RLAY_E_BAD_FIELD, "ERROR.code must be a positive error code, got %s", rlay__describe(out[0], d, sizeof d));
    if (kind == RLAY_STEP_RESULT)   /* batched (section 10): float64 (N,) reward, bool (N,) flags */
        for (i = 1; i <= 3; i++)
            if (out[i]->type == RLAY_T_TENSOR && (out[i]->v.t->ndim != 1 || out[i]->v.t->dtype != (i == 1 ? RLAY_DT_FLOAT64 : RLAY_DT_BOOL)))
                return rlay__err(c, RLAY_E_BAD_FIELD, "STEP_RESULT.%s must be %s or a %s tensor of shape (N,), got %s", fs[i].name,
                                 i == 1 ? "a float" : "a bool", i == 1 ? "float64" : "bool", rlay__describe(out[i], d, sizeof d));
    if (kind == RLAY_RESET && out[0]->type == RLAY_T_ARRAY)
        for (j = 0; j < out[0]->len; j++)
            if (out[0]->v.items[j].type != RLAY_T_INT && out[0]->v.items[j].type != RLAY_T_NIL)
                return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed array items must be ints or nil");
    return 0;
}

/* Section 10: the fields of a received message against num_envs (n): RESET's seed and reset_mask,
   STEP_RESULT's reward and flags (plain with one env, (n,) tensors with n), CALL_RESULT's value
   and RENDER_RESULT's frame (arrays of n). Every fault is BAD_FIELD. */
static int rlay__check_batch(rlay_ctx *c, int kind, const rlay_value **f) {
    uint32_t n = c->nenv, j;
    char d[200];
    int i;
    if (kind == RLAY_RESET) {
        const rlay_value *seed = f[0], *m;
        if (seed->type == RLAY_T_INT) {
            if (seed->neg) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed must be >= 0, got %lld", (long long)seed->v.i);
            if (seed->v.u > UINT64_MAX - (n - 1))
                return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed %llu: the seed of sub-env %u (seed + %u) would exceed 2^64 - 1",
                                 (unsigned long long)seed->v.u, n - 1, n - 1);
        } else if (seed->type == RLAY_T_ARRAY) {
            if (n == 1) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed is an array, but num_envs is 1");
            if (seed->len != n) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed is an array of %u seeds; expected one per sub-env (%u)", seed->len, n);
            for (j = 0; j < n; j++)
                if (seed->v.items[j].type == RLAY_T_INT && seed->v.items[j].neg)
                    return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed[%u] must be >= 0, got %lld", j, (long long)seed->v.items[j].v.i);
        }
        m = n > 1 ? rlay_map_get(f[1], "reset_mask") : NULL;
        if (m && (m->type != RLAY_T_TENSOR || m->v.t->dtype != RLAY_DT_BOOL || m->v.t->ndim != 1 || m->v.t->shape[0] != n))
            return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.options.reset_mask must be a bool tensor of shape (%u,), got %s", n,
                             rlay__describe(m, d, sizeof d));
    } else if (kind == RLAY_STEP_RESULT) {
        for (i = 1; i <= 3; i++) {
            const rlay_value *v = f[i];
            int dt = i == 1 ? RLAY_DT_FLOAT64 : RLAY_DT_BOOL;
            if (n == 1 && v->type == RLAY_T_TENSOR)
                return rlay__err(c, RLAY_E_BAD_FIELD, "STEP_RESULT.%s must be a %s (num_envs is 1), got %s",
                                 i == 1 ? "reward" : i == 2 ? "terminated" : "truncated", i == 1 ? "float" : "bool", rlay__describe(v, d, sizeof d));
            if (n > 1 && (v->type != RLAY_T_TENSOR || v->v.t->dtype != dt || v->v.t->ndim != 1 || v->v.t->shape[0] != n))
                return rlay__err(c, RLAY_E_BAD_FIELD, "STEP_RESULT.%s must be a %s tensor of shape (%u,) (num_envs is %u), got %s",
                                 i == 1 ? "reward" : i == 2 ? "terminated" : "truncated", i == 1 ? "float64" : "bool", n, n,
                                 rlay__describe(v, d, sizeof d));
        }
    } else if (n > 1 && (kind == RLAY_CALL_RESULT || (kind == RLAY_RENDER_RESULT && f[0]->type != RLAY_T_NIL))) {
        if (f[0]->type != RLAY_T_ARRAY || f[0]->len != n)
            return rlay__err(c, RLAY_E_BAD_FIELD, "%s must be %san array of %u values (num_envs is %u), got %s",
                             kind == RLAY_CALL_RESULT ? "CALL_RESULT.value" : "RENDER_RESULT.frame",
                             kind == RLAY_CALL_RESULT ? "" : "nil or ", n, n, rlay__describe(f[0], d, sizeof d));
    }
    return 0;
}

/* The state table of spec section 8, for a message received from `sender`; -1: not allowed. */
static int rlay__next_state(int state, int kind, int sender, int fatal) {
    if (state == RLAY__S_CLOSED) return -1;
    if (kind == RLAY_ERROR) {
        if (fatal) return RLAY__S_CLOSED;
        if (sender != RLAY__ENV) return -1;
        if (state == RLAY__S_RESET || state == RLAY__S_STEP || state == RLAY__S_RENDER || state == RLAY__S_CALL) return RLAY__S_IDLE;
        return state == RLAY__S_CLOSE ? RLAY__S_CLOSED : -1;
    }
    switch (state) {
    case RLAY__S_HELLO: return kind == RLAY_HELLO ? RLAY__S_DESCRIBE : -1;   /* or auth: rlay__auth_start */
    case RLAY__S_AUTH: return kind == RLAY_AUTH ? RLAY__S_DESCRIBE : -1;
    /* section 16.1: the offer and its answer, between ENV_INFO and the first command */
    case RLAY__S_SHM: return kind == RLAY_SHM && sender == RLAY__AGENT ? RLAY__S_SHM_ANSWER : -1;
    case RLAY__S_SHM_ANSWER: return kind == RLAY_SHM && sender == RLAY__ENV ? RLAY__S_IDLE : -1;
    case RLAY__S_DESCRIBE: return kind == RLAY_ENV_INFO && sender == RLAY__ENV ? RLAY__S_IDLE : -1;
    case RLAY__S_IDLE:
        if (sender != RLAY__AGENT) return -1;
        switch (kind) {
        case RLAY_RESET: return RLAY__S_RESET; case RLAY_STEP: return RLAY__S_STEP;
        case RLAY_RENDER: return RLAY__S_RENDER; case RLAY_CALL: return RLAY__S_CALL;
        case RLAY_CLOSE: return RLAY__S_CLOSE; case RLAY_MULTI_STEP: return RLAY__S_STEP; default: return -1;
        }
    case RLAY__S_RESET: return (kind == RLAY_RESET_RESULT || kind == RLAY_MULTI_RESULT) && sender == RLAY__ENV ? RLAY__S_IDLE : -1;
    case RLAY__S_STEP: return (kind == RLAY_STEP_RESULT || kind == RLAY_MULTI_RESULT) && sender == RLAY__ENV ? RLAY__S_IDLE : -1;
    case RLAY__S_RENDER: return kind == RLAY_RENDER_RESULT && sender == RLAY__ENV ? RLAY__S_IDLE : -1;
    case RLAY__S_CALL: return kind == RLAY_CALL_RESULT && sender == RLAY__ENV ? RLAY__S_IDLE : -1;
    case RLAY__S_CLOSE: return kind == RLAY_CLOSE_RESULT && sender == RLAY__ENV ? RLAY__S_CLOSED : -1;
    default: return -1;
    }
}
static int rlay__unexpected(rlay_ctx *c, int kind) {
    return rlay__err(c, RLAY_E_UNEXPECTED_MESSAGE, "unexpected %s from the %s side in state %s", rlay__kind_name(kind),
                     c->role == RLAY__ENV ? "agent" : "env", rlay__state_names[c->state]);
}
/* HELLO checks in the order of spec section 7: protocol, version, role, then the fields.
   Decoded stand-alone (no handshake going on) a HELLO is checked like any message. */
static int rlay__check_fields(rlay_ctx *c, int kind, const rlay_value *b, const rlay_value **out);
static int rlay__check_hello(rlay_ctx *c, const rlay_value *b, int standalone, const rlay_value **f) {
    const rlay_value *r;
    const char *want = c->role == RLAY__ENV ? "agent" : "env";
    char d[200];
    if (standalone || b->type != RLAY_T_MAP) return rlay__check_fields(c, RLAY_HELLO, b, f);
    if (!rlay_str_eq(rlay_map_get(b, "protocol"), "rlay"))
        return rlay__err(c, RLAY_E_BAD_MAGIC, "the peer is not speaking rlay: HELLO.protocol is %s, expected \"rlay\"",
                         rlay__describe(rlay_map_get(b, "protocol"), d, sizeof d));
    r = rlay_map_get(b, "version");
    if (!r || r->type != RLAY_T_INT || r->neg || r->v.u != RLAY_PROTOCOL_VERSION)
        return rlay__err(c, RLAY_E_VERSION_MISMATCH, "protocol version mismatch: this side speaks %d, peer speaks %s",
                         RLAY_PROTOCOL_VERSION, r && r->type == RLAY_T_INT ? rlay__describe(r, d, sizeof d) + 4 : rlay__describe(r, d, sizeof d));
    if (!rlay_str_eq(rlay_map_get(b, "role"), want))
        return rlay__err(c, RLAY_E_ROLE_CONFLICT, "role conflict: this side is the %s side, and the peer's HELLO.role is %s (expected \"%s\")",
                         c->role == RLAY__ENV ? "env" : "agent", rlay__describe(rlay_map_get(b, "role"), d, sizeof d), want);
    return rlay__check_fields(c, RLAY_HELLO, b, f);
}
static int rlay__known_kind(int k) { return rlay__kind_name(k) != NULL; }

/* ---- section 7.1: SHA-256 (FIPS 180-4), HMAC (RFC 2104), the auth handshake ---- */
typedef struct { uint32_t h[8]; unsigned char buf[64]; uint64_t n; } rlay__sha;
static const uint32_t rlay__sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define RLAY__ROR(x, r) (((x) >> (r)) | ((x) << (32 - (r))))
static void rlay__sha_block(rlay__sha *s, const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
    int i;
    for (i = 0; i < 16; i++) w[i] = (uint32_t)p[4*i] << 24 | (uint32_t)p[4*i+1] << 16 | (uint32_t)p[4*i+2] << 8 | p[4*i+3];
    for (i = 16; i < 64; i++)
        w[i] = (RLAY__ROR(w[i-2], 17) ^ RLAY__ROR(w[i-2], 19) ^ (w[i-2] >> 10)) + w[i-7] +
               (RLAY__ROR(w[i-15], 7) ^ RLAY__ROR(w[i-15], 18) ^ (w[i-15] >> 3)) + w[i-16];
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (i = 0; i < 64; i++) {
        t1 = h + (RLAY__ROR(e, 6) ^ RLAY__ROR(e, 11) ^ RLAY__ROR(e, 25)) + ((e & f) ^ (~e & g)) + rlay__sha_k[i] + w[i];
        t2 = (RLAY__ROR(a, 2) ^ RLAY__ROR(a, 13) ^ RLAY__ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}
static void rlay__sha_init(rlay__sha *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv); s->n = 0;
}
static void rlay__sha_update(rlay__sha *s, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    while (len--) {
        s->buf[s->n++ % 64] = *p++;
        if (s->n % 64 == 0) rlay__sha_block(s, s->buf);
    }
}
static void rlay__sha_final(rlay__sha *s, unsigned char out[32]) {
    uint64_t bits = s->n * 8;
    unsigned char pad = 0x80, len[8];
    int i;
    rlay__sha_update(s, &pad, 1);
    pad = 0;
    while (s->n % 64 != 56) rlay__sha_update(s, &pad, 1);
    for (i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    rlay__sha_update(s, len, 8);
    for (i = 0; i < 32; i++) out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}
void rlay_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char out[32]) {
    unsigned char k[64], pad[64], inner[32];
    rlay__sha s;
    int i;
    memset(k, 0, sizeof k);
    if (klen > 64) { rlay__sha_init(&s); rlay__sha_update(&s, key, klen); rlay__sha_final(&s, k); }
    else if (klen) memcpy(k, key, klen);
    for (i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    rlay__sha_init(&s); rlay__sha_update(&s, pad, 64); rlay__sha_update(&s, msg, mlen); rlay__sha_final(&s, inner);
    for (i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    rlay__sha_init(&s); rlay__sha_update(&s, pad, 64); rlay__sha_update(&s, inner, 32); rlay__sha_final(&s, out);
}
/* section 7.1: HMAC-SHA256(token, "rlay-auth-v1" 0 role 0 agent_nonce env_nonce) */
static void rlay__auth_proof(const rlay_ctx *c, const char *prover, const unsigned char *env_nonce, unsigned char out[32]) {
    unsigned char t[13 + 6 + 64];
    size_t n = 0, rl = strlen(prover);
    memcpy(t, "rlay-auth-v1", 13); n = 13;   /* with its NUL: the 0x00 separator */
    memcpy(t + n, prover, rl); n += rl; t[n++] = 0;
    memcpy(t + n, c->peer_nonce, 32); n += 32;   /* this SDK is the env side: the peer is the agent */
    memcpy(t + n, env_nonce, 32); n += 32;
    rlay_hmac_sha256(c->token, c->token_len, t, n, out);
}
static int rlay__random(rlay_ctx *c, unsigned char *out, size_t n) {
#ifdef _WIN32
    (void)out; (void)n;
    return rlay__err(c, RLAY_E_USAGE, "authentication (rlay_set_token) needs a random source this SDK does not have on Windows yet");
#else
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(out, 1, n, f) : 0;
    if (f) fclose(f);
    if (got != n) return rlay__err(c, RLAY_E_IO, "cannot read /dev/urandom for the auth nonce");
    return 0;
#endif
}
int rlay_set_token(rlay_ctx *c, const void *secret, size_t len) {
    if (!c || c->err) return c ? c->err : RLAY_E_NOMEM;
    if (c->phase != RLAY__P_NONE) return rlay__err(c, RLAY_E_USAGE, "rlay_set_token: call it before rlay_listen/rlay_connect");
    if (len > sizeof c->token) return rlay__err(c, RLAY_E_USAGE, "rlay_set_token: a token of %lu bytes; at most %lu",
                                                (unsigned long)len, (unsigned long)sizeof c->token);
    if (len) memcpy(c->token, secret, len);
    c->token_len = len;
    return 0;
}
/* The agent's HELLO passed section 7's checks: decide (section 7.1). 0 and state auth, with our
   AUTH frame in c->auth_frame, when both announced auth; 0 and state describe when neither did. */
static int rlay__auth_start(rlay_ctx *c, const rlay_value *caps) {
    const rlay_value *nonce = rlay_map_get(caps, "auth");
    unsigned char *f = c->auth_frame;
    if (!c->token_len) {
        if (!nonce) return 0;
        return rlay__err(c, RLAY_E_AUTH_FAILED, "the peer requires authentication but this side has no token "
                         "(set RLAY_TOKEN, or call rlay_set_token)");
    }
    if (!nonce) return rlay__err(c, RLAY_E_AUTH_FAILED, "this side requires authentication (it has a token) but the peer "
                                 "offered none (no token set there, or an SDK without authentication)");
    if (nonce->type != RLAY_T_BYTES || nonce->len != 32)
        return rlay__err(c, RLAY_E_BAD_FIELD, "HELLO.capabilities.auth must be a bin of 32 bytes");
    memcpy(c->peer_nonce, nonce->v.s, 32);
    /* header (kind 4, data 0, body 41), then {"proof": bin 32} */
    memcpy(f, "RL\x04\x00\x00\x00\x00\x00\x29\x00\x00\x00\x81\xa5proof\xc4\x20", 21);
    rlay__auth_proof(c, "env", c->hello + c->hello_len - 32, f + 21);
    c->state = RLAY__S_AUTH;
    return 0;
}
static int rlay__auth_check(rlay_ctx *c, const rlay_value *proof) {
    unsigned char want[32], diff = 0;
    int i;
    rlay__auth_proof(c, "agent", c->hello + c->hello_len - 32, want);
    if (proof->len != 32) diff = 1;
    else for (i = 0; i < 32; i++) diff |= (unsigned char)(want[i] ^ (unsigned char)proof->v.s[i]);
    if (diff) return rlay__err(c, RLAY_E_AUTH_FAILED, "the peer's proof of the token is wrong: the two sides have different tokens");
    return 0;
}

/* Decodes the complete frame at rbuf and checks it; unless `standalone`, applies the state
   table for c->role. fields[] gets the body's fields in canonical order. A fatal ERROR from the
   peer moves to state closed; the caller decides what it means (c->rkind, fields). */
static int rlay__rx_message(rlay_ctx *c, int standalone, const rlay_value **fields) {
    const rlay_value *root;
    int kind = c->rkind, next = 0, sender = c->role == RLAY__ENV ? RLAY__AGENT : RLAY__ENV;
    if (rlay__decode(c, &c->rdoc, c->rbuf + 12 + c->rdlen, c->rblen, c->rbuf + 12, c->rdlen, 0, &root)) return c->err;
    c->rroot = root;
    if (kind == RLAY_HELLO) {
        if (!standalone && c->state != RLAY__S_HELLO) return rlay__unexpected(c, kind);
        if (rlay__check_hello(c, root, standalone, fields)) return c->err;
        if (!standalone) {
            c->state = RLAY__S_DESCRIBE;
            if (c->ma) {   /* section 18.1: a multi-agent env side serves no v1 session */
                const rlay_value *m = rlay_map_get(fields[5], "multi_agent");
                if (!m) return rlay__err(c, RLAY_E_NOT_SUPPORTED, "this env side is multi-agent (spec section 18), but the agent "
                                         "side did not announce the multi_agent capability; connect with rlay.pettingzoo.ClientParallelEnv "
                                         "/ ServerParallelEnv");
                if (m->type != RLAY_T_BOOL || !m->v.b) return rlay__err(c, RLAY_E_BAD_FIELD, "HELLO.capabilities.multi_agent must be true");
                c->ma_on = 1;
            }
            return rlay__auth_start(c, fields[5]);
        }
        return 0;
    }
    if (kind == RLAY_ERROR) {
        if (rlay__check_fields(c, kind, root, fields)) return c->err;
        if (standalone) return 0;
        /* section 11: a code 1-15 (and 16, AUTH_FAILED, section 7.1) is fatal whatever the flag says */
        next = rlay__next_state(c->state, kind, sender, fields[2]->v.b || fields[0]->v.u <= RLAY_E_AUTH_FAILED);
        if (next < 0) return rlay__unexpected(c, kind);
        c->state = next;
        return 0;
    }
    if (!standalone && (next = rlay__next_state(c->state, kind, sender, 0)) < 0) return rlay__unexpected(c, kind);
    /* section 18: MULTI_STEP/MULTI_RESULT only in a multi-agent session, STEP and its results never there */
    if (!standalone && (c->ma_on ? kind == RLAY_STEP || kind == RLAY_RESET_RESULT || kind == RLAY_STEP_RESULT
                                 : kind == RLAY_MULTI_STEP || kind == RLAY_MULTI_RESULT))
        return rlay__unexpected(c, kind);
    if (rlay__check_fields(c, kind, root, fields)) return c->err;
    if (!standalone && rlay__check_batch(c, kind, fields)) return c->err;
    if (!standalone && kind == RLAY_AUTH && rlay__auth_check(c, fields[0])) return c->err;
    if (!standalone) c->state = next;
    return 0;
}

/* ======================================================================================== */
/* Framing (spec section 2). The receive buffer holds bytes from the stream; a frame is
   parsed at its start. Header checks happen before anything is allocated for the frame. */

static int rlay__rx_reserve(rlay_ctx *c, size_t need) {
    size_t nc = c->rcap ? c->rcap : 4096;
    unsigned char *na;
    if (need <= c->rcap) return 0;
    while (nc < need) nc = nc > ((size_t)-1) / 4 ? need : nc * 2;
    na = (unsigned char *)realloc(c->ralloc, nc + 4);
    if (!na) return rlay__err(c, RLAY_E_NOMEM, "out of memory for a %lu-byte frame", (unsigned long)need);
    c->ralloc = na; c->rbuf = na + 4; c->rcap = nc;
    return 0;
}
/* 1: a complete frame is at rbuf (kind/lengths set); 0: more bytes needed; -1: error. */
static int rlay__rx_frame(rlay_ctx *c) {
    const unsigned char *h = c->rbuf;
    uint64_t total;
    if (c->err) return -1;
    if (c->rhave >= 2 && (h[0] != 0x52 || h[1] != 0x4c)) {   /* at once, on the first two bytes */
        char shown[64]; size_t i, k = 0, n = c->rhave < 8 ? c->rhave : 8;
        for (i = 0; i < n; i++) k += (size_t)snprintf(shown + k, sizeof shown - k, "%s%02x", i ? " " : "", h[i]);
        rlay__err(c, RLAY_E_BAD_MAGIC, "the peer is not speaking rlay: its first bytes are %s, not 52 4c (\"RL\")%s", shown,
                  h[0] == 0x16 && h[1] == 0x03 ? "; they are a TLS record: the peer dialled tls://, and this SDK "
                  "speaks plain rlay (use a tunnel, spec section 17.1)" : "");
        return -1;
    }
    if (c->rhave < 12) return 0;
    c->rkind = h[2];
    c->rdlen = rlay__rd32le(h + 4); c->rblen = rlay__rd32le(h + 8);
    if (h[3]) { rlay__err(c, RLAY_E_BAD_HEADER, "frame flags are 0x%02x; version 1 requires 0", h[3]); return -1; }
    if (c->rblen == 0) { rlay__err(c, RLAY_E_BAD_HEADER, "frame body_len is 0; a body is at least one byte"); return -1; }
    total = (uint64_t)c->rdlen + c->rblen;
    if (c->state == RLAY__S_HELLO && total > RLAY_MAX_HANDSHAKE_FRAME_SIZE && total <= c->max_frame) {   /* section 13 */
        rlay__err(c, RLAY_E_FRAME_TOO_LARGE, "first frame of %llu bytes (data %u + body %u) exceeds max_handshake_frame_size %u: "
                  "the peer's HELLO is limited before the handshake", (unsigned long long)total, c->rdlen, c->rblen, RLAY_MAX_HANDSHAKE_FRAME_SIZE);
        return -1;
    }
    if (total > c->max_frame) {
        rlay__err(c, RLAY_E_FRAME_TOO_LARGE, "frame of %llu bytes (data %u + body %u) exceeds max_frame_size %u",
                  (unsigned long long)total, c->rdlen, c->rblen, c->max_frame);
        return -1;
    }
    if (!rlay__known_kind(c->rkind)) { rlay__err(c, RLAY_E_UNKNOWN_KIND, "unknown message kind %d", c->rkind); return -1; }
    c->rneed = 12 + (size_t)total;
    if (rlay__rx_reserve(c, c->rneed)) return -1;
    return c->rhave >= c->rneed;
}
static void rlay__rx_consume(rlay_ctx *c) {
    if (!c->rneed) return;
    memmove(c->rbuf, c->rbuf + c->rneed, c->rhave - c->rneed);
    c->rhave -= c->rneed; c->rneed = 0;
}
/* End of stream (spec section 8): inside a frame it is TRUNCATED; between frames it is the
   normal end in state closed, and the peer vanishing otherwise. */
static void rlay__rx_eof(rlay_ctx *c) {
    if (c->rhave > 0) {
        if (rlay__rx_frame(c) < 0) return;
        if (c->rneed) rlay__err(c, RLAY_E_TRUNCATED, "the stream ended inside a %s frame (%lu of %lu bytes)",
                                rlay__kind_name(c->rkind), (unsigned long)c->rhave, (unsigned long)c->rneed);
        else rlay__err(c, RLAY_E_TRUNCATED, "the stream ended inside a frame header (%lu of 12 bytes)", (unsigned long)c->rhave);
    } else if (c->role == RLAY__ENV && c->state == RLAY__S_IDLE) {
        c->state = RLAY__S_CLOSED;   /* section 8: an agent that ends the stream between commands ends the session */
    } else if (c->state != RLAY__S_CLOSED) {
        rlay__err(c, RLAY_E_PEER_CLOSED, "connection closed by peer in state %s%s", rlay__state_names[c->state],
                  c->state == RLAY__S_HELLO ? " (during the handshake)" : c->state == RLAY__S_IDLE ? " (between commands)" : "");
    }
}

/* ---- sending ---- */
static const unsigned char rlay__zeros[8] = {0, 0, 0, 0, 0, 0, 0, 0};
static int rlay__push_iov(rlay_ctx *c, const void *p, size_t n) {
    if (RLAY__GROW(c, c->iov, c->iovcap, c->niov + 1)) return -1;
    c->iov[c->niov].p = p; c->iov[c->niov].n = n; c->niov++;
    return 0;
}
/* Lays out the frame of `body` (spec section 5: tensors in document order, each at the next
   multiple of 8, empty ones at offset 0) as iovecs: header, tensor bytes, body. Works even
   after an error, so that a fatal ERROR can still be sent. */
static int rlay__frame(rlay_ctx *c, int kind, rlay_w *b) {
    uint64_t dlen = 0, total;
    size_t i;
    c->niov = 0;
    if (rlay__push_iov(c, c->hdr, 12)) return -1;
    for (i = 0; i < b->ntr; i++) {
        rlay__tref *t = &b->tr[i];
        uint64_t off = 0;
        if (t->nbytes) {
            const void *data = t->data ? t->data : b->own + t->own;
            off = (dlen + 7) & ~(uint64_t)7;
            if (off > dlen && rlay__push_iov(c, rlay__zeros, (size_t)(off - dlen))) return -1;
            if (rlay__push_iov(c, data, t->nbytes)) return -1;
            dlen = off + t->nbytes;
            if (dlen > 0xffffffffu) return rlay__err(c, RLAY_E_FRAME_TOO_LARGE, "the tensors of a %s frame exceed 4 GiB", rlay__kind_name(kind));
        }
        rlay__wr32le(b->buf + t->pos, (uint32_t)off);
    }
    if (rlay__push_iov(c, b->buf, b->len)) return -1;
    total = dlen + b->len;
    if (total > c->max_frame)
        return rlay__err(c, RLAY_E_FRAME_TOO_LARGE, "the %s frame would be %llu bytes, more than max_frame_size %u",
                         rlay__kind_name(kind), (unsigned long long)total, c->max_frame);
    c->hdr[0] = 0x52; c->hdr[1] = 0x4c; c->hdr[2] = (unsigned char)kind; c->hdr[3] = 0;
    rlay__wr32le(c->hdr + 4, (uint32_t)dlen); rlay__wr32le(c->hdr + 8, (uint32_t)b->len);
    return 0;
}
static int rlay__flatten(rlay_ctx *c) {
    size_t i, n = 0;
    for (i = 0; i < c->niov; i++) n += c->iov[i].n;
    if (RLAY__GROW(c, c->flat, c->fcap, n ? n : 1)) return -1;
    c->flen = 0;
    for (i = 0; i < c->niov; i++) { memcpy(c->flat + c->flen, c->iov[i].p, c->iov[i].n); c->flen += c->iov[i].n; }
    return 0;
}
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
static int rlay__wait(rlay__sock fd, int events, int timeout_ms) {
#ifdef _WIN32
    WSAPOLLFD p;
#else
    struct pollfd p;
#endif
    p.fd = fd; p.events = (short)events; p.revents = 0;
    return rlay__poll(&p, 1, timeout_ms);
}
/* Writes the iovecs completely with gather writes (one call in the common case). */
static int rlay__send(rlay_ctx *c) {
    size_t i = 0, off = 0;
    while (i < c->niov && c->iov[i].n == 0) i++;
    while (i < c->niov) {
        long r;
        int n = 0;
        size_t j;
#ifdef _WIN32
        WSABUF v[64]; DWORD sent = 0;
        for (j = i; j < c->niov && n < 64; j++) {
            v[n].buf = (CHAR *)(uintptr_t)((const char *)c->iov[j].p + (j == i ? off : 0));
            v[n].len = (ULONG)(c->iov[j].n - (j == i ? off : 0)); n++;
        }
        r = WSASend(c->fd, v, (DWORD)n, &sent, 0, NULL, NULL) == 0 ? (long)sent : -1;
#else
        struct iovec v[64];
        struct msghdr m;
        for (j = i; j < c->niov && n < 64; j++) {
            v[n].iov_base = (void *)(uintptr_t)((const char *)c->iov[j].p + (j == i ? off : 0));
            v[n].iov_len = c->iov[j].n - (j == i ? off : 0); n++;
        }
        memset(&m, 0, sizeof m);
        m.msg_iov = v; m.msg_iovlen = (size_t)n;
        r = (long)sendmsg(c->fd, &m, MSG_NOSIGNAL);
#endif
        if (r < 0) {
            int e = rlay__errno();
            if (e == EINTR) continue;
            if (RLAY__EAGAIN(e)) { rlay__wait(c->fd, POLLOUT, -1); continue; }
            if (!c->err) { c->err = RLAY_E_IO; snprintf(c->errmsg, sizeof c->errmsg, "sending failed: %s", strerror(e)); }
            return -1;
        }
        while (r > 0 && i < c->niov) {
            size_t left = c->iov[i].n - off;
            if ((size_t)r >= left) { r -= (long)left; i++; off = 0; } else { off += (size_t)r; r = 0; }
        }
        while (i < c->niov && c->iov[i].n == off) { i++; off = 0; }
    }
    return 0;
}
/* Appends `s` to w as a str, replacing bytes that are not UTF-8 by '?'. No API checks. */
static void rlay__e_text(rlay_w *w, const char *s) {
    char buf[2048];
    size_t n = strlen(s), i = 0, k = 0;
    if (n > sizeof buf - 1) n = sizeof buf - 1;
    while (i < n) {
        size_t j = i;
        if (rlay__utf8_next((const unsigned char *)s, n, &j) < 0) { buf[k++] = '?'; i++; }
        else { memcpy(buf + k, s + i, j - i); k += j - i; i = j; }
    }
    rlay__e_strn(w, buf, (uint32_t)k);
}
static void rlay__close_fd(rlay__sock *fd) {
    if (*fd != RLAY__NOSOCK) { rlay__closesock(*fd); *fd = RLAY__NOSOCK; }
}

/* ---- shared memory (spec section 16): the region's layout, writing a frame, waking ---- */
#if RLAY__SHM
/* 16.2: the header page, and the two control blocks (each: the writer's line, the reader's) */
enum { RLAY__SHM_HEADER = 4096, RLAY__SHM_A2E = 128, RLAY__SHM_E2A = 256,
       RLAY__SHM_SEQ = 0, RLAY__SHM_LEN = 8, RLAY__SHM_ACK = 64, RLAY__SHM_SLEEPING = 72 };
#define RLAY__SHM_ON_SOCKET UINT64_MAX    /* len: the frame travels on the socket (16.5) */
static rlay__au64 *rlay__shm_word(rlay_ctx *c, size_t channel, size_t field) {
    return (rlay__au64 *)(void *)(c->shm.base + channel + field);
}
static long long rlay__now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
static void rlay__shm_unmap(rlay_ctx *c) {
    if (c->shm.base) munmap(c->shm.base, c->shm.size);
    c->shm.base = NULL; c->shm.on = 0;
    if (c->shm.rxfd >= 0) { close(c->shm.rxfd); c->shm.rxfd = -1; }
}
/* One wake byte (16.4 write step 4). The socket is non-blocking: wait if it is full. */
static int rlay__shm_wake(rlay_ctx *c) {
    static const unsigned char zero = 0;
    for (;;) {
        long r = (long)send(c->fd, (const char *)&zero, 1, MSG_NOSIGNAL);
        int e;
        if (r == 1) return 0;
        e = errno;
        if (r < 0 && e == EINTR) continue;
        if (r < 0 && RLAY__EAGAIN(e)) { rlay__wait(c->fd, POLLOUT, -1); continue; }
        if (!c->err) { c->err = RLAY_E_IO; snprintf(c->errmsg, sizeof c->errmsg, "sending a wake byte failed: %s", strerror(e)); }
        return -1;
    }
}
/* Writes the frame in c->iov (laid out by rlay__frame: c->hdr first) to the e2a channel (16.4),
   or, when it does not fit, announces it there and sends it on the socket (16.5). A fatal
   ERROR while our previous frame is still unconsumed goes on the socket, out of turn (16.5). */
static int rlay__shm_write(rlay_ctx *c) {
    rlay__au64 *seq = rlay__shm_word(c, RLAY__SHM_E2A, RLAY__SHM_SEQ), *len = rlay__shm_word(c, RLAY__SHM_E2A, RLAY__SHM_LEN);
    rlay__au64 *sleeping = rlay__shm_word(c, RLAY__SHM_E2A, RLAY__SHM_SLEEPING);
    uint64_t n = 0, ack = RLAY__LOAD(rlay__shm_word(c, RLAY__SHM_E2A, RLAY__SHM_ACK), acquire);
    size_t i;
    int on_socket;
    for (i = 0; i < c->niov; i++) n += c->iov[i].n;
    if (ack != c->shm.sent) {
        if (c->hdr[2] == RLAY_ERROR) return rlay__send(c);   /* out of turn: only a fatal ERROR (our replies are in turn) */
        /* 16.4 write step 1: the peer broke the channel; we end the session (and, as any side may
           before it closes, say why: this fatal BAD_HEADER then goes on the socket, out of turn) */
        return rlay__err(c, RLAY_E_BAD_HEADER, "shared memory: the agent side sent a command before it consumed "
                         "our previous frame (ack %llu, sent %llu)", (unsigned long long)ack, (unsigned long long)c->shm.sent);
    }
    on_socket = n > c->shm.e2a_cap;
    if (on_socket) RLAY__STORE(len, RLAY__SHM_ON_SOCKET, relaxed);
    else {
        unsigned char *area = c->shm.base + c->shm.e2a_off;
        size_t at = 0;
        for (i = 0; i < c->niov; i++) { if (c->iov[i].n) memcpy(area + at, c->iov[i].p, c->iov[i].n); at += c->iov[i].n; }
        RLAY__STORE(len, n, relaxed);
    }
    c->shm.sent++;
    RLAY__STORE(seq, c->shm.sent, release);   /* the bytes and len are visible no later than seq */
    RLAY__FENCE();                             /* Dekker (16.6): our seq store, then their sleeping */
    if (RLAY__LOAD(sleeping, acquire) == 1) {
        /* (16.4 step 4 has the writer store into the reader's cache line here, which 16.2 says
           never happens; harmless: the reader stores 0 too once awake) */
        RLAY__STORE(sleeping, 0, relaxed);
        if (rlay__shm_wake(c)) return -1;
    }
    return on_socket ? rlay__send(c) : 0;
}
#endif
/* Sends the frame in c->iov: through shared memory once it is on, else on the socket. */
static int rlay__send_frame(rlay_ctx *c) {
#if RLAY__SHM
    if (c->shm.on) return rlay__shm_write(c);
#endif
    return rlay__send(c);
}
static void rlay__pool_close(rlay_ctx *c) {
    while (c->npend > 0) rlay__closesock(c->pend[--c->npend]);
}
/* Sends an ERROR (spec section 6); a traceback is sent (empty) iff remote_type is. */
static int rlay__send_error(rlay_ctx *c, int code, int fatal, const char *remote_type, const char *msg) {
    rlay_w *w = c->w_body;
    rlay__w_reset(w);
    rlay__e_map(w, 5);
    rlay__e_str(w, "code"); rlay__e_int(w, code);
    rlay__e_str(w, "message"); rlay__e_text(w, msg);
    rlay__e_str(w, "fatal"); rlay__e_bool(w, fatal);
    rlay__e_str(w, "remote_type"); if (remote_type) rlay__e_text(w, remote_type); else rlay__e_nil(w);
    rlay__e_str(w, "traceback"); if (remote_type) rlay__e_str(w, ""); else rlay__e_nil(w);
    if (rlay__frame(c, RLAY_ERROR, w)) return -1;
    return rlay__send_frame(c);
}
/* Ends the session after an error: the peer is told why (spec section 2: SHOULD), unless the
   error came from the peer or the connection itself is gone. */
static void rlay__end(rlay_ctx *c) {
    int e = c->err;
    if (e && c->phase == RLAY__P_OPEN && c->fd != RLAY__NOSOCK && !c->err_from_peer &&
        e != RLAY_E_IO && e != RLAY_E_PEER_CLOSED && e != RLAY_E_TIMEOUT && c->state != RLAY__S_CLOSED)
        rlay__send_error(c, e > 0 ? e : RLAY_E_INTERNAL, 1, NULL, c->errmsg);
    rlay__close_fd(&c->fd);
    rlay__close_fd(&c->lfd);
#if RLAY__SHM
    rlay__shm_unmap(c);   /* 16.7: the kernel frees the memfd when the agent's mapping goes too */
#endif
    rlay__pool_close(c);
    if (c->upath[0]) { unlink(c->upath); c->upath[0] = 0; }
    c->phase = RLAY__P_DONE;
    if (e) c->state = RLAY__S_CLOSED;
}

/* ======================================================================================== */
/* Context */

rlay_ctx *rlay_new(void) {
    rlay_ctx *c = (rlay_ctx *)calloc(1, sizeof *c);
    uint16_t one = 1;
    if (!c) return NULL;
    c->fd = c->lfd = RLAY__NOSOCK;
    c->max_frame = RLAY_DEFAULT_MAX_FRAME_SIZE;
    c->max_values = RLAY_DEFAULT_MAX_VALUES;
    c->handshake_ms = RLAY_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    c->nenv = 1;
    c->shm.want = 1; c->shm.rxfd = -1;
    c->shm.spin_us = RLAY_DEFAULT_SHM_SPIN_US; c->shm.max_size = RLAY_DEFAULT_MAX_SHM_SIZE;
    c->w_obs_space = rlay__w_new(c, 1, 0, 1);
    c->w_act_space = rlay__w_new(c, 1, 0, 1);
    c->w_meta = rlay__w_new(c, 1, 1, 2);
    c->w_obs = rlay__w_new(c, 0, 0, 1);
    c->w_info = rlay__w_new(c, 0, 1, 2);
    c->w_val = rlay__w_new(c, 0, 0, 1);
    c->w_body = rlay__w_new(c, 0, 0, 0);
    rlay__rx_reserve(c, 65536);
    if (*(const unsigned char *)&one != 1) rlay__err(c, RLAY_E_USAGE, "rlay-c needs a little-endian host");
    return c;
}
static void rlay__doc_free(rlay__doc *d) { free(d->nodes); free(d->ts); }
void rlay_free(rlay_ctx *c) {
    if (!c) return;
    if (!c->err && c->phase == RLAY__P_OPEN && c->state != RLAY__S_CLOSED)
        rlay__send_error(c, RLAY_E_SHUTTING_DOWN, 1, NULL, "the env side is shutting down");
    c->err = c->err ? c->err : RLAY_E_SHUTTING_DOWN;
    c->err_from_peer = 1;   /* nothing more to send */
    rlay__end(c);
    rlay__w_free(c->w_obs_space); rlay__w_free(c->w_act_space); rlay__w_free(c->w_meta);
    rlay__w_free(c->w_obs); rlay__w_free(c->w_info); rlay__w_free(c->w_val); rlay__w_free(c->w_body);
    rlay__doc_free(&c->idoc); rlay__doc_free(&c->rdoc); rlay__doc_free(&c->sdoc);
    free(c->name); free(c->render_mode); free(c->hello); free(c->envinfo);
    free(c->ralloc); free(c->keys); free(c->iov); free(c->flat); free(c->ebuf);
    free(c->b_seeds); free(c->b_rew); free(c->b_bytes);
    free(c->ma_ids); free(c->ma_obs_sp); free(c->ma_live); free(c->ma_mark);
    { size_t k; for (k = 0; k < c->nattr; k++) free(c->attrs[k].doc); free(c->attrs); }
    free(c);
}
void rlay_set_max_frame_size(rlay_ctx *c, uint32_t bytes) { if (c && !c->err) c->max_frame = bytes < 64 ? 64 : bytes; }
void rlay_set_max_values(rlay_ctx *c, uint32_t values) { if (c && !c->err) c->max_values = values < 1024 ? 1024 : values; }
void rlay_set_handshake_timeout(rlay_ctx *c, int ms) { if (c && !c->err) c->handshake_ms = ms < 0 ? 0 : ms; }
void rlay_set_shm(rlay_ctx *c, int on) {
    if (!c || c->err) return;
    if (c->phase != RLAY__P_NONE) { rlay__err(c, RLAY_E_USAGE, "rlay_set_shm: call it before rlay_listen/rlay_connect"); return; }
    c->shm.want = on != 0;
}
void rlay_set_max_shm_size(rlay_ctx *c, uint64_t bytes) { if (c && !c->err) c->shm.max_size = bytes; }
int rlay_shm_active(const rlay_ctx *c) { return c ? c->shm.on : 0; }
const char *rlay_shm_status(const rlay_ctx *c) {
    if (!c) return "no context";
    if (c->shm.on) return "active";
    return c->shm.status[0] ? c->shm.status : "not negotiated (yet)";
}
static void rlay__set_str(rlay_ctx *c, char **dst, const char *s, const char *what) {
    size_t n;
    if (!c || c->err) return;
    if (c->phase != RLAY__P_NONE) { rlay__err(c, RLAY_E_USAGE, "%s must be set before rlay_listen/rlay_connect", what); return; }
    free(*dst); *dst = NULL;
    if (!s) return;
    n = strlen(s);
    if (!rlay__utf8_ok(s, n)) { rlay__err(c, RLAY_E_USAGE, "%s is not valid UTF-8", what); return; }
    if (!(*dst = (char *)malloc(n + 1))) { rlay__err(c, RLAY_E_NOMEM, "out of memory"); return; }
    memcpy(*dst, s, n + 1);
}
void rlay_set_name(rlay_ctx *c, const char *name) { rlay__set_str(c, &c->name, name, "the env name"); }
void rlay_set_render_mode(rlay_ctx *c, const char *m) { rlay__set_str(c, &c->render_mode, m, "the render mode"); }
void rlay_set_num_envs(rlay_ctx *c, uint32_t n) {
    if (!c || c->err) return;
    if (c->phase != RLAY__P_NONE) { rlay__err(c, RLAY_E_USAGE, "rlay_set_num_envs must be called before rlay_listen/rlay_connect"); return; }
    if (n < 1 || n > 0x7fffffffu) { rlay__err(c, RLAY_E_USAGE, "rlay_set_num_envs: %lu sub-envs is not in 1..2147483647", (unsigned long)n); return; }
    c->nenv = n;
}
uint32_t rlay_num_envs(const rlay_ctx *c) { return c ? c->nenv : 0; }
rlay_w *rlay_observation_space(rlay_ctx *c) { return c ? c->w_obs_space : NULL; }
rlay_w *rlay_action_space(rlay_ctx *c) { return c ? c->w_act_space : NULL; }
rlay_w *rlay_metadata(rlay_ctx *c) { return c ? c->w_meta : NULL; }
rlay_w *rlay_obs(rlay_ctx *c) { return c ? c->w_obs : NULL; }
rlay_w *rlay_info(rlay_ctx *c) { return c ? c->w_info : NULL; }
rlay_w *rlay_frame(rlay_ctx *c) { return c ? c->w_val : NULL; }
rlay_w *rlay_result(rlay_ctx *c) { return c ? c->w_val : NULL; }
const char *rlay_address(const rlay_ctx *c) { return c ? c->address : ""; }

/* Is the writer's content complete: one value, or whole key/value pairs? */
static int rlay__w_done(rlay_w *w, const char *what) {
    if (w->c->err) return 0;
    if (w->depth > 0) return !rlay__err(w->c, RLAY_E_USAGE, "%s: a container is not complete (%u more items due)", what, w->st[w->depth - 1].left);
    if (w->automap && w->top % 2) return !rlay__err(w->c, RLAY_E_USAGE, "%s: the last key has no value", what);
    if (w->automap) {
        const char *d; uint32_t dl;
        if (w->top >= 4 && rlay__dup_keys(w->c, w->buf, w->len, 0, w->top / 2, &d, &dl))
            return !rlay__err(w->c, RLAY_E_USAGE, "%s: duplicate key '%.*s'", what, (int)(dl > 100 ? 100 : dl), d);
        return 1;
    }
    if (w->top != 1) return !rlay__err(w->c, RLAY_E_USAGE, "%s: no value was written", what);
    return 1;
}
/* Appends writer src to w as one value (a key/value writer becomes a map). */
static void rlay__splice_body(rlay_w *w, rlay_w *src) {
    size_t base = w->len, i;
    rlay__wbytes(w, src->buf, src->len);
    if (RLAY__GROW(w->c, w->tr, w->trcap, w->ntr + src->ntr)) return;
    for (i = 0; i < src->ntr; i++) {
        rlay__tref t = src->tr[i];
        t.pos += base;
        if (!t.data && t.nbytes) { t.data = src->own + t.own; }
        w->tr[w->ntr++] = t;
    }
}
static void rlay__splice(rlay_w *w, rlay_w *src) {
    if (src->automap) rlay__e_map(w, src->top / 2);
    rlay__splice_body(w, src);
}
/* Does a key/value writer hold `key`? (Its bytes are our own, complete pairs.) */
static int rlay__w_has_key(rlay_w *w, const char *key) {
    size_t pos = 0, n = strlen(key), h;
    uint64_t len;
    uint32_t i;
    for (i = 0; i < w->top / 2; i++) {
        unsigned char b = w->buf[pos];
        if (b >= 0xa0 && b <= 0xbf) { h = 1; len = b & 31u; }
        else if (b >= 0xd9 && b <= 0xdb) { int k = 1 << (b - 0xd9); h = 1 + (size_t)k; len = rlay__be(w->buf + pos + 1, k); }
        else return 0;
        if (len == n && memcmp(w->buf + pos + h, key, n) == 0) return 1;
        if (rlay__skip(w->buf, w->len, &pos) || rlay__skip(w->buf, w->len, &pos)) return 0;
    }
    return 0;
}
static unsigned char *rlay__dup_flat(rlay_ctx *c, size_t *n) {
    unsigned char *p;
    if (rlay__flatten(c)) return NULL;
    if (!(p = (unsigned char *)malloc(c->flen))) { rlay__err(c, RLAY_E_NOMEM, "out of memory"); return NULL; }
    memcpy(p, c->flat, c->flen); *n = c->flen;
    return p;
}
/* Section 18.2: both spaces Dicts with the same agent ids in the same order; one env. Copies the
   ids (NUL-terminated) and points at each agent's spaces; allocates the per-agent arrays once. */
static int rlay__ma_prepare(rlay_ctx *c) {
    const rlay_value *fo[6], *fa[6], *os, *as;
    uint32_t n, i;
    size_t bytes = 0;
    char *p;
    if (c->nenv != 1) return rlay__err(c, RLAY_E_USAGE, "rlay_set_multi_agent: a multi-agent env hosts one game (num_envs 1, not %u)", c->nenv);
    if (rlay__sp_get(c, c->obs_sp, fo, "observation_space") != RLAY__SP_DICT || rlay__sp_get(c, c->act_sp, fa, "action_space") != RLAY__SP_DICT)
        return rlay__err(c, RLAY_E_USAGE, "rlay_set_multi_agent: the observation and action spaces must be Dicts agent id -> space (rlay_space_dict)");
    os = fo[1]; as = fa[1]; n = os->len;
    if (n == 0 || as->len != n) return rlay__err(c, RLAY_E_USAGE, "rlay_set_multi_agent: the two Dicts must list the same agents (at least one)");
    for (i = 0; i < n; i++) {
        const rlay_value *k = &os->v.items[2 * i], *ka = &as->v.items[2 * i];
        if (ka->len != k->len || memcmp(ka->v.s, k->v.s, k->len) != 0)
            return rlay__err(c, RLAY_E_USAGE, "rlay_set_multi_agent: agent %u is '%.*s' in the observation space but '%.*s' in the action "
                             "space: list the same agents in the same order", i, (int)(k->len > 60 ? 60 : k->len), k->v.s,
                             (int)(ka->len > 60 ? 60 : ka->len), ka->v.s);
        bytes += k->len + 1;
    }
    c->ma_ids = (char **)malloc(n * sizeof *c->ma_ids + bytes);
    c->ma_obs_sp = (const rlay_value **)calloc(2 * (size_t)n, sizeof *c->ma_obs_sp);
    c->ma_live = (uint32_t *)calloc(2 * (size_t)n, sizeof *c->ma_live);
    c->ma_mark = (unsigned char *)calloc(n, 1);
    if (!c->ma_ids || !c->ma_obs_sp || !c->ma_live || !c->ma_mark) return rlay__err(c, RLAY_E_NOMEM, "out of memory for %u agents", n);
    c->ma_act_sp = c->ma_obs_sp + n; c->ma_idx = c->ma_live + n;
    p = (char *)(c->ma_ids + n);
    for (i = 0; i < n; i++) {
        const rlay_value *k = &os->v.items[2 * i];
        c->ma_ids[i] = p; memcpy(p, k->v.s, k->len); p[k->len] = 0; p += k->len + 1;
        c->ma_obs_sp[i] = &os->v.items[2 * i + 1]; c->ma_act_sp[i] = &as->v.items[2 * i + 1];
    }
    c->ma_n = n; c->ma_nlive = 0;
    return 0;
}
/* The index of the possible agent named by the str value k, or -1. */
static long rlay__ma_find(const rlay_ctx *c, const char *s, size_t len) {
    uint32_t i;
    for (i = 0; i < c->ma_n; i++) if (strlen(c->ma_ids[i]) == len && memcmp(c->ma_ids[i], s, len) == 0) return (long)i;
    return -1;
}
/* Builds HELLO and ENV_INFO once, and checks our own spaces by decoding ENV_INFO with the
   same decoder and checks a peer's would get. */
static int rlay__prepare(rlay_ctx *c) {
    rlay_w *b = c->w_body;
    const rlay_value *root, *f[8];
    size_t n;
    if (c->err) return c->err;
    if (c->phase != RLAY__P_NONE) return rlay__err(c, RLAY_E_USAGE, "rlay_listen/rlay_connect: this context already has a connection");
    if (!rlay__w_done(c->w_obs_space, "observation space (rlay_observation_space)") ||
        !rlay__w_done(c->w_act_space, "action space (rlay_action_space)") ||
        !rlay__w_done(c->w_meta, "metadata (rlay_metadata)")) return c->err;
    if (!c->token_len) {   /* section 15: a launcher's RLAY_TOKEN, unless rlay_set_token gave one */
        const char *env_token = getenv("RLAY_TOKEN");
        if (env_token && *env_token && rlay_set_token(c, env_token, strlen(env_token))) return c->err;
    }
    rlay__w_reset(b);
    rlay__e_map(b, 6);
    rlay__e_str(b, "protocol"); rlay__e_str(b, "rlay");
    rlay__e_str(b, "version"); rlay__e_int(b, RLAY_PROTOCOL_VERSION);
    rlay__e_str(b, "role"); rlay__e_str(b, "env");
    rlay__e_str(b, "sdk"); rlay__e_str(b, RLAY_SDK_NAME);
    rlay__e_str(b, "sdk_version"); rlay__e_str(b, RLAY_SDK_VERSION);
    rlay__e_str(b, "capabilities");
    {   /* section 16.1: "shm": 1 only on a unix socket, unless turned off (rlay_set_shm, RLAY_SHM=0) */
        const char *env_shm = getenv("RLAY_SHM"), *spin = getenv("RLAY_SHM_SPIN_US");
        int off_env = 0;
        if (env_shm) {   /* "0", spaces around it allowed (as Python's .strip()) */
            size_t a = strspn(env_shm, " \t\r\n"), b = a + (env_shm[a] == '0');
            off_env = b > a && env_shm[b + strspn(env_shm + b, " \t\r\n")] == 0;
        }
        c->shm.announced = RLAY__SHM && c->shm.want && !off_env && c->shm.unix_addr;
        snprintf(c->shm.status, sizeof c->shm.status, "%s", !RLAY__SHM ? "off: not compiled in (no 64-bit atomics or mmap)"
                 : !c->shm.want ? "off: rlay_set_shm(c, 0)" : off_env ? "off: RLAY_SHM=0" : !c->shm.unix_addr
                 ? "off: not a unix:// connection" : "announced; the agent side's HELLO not read yet");
        if (spin && *spin) {
            char *end;
            long us = strtol(spin, &end, 10);
            if (*end || us < 0 || us > 1000000)
                return rlay__err(c, RLAY_E_USAGE, "RLAY_SHM_SPIN_US must be a number of microseconds in 0..1000000, got '%.40s'", spin);
            c->shm.spin_us = us;
        }
    }
    rlay__e_map(b, (uint32_t)(c->shm.announced + (c->token_len != 0) + (c->ma != 0)));
    if (c->shm.announced) { rlay__e_str(b, "shm"); rlay__e_int(b, 1); }
    if (c->ma) { rlay__e_str(b, "multi_agent"); rlay__e_bool(b, 1); }   /* section 18 */
    if (c->token_len) {   /* section 7.1: "auth": bin 32, the last 32 bytes of the frame (rlay__on_open fills them) */
        static const unsigned char zeros[32] = {0};
        rlay__e_str(b, "auth");
        { unsigned char h[2] = {0xc4, 32}; rlay__wbytes(b, h, 2); rlay__wbytes(b, zeros, 32); }
    }
    if (rlay__frame(c, RLAY_HELLO, b) || !(c->hello = rlay__dup_flat(c, &c->hello_len))) return c->err;
    rlay__w_reset(b);
    rlay__e_map(b, 6);
    rlay__e_str(b, "observation_space"); rlay__splice(b, c->w_obs_space);
    rlay__e_str(b, "action_space"); rlay__splice(b, c->w_act_space);
    rlay__e_str(b, "num_envs"); rlay__e_int(b, c->nenv);
    rlay__e_str(b, "metadata");
    if (c->nenv > 1 && !rlay__w_has_key(c->w_meta, "autoreset_mode")) {   /* section 10's default, said */
        rlay__e_map(b, c->w_meta->top / 2 + 1);
        rlay__splice_body(b, c->w_meta);
        rlay__e_str(b, "autoreset_mode"); rlay__e_str(b, "next_step");
    } else rlay__splice(b, c->w_meta);
    rlay__e_str(b, "render_mode"); if (c->render_mode) rlay__e_str(b, c->render_mode); else rlay__e_nil(b);
    rlay__e_str(b, "name"); if (c->name) rlay__e_str(b, c->name); else rlay__e_nil(b);
    if (rlay__frame(c, RLAY_ENV_INFO, b) || !(c->envinfo = rlay__dup_flat(c, &c->envinfo_len))) return c->err;
    if (rlay__decode(c, &c->idoc, c->envinfo + 12 + rlay__rd32le(c->envinfo + 4), rlay__rd32le(c->envinfo + 8),
                     c->envinfo + 12, rlay__rd32le(c->envinfo + 4), 0, &root) ||
        rlay__check_fields(c, RLAY_ENV_INFO, root, f)) return c->err;
    c->obs_sp = f[0]; c->act_sp = f[1];
    n = c->nenv;   /* the per-sub-env arrays, once: nothing is allocated per step */
    if (!(c->b_seeds = (uint64_t *)calloc(n, sizeof *c->b_seeds)) || !(c->b_rew = (double *)calloc(n, sizeof *c->b_rew)) ||
        !(c->b_bytes = (unsigned char *)calloc(n, 8)))
        return rlay__err(c, RLAY_E_NOMEM, "out of memory for the arrays of %lu sub-envs", (unsigned long)n);
    c->b_seeded = c->b_bytes; c->b_mask = c->b_bytes + n; c->b_ended = c->b_bytes + 2 * n;
    c->b_flags = c->b_bytes + 3 * n; c->b_term = c->b_bytes + 5 * n; c->b_trunc = c->b_bytes + 6 * n;
    c->b_was_reset = c->b_bytes + 7 * n;
    return c->ma ? rlay__ma_prepare(c) : 0;
}

/* ======================================================================================== */
/* Transport: tcp://HOST:PORT (IPv4 or [IPv6]) and unix:///absolute/path (spec section 1). */

static int rlay__parse_addr(rlay_ctx *c, const char *a, int *is_unix, char *host, char *port, char *path) {
    size_t n;
    const char *hp, *colon;
    *is_unix = 0; host[0] = port[0] = path[0] = 0;
    if (!a) return rlay__err(c, RLAY_E_ADDRESS, "no address given");
    if (strncmp(a, "unix://", 7) == 0) {
        n = strlen(a + 7);
        if (n == 0 || a[7] != '/') return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': a unix address is unix:///absolute/path", a);
#ifdef _WIN32
        return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': unix addresses are not supported on Windows by rlay-c", a);
#else
        if (n >= sizeof(((struct sockaddr_un *)0)->sun_path) || n >= 108)
            return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': the socket path is longer than the OS allows", a);
#endif
        memcpy(path, a + 7, n + 1); *is_unix = 1;
        return 0;
    }
    if (strncmp(a, "tcp://", 6) != 0)
        return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': unsupported address; use tcp://HOST:PORT or unix:///absolute/path", a);
    hp = a + 6;
    if (*hp == '[') {
        const char *e = strchr(hp, ']');
        if (!e || e[1] != ':' || e == hp + 1 || (size_t)(e - hp - 1) >= 256) return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': expected tcp://[IPv6]:PORT", a);
        memcpy(host, hp + 1, (size_t)(e - hp - 1)); host[e - hp - 1] = 0;
        colon = e + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= 256) return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': expected tcp://HOST:PORT", a);
        memcpy(host, hp, (size_t)(colon - hp)); host[colon - hp] = 0;
        if (!host[0]) strcpy(host, "127.0.0.1");   /* loopback unless told otherwise */
    }
    n = strlen(colon + 1);
    if (n < 1 || n > 5 || strspn(colon + 1, "0123456789") != n || atol(colon + 1) > 65535)
        return rlay__err(c, RLAY_E_ADDRESS, "'%.200s': the port must be a number 0..65535", a);
    memcpy(port, colon + 1, n + 1);
    return 0;
}
static int rlay__sockerr(rlay_ctx *c, const char *what, const char *addr) {
    return rlay__err(c, RLAY_E_IO, "%s %.200s: %s", what, addr, strerror(rlay__errno()));
}
static void rlay__nonblock(rlay__sock s) {
#ifdef _WIN32
    u_long on = 1; ioctlsocket(s, FIONBIO, &on);
#else
    int fl = fcntl(s, F_GETFL, 0);
    fcntl(s, F_SETFL, fl | O_NONBLOCK);
    fcntl(s, F_SETFD, FD_CLOEXEC);
#endif
}
static void rlay__fmt_sockaddr(char *out, size_t n, const struct sockaddr *sa) {
    char h[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof h);
        snprintf(out, n, "tcp://[%s]:%u", h, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, h, sizeof h);
        snprintf(out, n, "tcp://%s:%u", h, ntohs(s4->sin_port));
    }
}
static struct addrinfo *rlay__resolve(rlay_ctx *c, const char *host, const char *port, const char *addr) {
    struct addrinfo hints, *res = NULL;
    int r;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC; hints.ai_socktype = SOCK_STREAM; hints.ai_flags = AI_NUMERICSERV;
    if ((r = getaddrinfo(host, port, &hints, &res)) != 0 || !res) {
        rlay__err(c, RLAY_E_ADDRESS, "'%.200s': cannot resolve host '%s': %s", addr, host, gai_strerror(r));
        return NULL;
    }
    return res;
}
#ifdef _WIN32
static void rlay__wsa(void) { static int done; WSADATA d; if (!done) { WSAStartup(MAKEWORD(2, 2), &d); done = 1; } }
#else
static void rlay__wsa(void) {}
#endif

int rlay_listen(rlay_ctx *c, const char *address) {
    char host[256], port[8], path[256];
    int is_unix;
    rlay__sock s;
    if (!c) return RLAY_E_NOMEM;
    c->shm.unix_addr = address && strncmp(address, "unix://", 7) == 0;   /* AF_UNIX, SOCK_STREAM (16.1) */
    if (rlay__prepare(c) || rlay__parse_addr(c, address, &is_unix, host, port, path)) return c->err;
    rlay__wsa();
#ifndef _WIN32
    if (is_unix) {
        struct sockaddr_un su;
        struct stat st;
        memset(&su, 0, sizeof su);
        su.sun_family = AF_UNIX;
        memcpy(su.sun_path, path, strlen(path) + 1);
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            /* Replace only a stale socket: if a process answers there, it is alive. */
            rlay__sock probe = socket(AF_UNIX, SOCK_STREAM, 0);
            int live = probe >= 0 && connect(probe, (struct sockaddr *)&su, sizeof su) == 0;
            if (probe >= 0) close(probe);
            if (live) return rlay__err(c, RLAY_E_ADDRESS, "cannot listen on %.200s: another process is listening there", address);
            unlink(path);
        }
        if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) < 0) return rlay__sockerr(c, "cannot create a socket for", address);
        /* Owner-only whatever the umask; chmod before listen(): until then a connect is refused. */
        if (bind(s, (struct sockaddr *)&su, sizeof su) != 0 || chmod(path, 0600) != 0 || listen(s, RLAY_MAX_PENDING) != 0) {
            rlay__sockerr(c, "cannot listen on", address); close(s); return c->err;
        }
        snprintf(c->address, sizeof c->address, "unix://%s", path);
        snprintf(c->upath, sizeof c->upath, "%s", path);
    } else
#endif
    {
        struct addrinfo *res = rlay__resolve(c, host, port, address);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int on = 1;
        if (!res) return c->err;
        s = socket(res->ai_family, SOCK_STREAM, 0);
        if (s == RLAY__NOSOCK) { freeaddrinfo(res); return rlay__sockerr(c, "cannot create a socket for", address); }
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, (const char *)&on, sizeof on);
        if (bind(s, res->ai_addr, (socklen_t)res->ai_addrlen) != 0 || listen(s, RLAY_MAX_PENDING) != 0) {
            rlay__sockerr(c, "cannot listen on", address); freeaddrinfo(res); rlay__closesock(s); return c->err;
        }
        freeaddrinfo(res);
        getsockname(s, (struct sockaddr *)&ss, &sl);
        rlay__fmt_sockaddr(c->address, sizeof c->address, (struct sockaddr *)&ss);
    }
    rlay__nonblock(s);
    c->lfd = s; c->phase = RLAY__P_LISTEN;
    return 0;
}

static long rlay__now_ms(void);
/* The connection is up: both sides send HELLO at once (spec section 7). */
static void rlay__on_open(rlay_ctx *c, rlay__sock s, int tcp) {
    int on = 1;
    rlay__nonblock(s);
    if (tcp) {
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&on, sizeof on);
        /* section 17.3: keep-alive notices a vanished host (not a paused process): 30 s idle,
           then 6 probes 10 s apart */
        setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (const char *)&on, sizeof on);
#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
        { int idle = 30, intvl = 10, cnt = 6;
          setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, (const char *)&idle, sizeof idle);
          setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, (const char *)&intvl, sizeof intvl);
          setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, (const char *)&cnt, sizeof cnt); }
#endif
    }
#ifdef SO_NOSIGPIPE
    setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, (const char *)&on, sizeof on);
#endif
    c->fd = s; c->phase = RLAY__P_OPEN; c->state = RLAY__S_HELLO; c->rhave = 0; c->rneed = 0;
    c->hs_deadline = c->handshake_ms > 0 ? rlay__now_ms() + c->handshake_ms : 0;
    c->niov = 0;
    if (c->token_len && rlay__random(c, c->hello + c->hello_len - 32, 32)) return;   /* a fresh nonce per connection */
    rlay__push_iov(c, c->hello, c->hello_len);
    rlay__send(c);
}

int rlay_connect(rlay_ctx *c, const char *address) {
    char host[256], port[8], path[256];
    int is_unix;
    rlay__sock s;
    if (!c) return RLAY_E_NOMEM;
    c->shm.unix_addr = address && strncmp(address, "unix://", 7) == 0;   /* AF_UNIX, SOCK_STREAM (16.1) */
    if (rlay__prepare(c) || rlay__parse_addr(c, address, &is_unix, host, port, path)) return c->err;
    rlay__wsa();
    snprintf(c->address, sizeof c->address, "%s", address);
#ifndef _WIN32
    if (is_unix) {
        struct sockaddr_un su;
        memset(&su, 0, sizeof su);
        su.sun_family = AF_UNIX;
        memcpy(su.sun_path, path, strlen(path) + 1);
        if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) < 0) return rlay__sockerr(c, "cannot create a socket for", address);
        if (connect(s, (struct sockaddr *)&su, sizeof su) != 0) { rlay__sockerr(c, "cannot connect to", address); close(s); return c->err; }
        rlay__on_open(c, s, 0);
        return c->err;
    }
#endif
    {
        struct addrinfo *res = rlay__resolve(c, host, port, address), *ai;
        int e = 0;
        if (!res) return c->err;
        for (ai = res; ai; ai = ai->ai_next) {
            s = socket(ai->ai_family, SOCK_STREAM, 0);
            if (s == RLAY__NOSOCK) { e = rlay__errno(); continue; }
            rlay__nonblock(s);
            if (connect(s, ai->ai_addr, (socklen_t)ai->ai_addrlen) == 0) { freeaddrinfo(res); rlay__on_open(c, s, 1); return c->err; }
            e = rlay__errno();
            if (RLAY__EINPROGRESS(e)) { freeaddrinfo(res); c->fd = s; c->phase = RLAY__P_CONNECTING; return 0; }
            rlay__closesock(s);
        }
        freeaddrinfo(res);
        return rlay__err(c, RLAY_E_IO, "cannot connect to %.200s: %s", address, strerror(e));
    }
}

/* ======================================================================================== */
/* Session (env side). */

static void rlay__reset_writers(rlay_ctx *c) {
    rlay__w_reset(c->w_obs); rlay__w_reset(c->w_info); rlay__w_reset(c->w_val);
}
/* The SDK answers some commands itself (RESET_NEEDED, INVALID_ACTION, NOT_SUPPORTED). */
static int rlay__auto_reply(rlay_ctx *c, int code, const char *msg) {
    if (rlay__send_error(c, code, 0, NULL, msg)) return -1;
    c->state = RLAY__S_IDLE;
    rlay__rx_consume(c);
    return 0;
}
/* RESET's seed and reset_mask, per sub-env (section 10): nil, an int s (sub-env i gets s + i) or
   an array of num_envs int/nil; options["reset_mask"] a bool (num_envs,) tensor. */
static int rlay__reset_args(rlay_ctx *c, const rlay_value *seed, const rlay_value *options) {
    uint32_t n = c->nenv, i;
    const rlay_value *m;
    char d[200];
    memset(c->b_seeded, 0, n);
    memset(c->b_seeds, 0, n * sizeof *c->b_seeds);
    memset(c->b_mask, 1, n);
    if (seed->type == RLAY_T_ARRAY) {
        if (n == 1) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed is an array, but num_envs is 1");
        if (seed->len != n) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed is an array of %u seeds; expected one per sub-env (%u)", seed->len, n);
        for (i = 0; i < n; i++) {
            const rlay_value *s = &seed->v.items[i];
            if (s->type == RLAY_T_NIL) continue;
            if (s->neg) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed[%u] must be >= 0, got %lld", i, (long long)s->v.i);
            c->b_seeded[i] = 1; c->b_seeds[i] = s->v.u;
        }
    } else if (seed->type == RLAY_T_INT) {
        if (seed->neg) return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed must be >= 0, got %lld", (long long)seed->v.i);
        if (seed->v.u > UINT64_MAX - (n - 1))
            return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.seed %llu: the seed of sub-env %u (seed + %u) would exceed 2^64 - 1",
                             (unsigned long long)seed->v.u, n - 1, n - 1);
        for (i = 0; i < n; i++) { c->b_seeded[i] = 1; c->b_seeds[i] = seed->v.u + i; }
    }
    m = n > 1 ? rlay_map_get(options, "reset_mask") : NULL;
    if (m) {
        if (m->type != RLAY_T_TENSOR || m->v.t->dtype != RLAY_DT_BOOL || m->v.t->ndim != 1 || m->v.t->shape[0] != n)
            return rlay__err(c, RLAY_E_BAD_FIELD, "RESET.options.reset_mask must be a bool tensor of shape (%u,), got %s", n,
                             rlay__describe(m, d, sizeof d));
        memcpy(c->b_mask, m->v.t->data, n);
    }
    return 0;
}
#if RLAY__SHM
/* Section 16.3: the checks on the agent's offer, in the spec's order; 1 if the region is
   usable (mapped at c->shm.base), else 0 with the first failure in `why`. */
static int rlay__shm_check(rlay_ctx *c, const rlay_value *size, char *why, size_t wn) {
    static const char *const names[2] = {"a2e", "e2a"};
    unsigned char h[384];
    uint64_t sz, off[2], cap[2];
    struct stat st;
    void *base;
    int i;
    if (c->shm.nfds != 1) {
        if (c->shm.nfds == 0) snprintf(why, wn, "no file descriptor arrived with the SHM offer (SCM_RIGHTS)");
        else snprintf(why, wn, "%d file descriptors arrived with the SHM offer; exactly one is expected", c->shm.nfds);
        return 0;
    }
    if (size->neg || size->v.u < RLAY__SHM_HEADER) {
        snprintf(why, wn, "the offered size %s%llu is below 4096 bytes", size->neg ? "-" : "",
                 size->neg ? (unsigned long long)(0 - size->v.u) : (unsigned long long)size->v.u);
        return 0;
    }
    sz = size->v.u;
    if (sz > c->shm.max_size || sz > (uint64_t)((size_t)-1)) {
        snprintf(why, wn, "the offered size %llu is above this side's max_shm_size %llu (rlay_set_max_shm_size)",
                 (unsigned long long)sz, (unsigned long long)c->shm.max_size);
        return 0;
    }
    if (fstat(c->shm.rxfd, &st) != 0) { snprintf(why, wn, "fstat of the region's descriptor failed: %s", strerror(errno)); return 0; }
    if (st.st_size < 0 || (uint64_t)st.st_size != sz) {
        snprintf(why, wn, "the descriptor's size (fstat) is %lld bytes, the offer says %llu", (long long)st.st_size, (unsigned long long)sz);
        return 0;
    }
#ifdef __linux__
    {   /* a region the agent could still shrink would make a later access fault (SIGBUS) */
        int seals = fcntl(c->shm.rxfd, F_GET_SEALS);
        if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
            snprintf(why, wn, "the region is not sealed against shrinking (F_SEAL_SHRINK%s%s): use a memfd sealed as section 16.1 says",
                     seals < 0 ? "; F_GET_SEALS: " : "", seals < 0 ? strerror(errno) : "");
            return 0;
        }
    }
#endif
    base = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, c->shm.rxfd, 0);
    if (base == MAP_FAILED) { snprintf(why, wn, "mmap of the %llu-byte region failed: %s", (unsigned long long)sz, strerror(errno)); return 0; }
    c->shm.base = (unsigned char *)base; c->shm.size = (size_t)sz;
    memcpy(h, base, sizeof h);   /* read once; never re-read after the checks */
    if (memcmp(h, "rlay-shm", 8) != 0) {
        snprintf(why, wn, "the region's magic is %02x %02x %02x %02x %02x %02x %02x %02x, not \"rlay-shm\"", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
        return 0;
    }
    if (rlay__rd32le(h + 8) != 1) { snprintf(why, wn, "the region's layout is %u; this side knows layout 1", rlay__rd32le(h + 8)); return 0; }
    if (rlay__rd32le(h + 12) != RLAY__SHM_HEADER) { snprintf(why, wn, "the region's header_size is %u, not 4096", rlay__rd32le(h + 12)); return 0; }
    if (rlay__rd_le(h + 16, 8) != sz) {
        snprintf(why, wn, "the region's region_size is %llu, the offer says %llu", (unsigned long long)rlay__rd_le(h + 16, 8), (unsigned long long)sz);
        return 0;
    }
    for (i = 0; i < 2; i++) {
        off[i] = rlay__rd_le(h + 24 + 16 * i, 8); cap[i] = rlay__rd_le(h + 32 + 16 * i, 8);
        if (off[i] < RLAY__SHM_HEADER || cap[i] > sz || off[i] > sz - cap[i]) {   /* no overflow: cap <= sz first */
            snprintf(why, wn, "the %s data area (offset %llu, capacity %llu) does not lie inside the region's bytes 4096..%llu",
                     names[i], (unsigned long long)off[i], (unsigned long long)cap[i], (unsigned long long)sz);
            return 0;
        }
        if (cap[i] < 4096) { snprintf(why, wn, "the %s data area's capacity %llu is below 4096", names[i], (unsigned long long)cap[i]); return 0; }
        if (off[i] % 64) { snprintf(why, wn, "the %s data area's offset %llu is not a multiple of 64", names[i], (unsigned long long)off[i]); return 0; }
    }
    if (off[0] < off[1] + cap[1] && off[1] < off[0] + cap[0]) {
        snprintf(why, wn, "the two data areas overlap (a2e %llu+%llu, e2a %llu+%llu)", (unsigned long long)off[0],
                 (unsigned long long)cap[0], (unsigned long long)off[1], (unsigned long long)cap[1]);
        return 0;
    }
    for (i = 0; i < 2; i++) {
        const unsigned char *cb = h + (i ? RLAY__SHM_E2A : RLAY__SHM_A2E);
        if (rlay__rd_le(cb + RLAY__SHM_SEQ, 8) || rlay__rd_le(cb + RLAY__SHM_ACK, 8) || rlay__rd_le(cb + RLAY__SHM_SLEEPING, 8)) {
            snprintf(why, wn, "the %s control block does not start empty (seq, ack and sleeping must be 0)", names[i]);
            return 0;
        }
    }
    c->shm.a2e_off = off[0]; c->shm.a2e_cap = cap[0]; c->shm.e2a_off = off[1]; c->shm.e2a_cap = cap[1];
    return 1;
}
/* The agent's SHM offer (16.1): check it, answer on the socket, and switch (or fall back). A
   refusal is no error: the session goes on over the socket; rlay_shm_status() says why. */
static int rlay__shm_answer(rlay_ctx *c, const rlay_value *size) {
    char why[160];
    rlay_w *b = c->w_body;
    int ok;
    why[0] = 0;
    ok = rlay__shm_check(c, size, why, sizeof why);
    if (c->shm.rxfd >= 0) { close(c->shm.rxfd); c->shm.rxfd = -1; }   /* the mapping keeps the memory */
    if (!ok) {
        rlay__shm_unmap(c);
        snprintf(c->shm.status, sizeof c->shm.status, "refused: %s", why);
    }
    rlay__w_reset(b);
    rlay__e_map(b, 2);
    rlay__e_str(b, "accepted"); rlay__e_bool(b, ok);
    rlay__e_str(b, "reason"); if (ok) rlay__e_nil(b); else rlay__e_text(b, why);
    c->niov = 0;
    if (rlay__frame(c, RLAY_SHM, b) || rlay__send(c)) return -1;   /* the answer itself travels on the socket */
    c->state = RLAY__S_IDLE;
    c->shm.on = ok; c->shm.sent = c->shm.got = 0; c->shm.sockwait = c->shm.eof = 0; c->shm.readable = 1;
    rlay__rx_consume(c);
    return 0;
}
#endif
/* Acts on a complete frame. 1: *cmd is for the user; 0: handled; -1: session over. */
static int rlay__on_frame(rlay_ctx *c, rlay_cmd *cmd) {
    const rlay_value *f[8];
    int kind = c->rkind;
    if (rlay__rx_message(c, 0, f)) return -1;
    memset(cmd, 0, sizeof *cmd);
    cmd->kind = kind;
    cmd->seeded = c->b_seeded; cmd->seeds = c->b_seeds; cmd->reset_mask = c->b_mask; cmd->autoreset = c->b_ended;
    switch (kind) {
    case RLAY_ERROR: {   /* the state table only lets a fatal one through: it is the peer's error */
        int code = (int)f[0]->v.u;
        rlay__err(c, code, "the agent side sent a fatal ERROR %s: %.*s", rlay_error_name(code),
                  (int)(f[1]->len > 400 ? 400 : f[1]->len), f[1]->v.s);
        c->err_from_peer = 1;
        return -1; }
    case RLAY_HELLO: {
        const rlay_value *shm = rlay_map_get(f[5], "shm");
        /* section 16.1: used only if both HELLOs carry "shm": 1 (another value: ignored) */
        c->shm.use = c->shm.announced && shm && shm->type == RLAY_T_INT && !shm->neg && shm->v.u == 1;
        if (c->shm.announced && !c->shm.use)
            snprintf(c->shm.status, sizeof c->shm.status, "unused: the agent side did not announce \"shm\": 1");
        c->niov = 0;
        if (c->state == RLAY__S_AUTH) {   /* section 7.1: our proof now, ENV_INFO once the agent's matched */
            if (rlay__push_iov(c, c->auth_frame, sizeof c->auth_frame) || rlay__send(c)) return -1;
            rlay__rx_consume(c);
            return 0;
        } }
        /* fall through */
    case RLAY_AUTH:
        c->niov = 0;
        if (rlay__push_iov(c, c->envinfo, c->envinfo_len) || rlay__send(c)) return -1;
        c->state = c->shm.use ? RLAY__S_SHM : RLAY__S_IDLE;   /* section 16.1: the agent's offer comes next */
        rlay__rx_consume(c);
        return 0;
#if RLAY__SHM
    case RLAY_SHM:
        return rlay__shm_answer(c, f[0]) ? -1 : 0;
#endif
    case RLAY_RESET:
        if (rlay__reset_args(c, f[0], f[1])) return -1;
        cmd->has_seed = c->b_seeded[0];
        cmd->seed = c->b_seeds[0];
        cmd->options = f[1]->type == RLAY_T_MAP ? f[1] : NULL;
        break;
    case RLAY_STEP: {
        int oob = 0;
        uint32_t n = c->nenv, which = 0;
        char msg[sizeof c->vmsg + 80];
        if ((n == 1 ? rlay__vcheck(c, c->act_sp, f[0], 1, &oob) : rlay__bvcheck(c, c->act_sp, f[0], n, 1, &oob, &which)) < 0) {
            if (n == 1) rlay__err(c, RLAY_E_BAD_VALUE, "the action does not match action_space: %s", c->vmsg);
            else rlay__err(c, RLAY_E_BAD_VALUE, "the action does not match batch_space(action_space, %u): %s", n, c->vmsg);
            return -1;
        }
        if (!c->has_reset)
            return rlay__auto_reply(c, RLAY_E_RESET_NEEDED, c->nenv == 1 ? "step() before the first reset()"
                                    : "step() before every sub-env was reset once (a reset_mask left some out)");
        if (oob) {
            if (n == 1) snprintf(msg, sizeof msg, "the action is outside action_space: %s", c->vmsg);
            else snprintf(msg, sizeof msg, "the action of sub-env %u is outside action_space: %s", which, c->vmsg);
            return rlay__auto_reply(c, RLAY_E_INVALID_ACTION, msg);
        }
        cmd->action = f[0];
        break; }
    case RLAY_MULTI_STEP: {   /* section 18.4: structure, RESET_NEEDED, AGENT_MISMATCH, bounds */
        const rlay_value *acts = f[0];
        uint32_t j, nlive = c->ma_nlive;
        long first_oob = -1;
        char msg[sizeof c->vmsg + 200];
        memset(c->ma_mark, 0, c->ma_n);
        for (j = 0; j < acts->len; j++) {
            const rlay_value *k = &acts->v.items[2 * j];
            long idx = rlay__ma_find(c, k->v.s, k->len);
            int oob = 0;
            if (idx < 0) continue;
            if (rlay__vcheck(c, c->ma_act_sp[idx], &acts->v.items[2 * j + 1], 1, &oob) < 0) {
                rlay__err(c, RLAY_E_BAD_VALUE, "the action of agent '%s' does not match its action space: %s", c->ma_ids[idx], c->vmsg);
                return -1;
            }
            if (oob && first_oob < 0) {
                first_oob = idx;
                snprintf(msg, sizeof msg, "the action of agent '%s' is outside its action space: %s", c->ma_ids[idx], c->vmsg);
            }
        }
        if (!c->has_reset || nlive == 0)
            return rlay__auto_reply(c, RLAY_E_RESET_NEEDED, !c->has_reset ? "MULTI_STEP before the first RESET; call reset() first"
                                    : "MULTI_STEP after every agent left the episode; call reset() first");
        for (j = 0; j < nlive; j++) c->ma_mark[c->ma_live[j]] = 1;
        for (j = 0; j < acts->len; j++) {
            const rlay_value *k = &acts->v.items[2 * j];
            long idx = rlay__ma_find(c, k->v.s, k->len);
            if (idx < 0 || c->ma_mark[idx] != 1) {
                snprintf(msg, sizeof msg, "an action for '%.*s', which %s", (int)(k->len > 60 ? 60 : k->len), k->v.s,
                         idx < 0 ? "is not a possible agent" : "is not live (it left the episode, or has not joined)");
                return rlay__auto_reply(c, RLAY_E_AGENT_MISMATCH, msg);
            }
            c->ma_mark[idx] = 2;
        }
        for (j = 0; j < nlive; j++)
            if (c->ma_mark[c->ma_live[j]] != 2) {
                snprintf(msg, sizeof msg, "no action for the live agent '%s'; every live agent acts in each step", c->ma_ids[c->ma_live[j]]);
                return rlay__auto_reply(c, RLAY_E_AGENT_MISMATCH, msg);
            }
        if (first_oob >= 0) return rlay__auto_reply(c, RLAY_E_INVALID_ACTION, msg);
        cmd->action = acts;
        break; }
    case RLAY_RENDER:
        if (!c->render_mode) return rlay__auto_reply(c, RLAY_E_NOT_SUPPORTED, "this env has no render mode (render_mode is None)");
        break;
    case RLAY_CALL:   /* section 19: the reserved names are the SDK's */
        if (f[0]->len >= 5 && memcmp(f[0]->v.s, "rlay.", 5) == 0) return rlay__attr_call(c, f[0], f[1], f[2]);
        cmd->name = f[0]->v.s; cmd->name_len = f[0]->len; cmd->args = f[1]; cmd->kwargs = f[2];
        break;
    case RLAY_CLOSE:
        break;
    default:
        return -1;   /* the state table admits nothing else from an agent here */
    }
    rlay__reset_writers(c);
    c->pending = 1;
    return 1;
}
/* Section 17.4. A listener stays open until the agent has said HELLO (and, with a token, proven
   it): a connection that fails before that - it ends, breaks, stays silent past the handshake
   timeout, sends garbage, an oversized or a wrong HELLO, a wrong proof - was no session (a
   probe, a port scanner, a squatter, an impostor). It is told why (a fatal ERROR, for a protocol
   error) and dropped, and the listener serves the next one. 1 if it did so. */
static int rlay__relisten(rlay_ctx *c) {
    int e = c->err;
    /* the listener is open until the agent is in (HELLO, and its proof with a token) */
    if (c->lfd == RLAY__NOSOCK || c->phase != RLAY__P_OPEN) return 0;
    if (e == RLAY_E_USAGE || e == RLAY_E_NOMEM || e == RLAY_E_INTERNAL) return 0;   /* ours, not the peer's */
    if (e > 0 && c->fd != RLAY__NOSOCK && !c->err_from_peer) {
        c->niov = 0;
        rlay__send_error(c, e, 1, NULL, c->errmsg);
    }
    rlay__close_fd(&c->fd);
    c->ndropped++;
    snprintf(c->dropmsg, sizeof c->dropmsg, "%s: %.400s", rlay_error_name(e), c->errmsg);
    c->err = 0; c->err_from_peer = 0; c->errmsg[0] = 0;
    c->phase = RLAY__P_LISTEN; c->state = RLAY__S_HELLO; c->niov = 0; c->rhave = 0; c->rneed = 0;
    return 1;
}
/* recv() into the receive buffer; in state shm with room for the offer's descriptor (16.1):
   every descriptor that arrives is counted, the first kept, the others closed. */
static long rlay__recv(rlay_ctx *c) {
#if RLAY__SHM
    if (c->state == RLAY__S_SHM) {
        union { struct cmsghdr h; unsigned char b[CMSG_SPACE(4 * sizeof(int))]; } u;
        struct iovec v;
        struct msghdr m;
        struct cmsghdr *cm;
        long n;
        v.iov_base = c->rbuf + c->rhave; v.iov_len = c->rcap - c->rhave;
        memset(&m, 0, sizeof m);
        m.msg_iov = &v; m.msg_iovlen = 1; m.msg_control = u.b; m.msg_controllen = sizeof u.b;
        n = (long)recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
        if (n < 0) return n;
        for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
            size_t k, nfd;
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (k = 0; k < nfd; k++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
                if (c->shm.rxfd < 0) { c->shm.rxfd = fd; fcntl(fd, F_SETFD, FD_CLOEXEC); }
                else close(fd);
                c->shm.nfds++;
            }
        }
        if (m.msg_flags & MSG_CTRUNC) c->shm.nfds += 2;   /* more than fitted: the kernel dropped them */
        return n;
    }
#endif
    return (long)recv(c->fd, (char *)c->rbuf + c->rhave, c->rcap - c->rhave, 0);
}
#if RLAY__SHM
/* Section 16.4/16.5, the env side's reading once the region is in use (state idle): wake bytes
   on the socket are dropped; the a2e channel's next frame is copied out of the region into the
   receive buffer (header first: checked before anything is allocated for the rest), acked, and
   then decoded like a socket frame; a frame announced with len 2^64-1 is read from the socket;
   any other frame on the socket must be a fatal ERROR sent out of turn. Never blocks. */
static int rlay__shm_progress(rlay_ctx *c, rlay_cmd *cmd) {
    rlay__au64 *seqp = rlay__shm_word(c, RLAY__SHM_A2E, RLAY__SHM_SEQ);
    for (;;) {
        long n;
        int r;
        if (c->err) return -1;
        if (c->rhave && c->rbuf[0] == 0) {   /* wake bytes: hints only (16.5) */
            size_t k = 0;
            while (k < c->rhave && c->rbuf[k] == 0) k++;
            memmove(c->rbuf, c->rbuf + k, c->rhave - k);
            c->rhave -= k;
            continue;
        }
        if (c->rhave && c->rbuf[0] != 0x52) {
            rlay__err(c, RLAY_E_BAD_MAGIC, "shared memory is in use, and the socket carried byte %02x: neither a wake byte (00) "
                      "nor the start of a frame (52)", c->rbuf[0]);
            return -1;
        }
        if (!c->shm.sockwait) {   /* seq before socket bytes (16.5): a frame there was published before them */
            uint64_t seq = RLAY__LOAD(seqp, acquire);
            if (seq == c->shm.got + 1) {
                uint64_t len = RLAY__LOAD(rlay__shm_word(c, RLAY__SHM_A2E, RLAY__SHM_LEN), relaxed);
                if (len == RLAY__SHM_ON_SOCKET) { c->shm.sockwait = 1; continue; }
                {   /* socket bytes we hold (a fatal ERROR out of turn under way) stay behind this frame */
                    size_t keep = c->rhave;
                    if (len < 12 || len > c->shm.a2e_cap) {
                        rlay__err(c, RLAY_E_BAD_HEADER, "shared memory: frame %llu has length %llu, outside 12..%llu (the channel's capacity)",
                                  (unsigned long long)seq, (unsigned long long)len, (unsigned long long)c->shm.a2e_cap);
                        return -1;
                    }
                    /* copy out, then check the copy: the peer can write to the region at any time (16.4);
                       the header first, so that nothing is allocated for a frame it refuses */
                    if (rlay__rx_reserve(c, keep + 12)) return -1;
                    if (keep) memmove(c->rbuf + 12, c->rbuf, keep);
                    memcpy(c->rbuf, c->shm.base + c->shm.a2e_off, 12);
                    c->rhave = 12 + keep;
                    if (rlay__rx_frame(c) < 0) return -1;
                    /* Spec gap (16.4 says nothing of it): a len that is not the frame's own size
                       (12 + data_len + body_len) would leave bytes over or wanting; we call it a
                       broken channel, BAD_HEADER, like a len out of range. */
                    if (c->rneed != len) {
                        rlay__err(c, RLAY_E_BAD_HEADER, "shared memory: frame %llu has length %llu, but its header says %lu bytes",
                                  (unsigned long long)seq, (unsigned long long)len, (unsigned long)c->rneed);
                        return -1;
                    }
                    if (rlay__rx_reserve(c, (size_t)len + keep)) return -1;
                    if (keep) memmove(c->rbuf + len, c->rbuf + 12, keep);
                    memcpy(c->rbuf + 12, c->shm.base + c->shm.a2e_off + 12, (size_t)len - 12);
                    c->rhave = (size_t)len + keep;
                    c->shm.got++;
                    RLAY__STORE(rlay__shm_word(c, RLAY__SHM_A2E, RLAY__SHM_ACK), c->shm.got, release);   /* before any reply */
                    r = rlay__on_frame(c, cmd);
                    if (r != 0) return r;
                    continue;
                }
            } else if (seq != c->shm.got) {
                rlay__err(c, RLAY_E_BAD_HEADER, "shared-memory sequence jumped from %llu to %llu", (unsigned long long)c->shm.got,
                          (unsigned long long)seq);
                return -1;
            }
        }
        if (c->rhave) {   /* a frame on the socket: announced (sockwait), or found while seq == got */
            r = rlay__rx_frame(c);
            if (r < 0) return -1;
            if (r == 1) {
                if (c->shm.sockwait) {   /* the frame the region announced (16.5) */
                    c->shm.sockwait = 0;
                    c->shm.got++;
                    RLAY__STORE(rlay__shm_word(c, RLAY__SHM_A2E, RLAY__SHM_ACK), c->shm.got, release);
                } else if (c->rkind != RLAY_ERROR) {   /* 16.5 lists what may come; it names no code: ours */
                    rlay__err(c, RLAY_E_UNEXPECTED_MESSAGE, "shared memory is in use, and a %s frame arrived on the socket without "
                              "being announced in the region (only a fatal ERROR may come out of turn, section 16.5)",
                              rlay__kind_name(c->rkind));
                    return -1;
                }
                r = rlay__on_frame(c, cmd);
                if (r != 0) return r;
                continue;
            }
        }
        if (c->shm.eof) { rlay__rx_eof(c); rlay__end(c); return -1; }
        /* The socket only when poll() said so (or a caller that never waits, timeout 0, asks):
           a step whose command arrives while we spin costs no system call at all. */
        if (!c->shm.readable) return 0;
        if (c->rcap - c->rhave < 4096 && rlay__rx_reserve(c, c->rhave + 65536)) return -1;
        {
            size_t room = c->rcap - c->rhave;
            n = rlay__recv(c);
            if (n > 0 && (size_t)n < room) c->shm.readable = 0;   /* a short read drained the socket */
        }
        if (n > 0) { c->rhave += (size_t)n; continue; }
        if (n == 0) { c->shm.eof = 1; continue; }   /* the region once more first: a frame published before the close (16.5) */
        r = errno;
        if (RLAY__EAGAIN(r)) { c->shm.readable = 0; return 0; }
        if (r == EINTR) continue;
        rlay__err(c, RLAY_E_IO, "receiving failed: %s", strerror(r));
        return -1;
    }
}
/* Section 16.6: wait up to wait_ms (-1: no limit) for the agent's next frame: spin on the a2e
   seq for up to spin_us, then announce sleeping and block in poll() on the socket until a wake
   byte, a socket frame or end of stream. Spinning also ends at the deadline, so a loop-style
   caller is never held longer than it asked. The spin adapts (16.6 leaves its length to each
   side): after 4 spins in a row that ended asleep (an agent slower than the spin, or a machine
   with more runnable processes than cores, where spinning only takes the CPU the agent needs)
   it sleeps at once, except every 16th wait, which spins in full to notice when spinning
   pays again; one spin that catches a frame restores it. */
static void rlay__shm_wait(rlay_ctx *c, int wait_ms) {
    rlay__au64 *seq = rlay__shm_word(c, RLAY__SHM_A2E, RLAY__SHM_SEQ), *sleeping = rlay__shm_word(c, RLAY__SHM_A2E, RLAY__SHM_SLEEPING);
    /* the region too while part of an out-of-turn frame is in: the command it may still hold needs
       our sleeping flag to be woken; only a frame announced on the socket is waited for there alone */
    int region = !c->shm.sockwait && !c->shm.eof;
    if (region) {
        long long t0 = rlay__now_us(), spin = c->shm.spin_us, spent = 0;
        if (c->shm.misses >= 4 && c->shm.waits++ % 16 != 0) spin = 0;
        if (wait_ms >= 0 && spin > (long long)wait_ms * 1000) spin = (long long)wait_ms * 1000;
        for (;;) {
            if (RLAY__LOAD(seq, acquire) != c->shm.got) { c->shm.misses = 0; return; }
            if (spent >= spin) break;
            RLAY__RELAX();
            spent = rlay__now_us() - t0;
        }
        if (spin > 0) c->shm.misses++;
        if (wait_ms >= 0) {
            wait_ms -= (int)((spent + 999) / 1000);
            if (wait_ms <= 0) return;
        }
        RLAY__STORE(sleeping, 1, relaxed);
        RLAY__FENCE();   /* Dekker (16.6): our sleeping store, then their seq */
        if (RLAY__LOAD(seq, acquire) != c->shm.got) { RLAY__STORE(sleeping, 0, relaxed); return; }
    }
    if (rlay__wait(c->fd, POLLIN, wait_ms) != 0) c->shm.readable = 1;   /* bytes, end of stream, or EINTR */
    if (region) RLAY__STORE(sleeping, 0, relaxed);
}
#endif
/* Takes every connection waiting in the kernel's backlog into the pool; when it is full the
   oldest is dropped. Connections past their handshake deadline are dropped. */
static void rlay__pool_fill(rlay_ctx *c) {
    long now = rlay__now_ms();
    int i, k;
    for (i = k = 0; i < c->npend; i++) {
        if (c->handshake_ms > 0 && now - c->pend_at[i] >= c->handshake_ms) { rlay__closesock(c->pend[i]); continue; }
        c->pend[k] = c->pend[i]; c->pend_at[k++] = c->pend_at[i];
    }
    c->npend = k;
    for (;;) {
        rlay__sock s = accept(c->lfd, NULL, NULL);
        if (s == RLAY__NOSOCK) {
            int e = rlay__errno();
            if (e == EINTR || e == ECONNABORTED) continue;
            return;   /* EAGAIN: none left; EMFILE...: the pool's oldest go first, below */
        }
        rlay__nonblock(s);
        if (c->npend == RLAY_MAX_PENDING) {
            rlay__closesock(c->pend[0]);
            memmove(c->pend, c->pend + 1, sizeof c->pend[0] * (RLAY_MAX_PENDING - 1));
            memmove(c->pend_at, c->pend_at + 1, sizeof c->pend_at[0] * (RLAY_MAX_PENDING - 1));
            c->npend--;
        }
        c->pend[c->npend] = s; c->pend_at[c->npend++] = now;
    }
}
/* What the first bytes of pooled connection i say: 3 its whole first frame (a HELLO of at most
   64 KiB) is there, 2 it is not rlay or it ended (handled at once), 1 part of a frame, 0 nothing. */
static int rlay__pool_grade(rlay_ctx *c, int i) {
    unsigned char h[12];
    long n;
#ifdef _WIN32
    u_long avail = 0;
    n = (long)recv(c->pend[i], (char *)h, 12, MSG_PEEK);
#else
    int avail = 0;
    n = (long)recv(c->pend[i], (char *)h, 12, MSG_PEEK | MSG_DONTWAIT);
#endif
    if (n < 0) return RLAY__EAGAIN(rlay__errno()) ? 0 : 2;
    if (n == 0 || (n >= 1 && h[0] != 'R') || (n >= 2 && h[1] != 'L')) return 2;
    if (n < 12) return 1;
    {
        uint64_t size = 12 + (uint64_t)rlay__rd32le(h + 4) + rlay__rd32le(h + 8);
        if (size > 12 + RLAY_MAX_HANDSHAKE_FRAME_SIZE) return 2;   /* refused on its header */
#ifdef _WIN32
        if (ioctlsocket(c->pend[i], FIONREAD, &avail) != 0) return 1;
#else
        if (ioctl(c->pend[i], FIONREAD, &avail) != 0) return 1;
#endif
        return (uint64_t)avail >= size ? 3 : 1;
    }
}
/* The pooled connection to serve next: a whole HELLO first, then one to turn away at once, then
   (only with nothing better) one that has sent part of a frame or, after 100 ms, nothing (an
   agent that waits for our HELLO). -1 if none; with grade >= 3 only: a whole HELLO or -1. */
static int rlay__pool_pick(rlay_ctx *c, int min_grade) {
    long now = rlay__now_ms();
    int i, best = -1, best_grade = 0;
    for (i = 0; i < c->npend; i++) {
        int g = rlay__pool_grade(c, i);
        if (g == 0 && now - c->pend_at[i] >= 100) g = 1;
        if (g > best_grade) { best = i; best_grade = g; }
        if (g == 3) break;
    }
    return best_grade >= min_grade ? best : -1;
}
static rlay__sock rlay__pool_take(rlay_ctx *c, int i, long *at) {
    rlay__sock s = c->pend[i];
    *at = c->pend_at[i];
    memmove(c->pend + i, c->pend + i + 1, sizeof c->pend[0] * (size_t)(c->npend - i - 1));
    memmove(c->pend_at + i, c->pend_at + i + 1, sizeof c->pend_at[0] * (size_t)(c->npend - i - 1));
    c->npend--;
    return s;
}
/* One step of progress without blocking. 1: command ready; 0: nothing now; -1: over. */
static int rlay__progress(rlay_ctx *c, rlay_cmd *cmd) {
    for (;;) {
        if (c->err) return -1;
        switch (c->phase) {
        case RLAY__P_NONE:
            rlay__err(c, RLAY_E_USAGE, "rlay_poll: call rlay_listen or rlay_connect first");
            return -1;
        case RLAY__P_DONE:
            return -1;
        case RLAY__P_LISTEN: {
            long at;
            int i;
            rlay__sock s;
            rlay__pool_fill(c);
            if ((i = rlay__pool_pick(c, 1)) < 0) return 0;
            s = rlay__pool_take(c, i, &at);
            rlay__on_open(c, s, strncmp(c->address, "tcp:", 4) == 0);
            c->open_at = at;
            if (c->handshake_ms > 0) c->hs_deadline = at + c->handshake_ms;   /* from its connect */
            if (c->err && rlay__relisten(c)) continue;
            continue; }
        case RLAY__P_CONNECTING: {
            int e = 0;
            socklen_t el = sizeof e;
            if (rlay__wait(c->fd, POLLOUT, 0) <= 0) return 0;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (char *)&e, &el) != 0) e = rlay__errno();
            if (e) { rlay__err(c, RLAY_E_IO, "cannot connect to %.200s: %s", c->address, strerror(e)); return -1; }
            { rlay__sock s = c->fd; c->fd = RLAY__NOSOCK; rlay__on_open(c, s, 1); }
            continue; }
        default: {
            long n;
            int r;
#if RLAY__SHM
            if (c->shm.on) return rlay__shm_progress(c, cmd);
#endif
            r = rlay__rx_frame(c);
            if (r < 0) { if (rlay__relisten(c)) continue; return -1; }
            if (r == 1) {
                r = rlay__on_frame(c, cmd);
                if (c->err && rlay__relisten(c)) continue;
                if (c->lfd != RLAY__NOSOCK && c->state != RLAY__S_HELLO && c->state != RLAY__S_AUTH) {
                    rlay__close_fd(&c->lfd);   /* one session per context: the agent is in */
                    rlay__pool_close(c);
                    if (c->upath[0]) { unlink(c->upath); c->upath[0] = 0; }
                }
                if (r != 0) return r;
                continue;
            }
            if (c->rcap - c->rhave < 4096 && rlay__rx_reserve(c, c->rhave + 65536)) return -1;
            n = rlay__recv(c);
            if (n > 0) { c->rhave += (size_t)n; continue; }
            if (n == 0 && c->rhave == 0 && rlay__relisten(c)) continue;
            if (n == 0) { rlay__rx_eof(c); if (rlay__relisten(c)) continue; rlay__end(c); return -1; }
            r = rlay__errno();
            if (RLAY__EAGAIN(r)) {
                if ((c->state == RLAY__S_HELLO || c->state == RLAY__S_AUTH) && c->hs_deadline && rlay__now_ms() >= c->hs_deadline) {
                    rlay__err(c, RLAY_E_TIMEOUT, "the agent side sent no HELLO within %d ms of connecting "
                              "(rlay_set_handshake_timeout)", c->handshake_ms);
                    if (rlay__relisten(c)) continue;
                    return -1;
                }
                if (c->lfd != RLAY__NOSOCK) {
                    /* section 17.4: newcomers wait in the pool (the listener never stays readable);
                       while this one has not finished its HELLO for 200 ms and another's is all
                       there, serve that one (a slow peer cannot hold the listener) */
                    rlay__pool_fill(c);
                    if (rlay__now_ms() - c->open_at >= 200 && rlay__pool_pick(c, 3) >= 0) {
                        rlay__err(c, RLAY_E_TIMEOUT, "another agent's HELLO arrived whole first");
                        if (rlay__relisten(c)) continue;
                    }
                }
                return 0;
            }
            if (r == EINTR) continue;
            rlay__err(c, RLAY_E_IO, "receiving failed: %s", strerror(r));
            if (rlay__relisten(c)) continue;
            return -1; }
        }
    }
}
static long rlay__now_ms(void) {
#ifdef _WIN32
    return (long)GetTickCount();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}
int rlay_poll(rlay_ctx *c, rlay_cmd *cmd, int timeout_ms) {
    long deadline;
    if (!c || !cmd) return -1;
    if (c->err) { rlay__end(c); return -1; }
    if (c->pending) return 0;
#if RLAY__SHM
    if (timeout_ms == 0) c->shm.readable = 1;   /* no poll() will tell: look at the socket each call */
#endif
    deadline = rlay__now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int r = rlay__progress(c, cmd), wait;
        if (r != 0) { if (r < 0) rlay__end(c); return r; }
        if (timeout_ms == 0) return 0;
        wait = -1;
        if (timeout_ms > 0) { long left = deadline - rlay__now_ms(); if (left <= 0) return 0; wait = (int)left; }
        if (c->phase == RLAY__P_OPEN && (c->state == RLAY__S_HELLO || c->state == RLAY__S_AUTH) && c->hs_deadline) {   /* wake at the deadline */
            long left = c->hs_deadline - rlay__now_ms();
            if (left < 0) left = 0;
            if (wait < 0 || left < wait) wait = (int)left;
        }
#if RLAY__SHM
        if (c->phase == RLAY__P_OPEN && c->shm.on) { rlay__shm_wait(c, wait); continue; }
#endif
        if (c->lfd != RLAY__NOSOCK && (c->phase == RLAY__P_LISTEN || c->phase == RLAY__P_OPEN)) {
            /* listening: the listener, the pool and the connection being greeted (17.4) */
#ifdef _WIN32
            WSAPOLLFD p[RLAY_MAX_PENDING + 2];
#else
            struct pollfd p[RLAY_MAX_PENDING + 2];
#endif
            int i, np = 0, cap = c->phase == RLAY__P_OPEN ? 50 : c->npend ? 100 : -1;
            /* greeting one: look at the pool every 50 ms for a whole HELLO (never spin on a pooled
               peer's partial bytes); listening: a silent pooled one becomes servable at 100 ms */
            if (cap >= 0 && (wait < 0 || wait > cap)) wait = cap;
            p[np].fd = c->lfd; p[np].events = POLLIN; p[np++].revents = 0;
            if (c->phase == RLAY__P_OPEN) { p[np].fd = c->fd; p[np].events = POLLIN; p[np++].revents = 0; }
            else for (i = 0; i < c->npend; i++) { p[np].fd = c->pend[i]; p[np].events = POLLIN; p[np++].revents = 0; }
            rlay__poll(p, (unsigned)np, wait);
        }
        else rlay__wait(c->fd, c->phase == RLAY__P_CONNECTING ? POLLOUT : POLLIN, wait);
    }
}

/* ---- replies ---- */
static int rlay__reply_check(rlay_ctx *c, int state, const char *fn) {
    if (!c) return RLAY_E_NOMEM;
    if (c->err) return c->err;
    if (!c->pending || c->state != state) {
        rlay__err(c, RLAY_E_USAGE, "%s: no %s command is waiting for this reply (state %s)", fn,
                  rlay__state_names[state], rlay__state_names[c->state]);
        rlay__end(c);
        return c->err;
    }
    if (c->ma_on && (state == RLAY__S_RESET || state == RLAY__S_STEP) && strcmp(fn, "rlay_reply_agents") != 0) {
        rlay__err(c, RLAY_E_USAGE, "%s: this is a multi-agent session (section 18): answer with rlay_reply_agents", fn);
        rlay__end(c);
        return c->err;
    }
    return 0;
}
static int rlay__finish(rlay_ctx *c, int kind, int next) {
    if (!c->err && !rlay__frame(c, kind, c->w_body) && !rlay__send_frame(c)) {
        c->state = next;
        c->pending = 0;
        rlay__rx_consume(c);
        rlay__reset_writers(c);
        if (next == RLAY__S_CLOSED) rlay__end(c);
        return 0;
    }
    rlay__end(c);
    return c->err;
}
/* The observation must be one value matching observation_space (structure, not bounds). */
static int rlay__obs_ok(rlay_ctx *c, const char *fn) {
    const rlay_value *v;
    int oob = 0;
    char what[64];
    snprintf(what, sizeof what, "%s: the observation (rlay_obs)", fn);
    if (!rlay__w_done(c->w_obs, what) || !rlay__w_done(c->w_info, "the info map (rlay_info)")) return 0;
    if (rlay__decode(c, &c->sdoc, c->w_obs->buf, c->w_obs->len, NULL, 0, 1, &v)) return 0;
    if (c->nenv > 1) {   /* section 10: a value of batch_space(observation_space, n) */
        uint32_t which = 0;
        if (rlay__bvcheck(c, c->obs_sp, v, c->nenv, 0, &oob, &which) < 0) {
            rlay__err(c, RLAY_E_BAD_VALUE, "the observation does not match batch_space(observation_space, %u): %s", c->nenv, c->vmsg);
            return 0;
        }
        return 1;
    }
    if (rlay__vcheck(c, c->obs_sp, v, 0, &oob) < 0) {
        rlay__err(c, RLAY_E_BAD_VALUE, "the observation does not match observation_space: %s", c->vmsg);
        return 0;
    }
    return 1;
}
int rlay_reply_reset(rlay_ctx *c) {
    rlay_w *b;
    uint32_t i;
    if (rlay__reply_check(c, RLAY__S_RESET, "rlay_reply_reset")) return c ? c->err : RLAY_E_NOMEM;
    if (!rlay__obs_ok(c, "rlay_reply_reset")) { rlay__end(c); return c->err; }
    b = c->w_body; rlay__w_reset(b);
    rlay__e_map(b, 2);
    rlay__e_str(b, "obs"); rlay__splice(b, c->w_obs);
    rlay__e_str(b, "info"); rlay__splice(b, c->w_info);
    if (rlay__finish(c, RLAY_RESET_RESULT, RLAY__S_IDLE)) return c->err;
    for (i = 0; i < c->nenv; i++)
        if (c->b_mask[i]) {
            c->b_ended[i] = 0;
            if (!c->b_was_reset[i]) { c->b_was_reset[i] = 1; c->nreset++; }
        }
    c->has_reset = c->nreset == c->nenv;   /* section 10: a partial first reset leaves STEP RESET_NEEDED */
    return 0;
}
int rlay_reply_step(rlay_ctx *c, double reward, int terminated, int truncated) {
    rlay_w *b;
    if (rlay__reply_check(c, RLAY__S_STEP, "rlay_reply_step")) return c ? c->err : RLAY_E_NOMEM;
    if (c->nenv > 1) {
        rlay__err(c, RLAY_E_USAGE, "rlay_reply_step: this context hosts %u sub-envs (rlay_set_num_envs): answer with rlay_reply_step_batch", c->nenv);
        rlay__end(c);
        return c->err;
    }
    if (!rlay__obs_ok(c, "rlay_reply_step")) { rlay__end(c); return c->err; }
    b = c->w_body; rlay__w_reset(b);
    rlay__e_map(b, 5);
    rlay__e_str(b, "obs"); rlay__splice(b, c->w_obs);
    rlay__e_str(b, "reward"); rlay__e_float(b, reward);
    rlay__e_str(b, "terminated"); rlay__e_bool(b, terminated);
    rlay__e_str(b, "truncated"); rlay__e_bool(b, truncated);
    rlay__e_str(b, "info"); rlay__splice(b, c->w_info);
    if (rlay__finish(c, RLAY_STEP_RESULT, RLAY__S_IDLE)) return c->err;
    c->b_ended[0] = terminated || truncated;
    return 0;
}
int rlay_reply_step_batch(rlay_ctx *c, const double *rewards, const unsigned char *terminated, const unsigned char *truncated) {
    rlay_w *b;
    uint32_t n, i;
    if (rlay__reply_check(c, RLAY__S_STEP, "rlay_reply_step_batch")) return c ? c->err : RLAY_E_NOMEM;
    if (!rewards || !terminated || !truncated) {
        rlay__err(c, RLAY_E_USAGE, "rlay_reply_step_batch: the rewards, terminated and truncated arrays must not be NULL");
        rlay__end(c);
        return c->err;
    }
    n = c->nenv;
    if (n == 1) return rlay_reply_step(c, rewards[0], terminated[0] != 0, truncated[0] != 0);   /* section 10: unbatched */
    if (!rlay__obs_ok(c, "rlay_reply_step_batch")) { rlay__end(c); return c->err; }
    for (i = 0; i < n; i++) { c->b_flags[i] = terminated[i] != 0; c->b_flags[n + i] = truncated[i] != 0; }
    /* section 10: a float64 (n,) reward tensor and bool (n,) flag tensors, sent from these arrays */
    b = c->w_body; rlay__w_reset(b);
    rlay__e_map(b, 5);
    rlay__e_str(b, "obs"); rlay__splice(b, c->w_obs);
    rlay__e_str(b, "reward"); rlay__e_tensor(b, RLAY_DT_FLOAT64, 1, &n, rewards, (size_t)n * 8);
    rlay__e_str(b, "terminated"); rlay__e_tensor(b, RLAY_DT_BOOL, 1, &n, c->b_flags, n);
    rlay__e_str(b, "truncated"); rlay__e_tensor(b, RLAY_DT_BOOL, 1, &n, c->b_flags + n, n);
    rlay__e_str(b, "info"); rlay__splice(b, c->w_info);
    if (rlay__finish(c, RLAY_STEP_RESULT, RLAY__S_IDLE)) return c->err;
    for (i = 0; i < n; i++) c->b_ended[i] = (unsigned char)(c->b_flags[i] | c->b_flags[n + i]);
    return 0;
}
/* Section 18.3: MULTI_RESULT, built from the writers and arrays, checked as the agent side will. */
static int rlay__ma_fail(rlay_ctx *c, int code, const char *fmt, ...) RLAY__PRINTF(3, 4);
static int rlay__ma_fail(rlay_ctx *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt); rlay__verr(c, code, fmt, ap); va_end(ap);
    rlay__end(c);
    return c->err;
}
int rlay_reply_agents(rlay_ctx *c, uint32_t n, const char *const *ids, const double *rewards,
                      const unsigned char *terminations, const unsigned char *truncations) {
    const char *fn = "rlay_reply_agents";
    rlay_w *b;
    const rlay_value *root, *obs, *infos;
    uint32_t i, nlive = 0;
    int reset;
    if (!c) return RLAY_E_NOMEM;
    if (c->err) return c->err;
    if (!c->ma_on) return rlay__ma_fail(c, RLAY_E_USAGE, "%s: this is not a multi-agent session (rlay_set_multi_agent)", fn);
    reset = c->state == RLAY__S_RESET;
    if (rlay__reply_check(c, reset ? RLAY__S_RESET : RLAY__S_STEP, fn)) return c->err;
    if (!ids && n) return rlay__ma_fail(c, RLAY_E_USAGE, "%s: ids is NULL", fn);
    if (!reset && (!rewards || !terminations || !truncations))
        return rlay__ma_fail(c, RLAY_E_USAGE, "%s: a step's rewards, terminations and truncations must not be NULL", fn);
    if (n > c->ma_n) return rlay__ma_fail(c, RLAY_E_USAGE, "%s: %u agents, but there are %u possible agents", fn, n, c->ma_n);
    memset(c->ma_mark, 0, c->ma_n);
    for (i = 0; i < n; i++) {
        long idx = ids[i] ? rlay__ma_find(c, ids[i], strlen(ids[i])) : -1;
        if (idx < 0) return rlay__ma_fail(c, RLAY_E_USAGE, "%s: '%.60s' is not a possible agent", fn, ids[i] ? ids[i] : "(null)");
        if (c->ma_mark[idx]) return rlay__ma_fail(c, RLAY_E_USAGE, "%s: agent '%s' is listed twice", fn, ids[i]);
        c->ma_mark[idx] = 1; c->ma_idx[i] = (uint32_t)idx;
    }
    if (!reset)
        for (i = 0; i < c->ma_nlive; i++)
            if (!c->ma_mark[c->ma_live[i]])
                return rlay__ma_fail(c, RLAY_E_USAGE, "%s: no result for '%s', which was live before the step (every live agent "
                                     "gets its observation, reward and flags)", fn, c->ma_ids[c->ma_live[i]]);
    if (!rlay__w_done(c->w_obs, "rlay_reply_agents: the observations (rlay_obs)") ||
        !rlay__w_done(c->w_info, "rlay_reply_agents: the infos (rlay_info)")) { rlay__end(c); return c->err; }
    if (c->w_info->top != 0 && c->w_info->top != 2 * n)
        return rlay__ma_fail(c, RLAY_E_USAGE, "%s: rlay_info holds %u pairs; write nothing or one (id, info map) per agent (%u)", fn,
                             c->w_info->top / 2, n);
    for (i = 0; i < n; i++) if (reset || (!terminations[i] && !truncations[i])) nlive++;
    b = c->w_body; rlay__w_reset(b);
    rlay__e_map(b, 6);
    rlay__e_str(b, "agents"); rlay__e_array(b, nlive);
    for (i = 0; i < n; i++) if (reset || (!terminations[i] && !truncations[i])) rlay__e_str(b, ids[i]);
    rlay__e_str(b, "obs"); rlay__splice(b, c->w_obs);
    rlay__e_str(b, "rewards"); rlay__e_map(b, reset ? 0 : n);
    for (i = 0; !reset && i < n; i++) { rlay__e_str(b, ids[i]); rlay__e_float(b, rewards[i]); }
    rlay__e_str(b, "terminations"); rlay__e_map(b, reset ? 0 : n);
    for (i = 0; !reset && i < n; i++) { rlay__e_str(b, ids[i]); rlay__e_bool(b, terminations[i]); }
    rlay__e_str(b, "truncations"); rlay__e_map(b, reset ? 0 : n);
    for (i = 0; !reset && i < n; i++) { rlay__e_str(b, ids[i]); rlay__e_bool(b, truncations[i]); }
    rlay__e_str(b, "infos");
    if (c->w_info->top == 0) { rlay__e_map(b, n); for (i = 0; i < n; i++) { rlay__e_str(b, ids[i]); rlay__e_map(b, 0); } }
    else rlay__splice(b, c->w_info);
    /* check what is about to go out: obs and infos keyed by ids, in order; each obs in its space */
    if (c->err || rlay__decode(c, &c->sdoc, b->buf, b->len, NULL, 0, 1, &root)) { rlay__end(c); return c->err; }
    obs = &root->v.items[3]; infos = &root->v.items[11];
    if (obs->type != RLAY_T_MAP || obs->len != n)
        return rlay__ma_fail(c, RLAY_E_USAGE, "%s: rlay_obs must hold a map of the %u agents' observations", fn, n);
    for (i = 0; i < n; i++) {
        const rlay_value *k = &obs->v.items[2 * i], *ik = &infos->v.items[2 * i];
        int oob = 0;
        if (!rlay_str_eq(k, ids[i]))
            return rlay__ma_fail(c, RLAY_E_USAGE, "%s: observation %u is keyed '%.*s'; expected '%s' (the order of ids)", fn, i,
                                 (int)(k->len > 60 ? 60 : k->len), k->type == RLAY_T_STR ? k->v.s : "?", ids[i]);
        if (rlay__vcheck(c, c->ma_obs_sp[c->ma_idx[i]], &obs->v.items[2 * i + 1], 0, &oob) < 0)
            return rlay__ma_fail(c, RLAY_E_BAD_VALUE, "%s: the observation of agent '%s' does not match its observation space: %s", fn, ids[i], c->vmsg);
        if (!rlay_str_eq(ik, ids[i]) || infos->v.items[2 * i + 1].type != RLAY_T_MAP)
            return rlay__ma_fail(c, RLAY_E_USAGE, "%s: info %u must be keyed '%s' (the order of ids) and be a map", fn, i, ids[i]);
    }
    if (rlay__finish(c, RLAY_MULTI_RESULT, RLAY__S_IDLE)) return c->err;
    c->ma_nlive = 0;
    for (i = 0; i < n; i++) if (reset || (!terminations[i] && !truncations[i])) c->ma_live[c->ma_nlive++] = c->ma_idx[i];
    if (reset) c->has_reset = 1;
    return 0;
}
void rlay_set_multi_agent(rlay_ctx *c, int on) {
    if (!c || c->err) return;
    if (c->phase != RLAY__P_NONE) { rlay__err(c, RLAY_E_USAGE, "rlay_set_multi_agent: call it before rlay_listen/rlay_connect"); return; }
    c->ma = on != 0;
}
uint32_t rlay_num_agents(const rlay_ctx *c) { return c ? c->ma_nlive : 0; }
const char *rlay_agent(const rlay_ctx *c, uint32_t i) { return c && i < c->ma_nlive ? c->ma_ids[c->ma_live[i]] : NULL; }
const rlay_value *rlay_agent_action(const rlay_cmd *cmd, const char *agent) {
    return cmd && agent && cmd->kind == RLAY_MULTI_STEP ? rlay_map_get(cmd->action, agent) : NULL;
}
static int rlay__reply_value(rlay_ctx *c, int state, int kind, const char *key, const char *fn) {
    rlay_w *b;
    if (rlay__reply_check(c, state, fn)) return c ? c->err : RLAY_E_NOMEM;
    if (c->w_val->top == 0 && c->w_val->depth == 0) rlay_put_nil(c->w_val);   /* nothing written: nil */
    if (!rlay__w_done(c->w_val, fn)) { rlay__end(c); return c->err; }
    if (c->nenv > 1) {   /* section 10: one value per sub-env (a RENDER may answer nil) */
        const unsigned char *p = c->w_val->buf;
        uint64_t len = 0;
        int array = 1;
        if ((p[0] & 0xf0) == 0x90) len = p[0] & 15u;
        else if (p[0] == 0xdc || p[0] == 0xdd) len = rlay__be(p + 1, p[0] == 0xdc ? 2 : 4);
        else array = 0;
        if (!(array && len == c->nenv) && !(kind == RLAY_RENDER_RESULT && p[0] == 0xc0)) {
            rlay__err(c, RLAY_E_BAD_FIELD, "%s: this context hosts %u sub-envs: the %s must be %san array of %u values, one per sub-env (section 10)",
                      fn, c->nenv, key, kind == RLAY_RENDER_RESULT ? "nil or " : "", c->nenv);
            rlay__end(c);
            return c->err;
        }
    }
    b = c->w_body; rlay__w_reset(b);
    rlay__e_map(b, 1);
    rlay__e_str(b, key); rlay__splice(b, c->w_val);
    return rlay__finish(c, kind, RLAY__S_IDLE);
}
int rlay_reply_render(rlay_ctx *c) { return rlay__reply_value(c, RLAY__S_RENDER, RLAY_RENDER_RESULT, "frame", "rlay_reply_render"); }
int rlay_reply_call(rlay_ctx *c) { return rlay__reply_value(c, RLAY__S_CALL, RLAY_CALL_RESULT, "value", "rlay_reply_call"); }
int rlay_reply_close(rlay_ctx *c) {
    if (rlay__reply_check(c, RLAY__S_CLOSE, "rlay_reply_close")) return c ? c->err : RLAY_E_NOMEM;
    rlay__w_reset(c->w_body);
    rlay__e_map(c->w_body, 0);
    return rlay__finish(c, RLAY_CLOSE_RESULT, RLAY__S_CLOSED);
}
static int rlay__verror_reply(rlay_ctx *c, int code, int fatal, const char *type, const char *fmt, va_list ap) {
    char msg[1024];
    int s;
    if (!c) return RLAY_E_NOMEM;
    if (c->err) return c->err;
    s = c->state;
    if (!c->pending || !(s == RLAY__S_RESET || s == RLAY__S_STEP || s == RLAY__S_RENDER || s == RLAY__S_CALL || s == RLAY__S_CLOSE)) {
        rlay__err(c, RLAY_E_USAGE, "rlay_reply_error: no command is waiting for a reply (state %s)", rlay__state_names[s]);
        rlay__end(c);
        return c->err;
    }
    if (code < 1) { rlay__err(c, RLAY_E_USAGE, "rlay_reply_error: %d is not an error code of spec section 11", code); rlay__end(c); return c->err; }
    vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    if (code == RLAY_E_ENV_EXCEPTION && !type) type = "EnvError";
    if (rlay__send_error(c, code, fatal, type, msg)) { rlay__end(c); return c->err; }
    c->pending = 0;
    rlay__rx_consume(c);
    rlay__reset_writers(c);
    c->state = fatal || s == RLAY__S_CLOSE ? RLAY__S_CLOSED : RLAY__S_IDLE;
    if (c->state == RLAY__S_CLOSED) rlay__end(c);
    return 0;
}
int rlay_reply_error(rlay_ctx *c, int code, int fatal, const char *remote_type, const char *fmt, ...) {
    va_list ap; int r;
    va_start(ap, fmt); r = rlay__verror_reply(c, code, fatal, remote_type, fmt, ap); va_end(ap);
    return r;
}
int rlay_reply_default(rlay_ctx *c, const rlay_cmd *cmd) {
    if (!c || !cmd) return RLAY_E_NOMEM;
    if (cmd->kind == RLAY_CLOSE) return rlay_reply_close(c);
    if (cmd->kind == RLAY_CALL)
        return rlay_reply_error(c, RLAY_E_NOT_SUPPORTED, 0, NULL, "this env has no function named '%.*s'",
                                (int)(cmd->name_len > 200 ? 200 : cmd->name_len), cmd->name);
    return rlay_reply_error(c, RLAY_E_NOT_SUPPORTED, 0, NULL, "this env does not support %s", rlay__kind_name(cmd->kind));
}

/* ---- attributes (spec section 19) ---- */
static const char *rlay__vtype(const rlay_value *v) {
    static const char *names[] = {"?", "nil", "bool", "int", "float", "str", "bytes", "array", "map", "tensor"};
    return v->type >= RLAY_T_NIL && v->type <= RLAY_T_TENSOR ? names[v->type] : "?";
}
static int rlay__attr_add(rlay_ctx *c, const char *name, int type, void *ptr, size_t stride, int flags, const char *doc) {
    static const char *std[][2] = {{"time_scale", "float"}, {"target_frame_rate", "int"}, {"quality_level", "int"}, {"action_repeat", "int"}};
    static const char *tnames[] = {"?", "bool", "int", "float"};
    size_t n, k;
    rlay__attr *a;
    if (!c) return RLAY_E_NOMEM;
    if (c->err) return c->err;
    if (c->phase != RLAY__P_NONE) return rlay__err(c, RLAY_E_USAGE, "rlay_attr_*: register attributes before rlay_listen/rlay_connect");
    n = name ? strlen(name) : 0;
    for (k = 0; k < n; k++) {
        char ch = name[k];
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_' || (k > 0 && ((ch >= '0' && ch <= '9') || ch == '.' || ch == '-'));
        if (!ok) break;
    }
    if (n == 0 || n > 64 || k != n)
        return rlay__err(c, RLAY_E_USAGE, "rlay_attr_*: name '%.80s': 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or _ (section 19.1)", name ? name : "");
    if (!ptr) return rlay__err(c, RLAY_E_USAGE, "rlay_attr_*: attribute '%s' needs a pointer to its value", name);
    for (k = 0; k < c->nattr; k++)
        if (strcmp(c->attrs[k].name, name) == 0) return rlay__err(c, RLAY_E_USAGE, "rlay_attr_*: attribute '%s' is registered twice", name);
    for (k = 0; k < sizeof std / sizeof std[0]; k++)
        if (strcmp(std[k][0], name) == 0 && strcmp(std[k][1], tnames[type]) != 0)
            return rlay__err(c, RLAY_E_USAGE, "rlay_attr_*: '%s' is a standard name (section 19.3): its type is %s, not %s", name, std[k][1], tnames[type]);
    if (RLAY__GROW(c, c->attrs, c->attrcap, c->nattr + 1)) return c->err;
    a = &c->attrs[c->nattr];
    memset(a, 0, sizeof *a);
    memcpy(a->name, name, n + 1);
    a->type = type; a->ptr = ptr; a->stride = stride; a->flags = flags;
    a->doc = (char *)malloc(strlen(doc ? doc : "") + 1);
    if (!a->doc) return rlay__err(c, RLAY_E_NOMEM, "out of memory");
    strcpy(a->doc, doc ? doc : "");
    c->nattr++;
    return 0;
}
int rlay_attr_float(rlay_ctx *c, const char *name, double *ptr, size_t stride, double min, double max, int flags, const char *doc) {
    rlay__attr *a;
    if (rlay__attr_add(c, name, RLAY__A_FLOAT, ptr, stride, flags, doc)) return c ? c->err : RLAY_E_NOMEM;
    a = &c->attrs[c->nattr - 1];
    a->fmin = min; a->fmax = max; a->fdef = *ptr;
    if (isnan(min) || isnan(max) || min > max || isnan(*ptr) || *ptr < min || *ptr > max) {
        c->nattr--; free(a->doc);
        return rlay__err(c, RLAY_E_USAGE, "rlay_attr_float: '%s': need min <= value <= max (got %g, %g, %g)", name, min, *ptr, max);
    }
    return 0;
}
int rlay_attr_int(rlay_ctx *c, const char *name, int64_t *ptr, size_t stride, int64_t min, int64_t max, int flags, const char *doc) {
    rlay__attr *a;
    if (rlay__attr_add(c, name, RLAY__A_INT, ptr, stride, flags, doc)) return c ? c->err : RLAY_E_NOMEM;
    a = &c->attrs[c->nattr - 1];
    a->imin = min; a->imax = max; a->idef = *ptr;
    if (min > max || *ptr < min || *ptr > max) {
        c->nattr--; free(a->doc);
        return rlay__err(c, RLAY_E_USAGE, "rlay_attr_int: '%s': need min <= value <= max (got %lld, %lld, %lld)", name,
                         (long long)min, (long long)*ptr, (long long)max);
    }
    return 0;
}
int rlay_attr_bool(rlay_ctx *c, const char *name, int *ptr, size_t stride, int flags, const char *doc) {
    if (rlay__attr_add(c, name, RLAY__A_BOOL, ptr, stride, flags, doc)) return c ? c->err : RLAY_E_NOMEM;
    c->attrs[c->nattr - 1].bdef = *ptr != 0;
    return 0;
}
void rlay_attr_on_set(rlay_ctx *c, void (*fn)(void *ud, rlay_ctx *c, const char *name), void *ud) {
    if (c) { c->attr_hook = fn; c->attr_ud = ud; }
}
static void *rlay__attr_at(const rlay__attr *a, uint32_t i) { return (char *)a->ptr + (size_t)i * a->stride; }
static void rlay__attr_put(rlay_w *w, const rlay__attr *a, uint32_t i) {
    void *p = rlay__attr_at(a, i);
    if (a->type == RLAY__A_FLOAT) rlay_put_float(w, *(double *)p);
    else if (a->type == RLAY__A_INT) rlay_put_int(w, *(int64_t *)p);
    else rlay_put_bool(w, *(int *)p != 0);
}
static void rlay__attr_describe(rlay_w *w, const rlay__attr *a) {   /* section 19.1, canonical order */
    static const char *tnames[] = {"?", "bool", "int", "float"};
    rlay_put_map(w, 7);
    rlay_put_key(w, "type"); rlay_put_str(w, tnames[a->type]);
    rlay_put_key(w, "default");
    if (a->type == RLAY__A_FLOAT) rlay_put_float(w, a->fdef);
    else if (a->type == RLAY__A_INT) rlay_put_int(w, a->idef);
    else rlay_put_bool(w, a->bdef);
    rlay_put_key(w, "min");
    if (a->type == RLAY__A_FLOAT && !isinf(a->fmin)) rlay_put_float(w, a->fmin);
    else if (a->type == RLAY__A_INT && a->imin != INT64_MIN) rlay_put_int(w, a->imin);
    else rlay_put_nil(w);
    rlay_put_key(w, "max");
    if (a->type == RLAY__A_FLOAT && !isinf(a->fmax)) rlay_put_float(w, a->fmax);
    else if (a->type == RLAY__A_INT && a->imax != INT64_MAX) rlay_put_int(w, a->imax);
    else rlay_put_nil(w);
    rlay_put_key(w, "choices"); rlay_put_nil(w);
    rlay_put_key(w, "writable"); rlay_put_bool(w, !(a->flags & RLAY_ATTR_READ_ONLY));
    rlay_put_key(w, "doc"); rlay_put_str(w, a->doc);
}
/* Checks one value against a's type and range; 0 with *out set, or -1 with msg. */
static int rlay__attr_check(const rlay__attr *a, const rlay_value *v, rlay__aval *out, char *msg, size_t cap) {
    if (a->type == RLAY__A_BOOL) {
        if (v->type != RLAY_T_BOOL) { snprintf(msg, cap, "expected a bool, actual %s", rlay__vtype(v)); return -1; }
        out->b = v->v.b;
        return 0;
    }
    if (a->type == RLAY__A_INT) {
        if (v->type != RLAY_T_INT) { snprintf(msg, cap, "expected an int, actual %s", rlay__vtype(v)); return -1; }
        if (!v->neg && v->v.u > (uint64_t)INT64_MAX) { snprintf(msg, cap, "%llu is above its maximum %lld", (unsigned long long)v->v.u, (long long)a->imax); return -1; }
        out->i = v->neg ? v->v.i : (int64_t)v->v.u;
        if (out->i < a->imin) { snprintf(msg, cap, "%lld is below its minimum %lld", (long long)out->i, (long long)a->imin); return -1; }
        if (out->i > a->imax) { snprintf(msg, cap, "%lld is above its maximum %lld", (long long)out->i, (long long)a->imax); return -1; }
        return 0;
    }
    if (v->type == RLAY_T_FLOAT) {
        if (isnan(v->v.f)) { snprintf(msg, cap, "expected a float, actual NaN"); return -1; }
        out->f = v->v.f;
    } else if (v->type == RLAY_T_INT) {   /* an int exact as a float64 */
        double d = v->neg ? (double)v->v.i : (double)v->v.u;
        int exact = v->neg ? (d >= -9223372036854775808.0 && (int64_t)d == v->v.i) : (d < 18446744073709551616.0 && (uint64_t)d == v->v.u);
        if (!exact) { snprintf(msg, cap, "expected a float, actual an int not exact as a float64"); return -1; }
        out->f = d;
    } else {
        snprintf(msg, cap, "expected a float, actual %s", rlay__vtype(v));
        return -1;
    }
    if (out->f < a->fmin) { snprintf(msg, cap, "%.17g is below its minimum %.17g", out->f, a->fmin); return -1; }
    if (out->f > a->fmax) { snprintf(msg, cap, "%.17g is above its maximum %.17g", out->f, a->fmax); return -1; }
    return 0;
}
static int rlay__attr_refuse(rlay_ctx *c, const char *name, const char *why) {
    char msg[400];
    snprintf(msg, sizeof msg, "attribute '%.64s': %s", name, why);
    return rlay__auto_reply(c, RLAY_E_BAD_ATTRIBUTE, msg);
}
/* Answers a CALL named rlay.* (section 19.2). 0: answered; -1: the session is over. */
static int rlay__attr_call(rlay_ctx *c, const rlay_value *name, const rlay_value *args, const rlay_value *kwargs) {
    uint32_t n = c->nenv, i, k;
    const rlay__attr *a = NULL;
    rlay_w *w = c->w_val;
    char why[300], what[80];
    int get = name->len == 8 && memcmp(name->v.s, "rlay.get", 8) == 0;
    int set = name->len == 8 && memcmp(name->v.s, "rlay.set", 8) == 0;
    int describe = name->len == 13 && memcmp(name->v.s, "rlay.describe", 13) == 0;
    rlay__reset_writers(c);
    if (!get && !set && !describe) {
        snprintf(why, sizeof why, "'%.*s' is not a function of section 19 (offered: rlay.describe, rlay.get, rlay.set)",
                 (int)(name->len > 100 ? 100 : name->len), name->v.s);
        return rlay__auto_reply(c, RLAY_E_NOT_SUPPORTED, why);
    }
    snprintf(what, sizeof what, "%.*s", (int)name->len, name->v.s);
    if (kwargs->len) { snprintf(why, sizeof why, "%s takes no keyword arguments", what); return rlay__attr_refuse(c, "?", why); }
    if (describe) {
        if (args->len) return rlay__attr_refuse(c, "?", "rlay.describe takes no arguments");
        if (n > 1) rlay_put_array(w, n);
        for (i = 0; i < n; i++) {
            rlay_put_map(w, (uint32_t)c->nattr);
            for (k = 0; k < c->nattr; k++) { rlay_put_key(w, c->attrs[k].name); rlay__attr_describe(w, &c->attrs[k]); }
        }
    } else {
        const rlay_value *v = args->len ? &args->v.items[0] : NULL;
        if (args->len != (get ? 1u : 2u) || v->type != RLAY_T_STR) {
            snprintf(why, sizeof why, "%s takes the arguments %s (name a str)", what, get ? "[name]" : "[name, value]");
            return rlay__attr_refuse(c, "?", why);
        }
        for (k = 0; k < c->nattr; k++)
            if (strlen(c->attrs[k].name) == v->len && memcmp(c->attrs[k].name, v->v.s, v->len) == 0) { a = &c->attrs[k]; break; }
        if (!a) {
            size_t used;
            snprintf(why, sizeof why, "the env side offers no attribute of this name (it offers: %s", c->nattr ? "" : "none");
            for (k = 0; k < c->nattr; k++) {
                used = strlen(why);
                snprintf(why + used, sizeof why - used, "%s%s", k ? ", " : "", c->attrs[k].name);
            }
            used = strlen(why);
            snprintf(why + used, sizeof why - used, ")");
            snprintf(what, sizeof what, "%.*s", (int)(v->len > 64 ? 64 : v->len), v->v.s);
            return rlay__attr_refuse(c, what, why);
        }
        if (get) {
            for (i = 0; i < (a->stride ? n : 1); i++) {   /* your own values are checked too, as observations */
                const void *p = rlay__attr_at(a, i);
                double f = a->type == RLAY__A_FLOAT ? *(const double *)p : 0;
                int64_t x = a->type == RLAY__A_INT ? *(const int64_t *)p : 0;
                if (isnan(f) || f < a->fmin || f > a->fmax || x < a->imin || x > a->imax) {
                    snprintf(why, sizeof why, "the env's value of attribute '%s'%s is %s", a->name,
                             n > 1 ? " (a sub-env)" : "", isnan(f) ? "NaN" : "outside its [min, max]");
                    return rlay__auto_reply(c, RLAY_E_ENV_EXCEPTION, why);
                }
            }
            if (n > 1) rlay_put_array(w, n);
            for (i = 0; i < n; i++) rlay__attr_put(w, a, a->stride ? i : 0);
        } else {
            const rlay_value *val = &args->v.items[1];
            rlay__aval one, *each = NULL;
            char m[200];
            if (a->flags & RLAY_ATTR_READ_ONLY) return rlay__attr_refuse(c, a->name, "is read-only");
            if (n > 1 && val->type == RLAY_T_ARRAY) {   /* one value per sub-env, all checked first */
                if (val->len != n) { snprintf(why, sizeof why, "expected one value or %u (one per sub-env), actual %u", n, val->len); return rlay__attr_refuse(c, a->name, why); }
                if (!(each = (rlay__aval *)calloc(n, sizeof *each))) return rlay__err(c, RLAY_E_NOMEM, "out of memory"), -1;
                for (i = 0; i < n; i++) {
                    if (rlay__attr_check(a, &val->v.items[i], &each[i], m, sizeof m)) {
                        free(each);
                        snprintf(why, sizeof why, "sub-env %u: %s", i, m);
                        return rlay__attr_refuse(c, a->name, why);
                    }
                    if (!a->stride && i && memcmp(&each[i], &each[0], sizeof one) != 0) {
                        free(each);
                        return rlay__attr_refuse(c, a->name, "is shared by every sub-env: give one value");
                    }
                }
            } else if (rlay__attr_check(a, val, &one, m, sizeof m)) {
                return rlay__attr_refuse(c, a->name, m);
            }
            for (i = 0; i < (a->stride ? n : 1); i++) {
                rlay__aval *x = each ? &each[i] : &one;
                void *p = rlay__attr_at(a, i);
                if (a->type == RLAY__A_FLOAT) *(double *)p = x->f;
                else if (a->type == RLAY__A_INT) *(int64_t *)p = x->i;
                else *(int *)p = x->b;
            }
            free(each);
            if (c->attr_hook) c->attr_hook(c->attr_ud, c, a->name);
            if (n > 1) rlay_put_array(w, n);
            for (i = 0; i < n; i++) rlay_put_nil(w);
        }
    }
    c->pending = 1;
    return rlay_reply_call(c) ? -1 : 0;
}

/* ---- callback style ---- */
int rlay_fail(rlay_ctx *c, int code, const char *remote_type, const char *fmt, ...) {
    va_list ap;
    if (!c) return -1;
    c->fail_code = code;
    snprintf(c->fail_type, sizeof c->fail_type, "%s", remote_type ? remote_type : "");
    va_start(ap, fmt); vsnprintf(c->fail_msg, sizeof c->fail_msg, fmt ? fmt : "", ap); va_end(ap);
    return -1;
}
static void rlay__fail_reply(rlay_ctx *c, const char *what, int r) {
    int code = c->fail_code > 0 ? c->fail_code : RLAY_E_ENV_EXCEPTION;
    const char *type = c->fail_type[0] ? c->fail_type : NULL;
    if (c->fail_msg[0]) rlay_reply_error(c, code, rlay__fatal_code(code), type, "%s", c->fail_msg);
    else rlay_reply_error(c, code, rlay__fatal_code(code), type, "the %s callback failed (returned %d)", what, r);
}
int rlay_serve(rlay_ctx *c, const rlay_callbacks *cb, void *ud) {
    rlay_cmd cmd;
    if (!c) return RLAY_E_NOMEM;
    if (!cb || !cb->reset || !cb->step) { rlay__err(c, RLAY_E_USAGE, "rlay_serve: reset and step callbacks are required"); rlay__end(c); return c->err; }
    while (rlay_poll(c, &cmd, -1) > 0) {
        int r = 0;
        rlay_step_out out;
        const char *what = "";
        c->fail_code = 0; c->fail_type[0] = 0; c->fail_msg[0] = 0;
        out.reward = 0; out.terminated = 0; out.truncated = 0;
        out.rewards = NULL; out.terminations = out.truncations = NULL;
        if (c->nenv > 1 && cmd.kind == RLAY_STEP) {
            memset(c->b_rew, 0, c->nenv * sizeof *c->b_rew);
            memset(c->b_term, 0, c->nenv); memset(c->b_trunc, 0, c->nenv);
            out.rewards = c->b_rew; out.terminations = c->b_term; out.truncations = c->b_trunc;
        }
        switch (cmd.kind) {
        case RLAY_RESET: what = "reset"; r = cb->reset(ud, c, &cmd); break;
        case RLAY_STEP: case RLAY_MULTI_STEP: what = "step"; r = cb->step(ud, c, &cmd, &out); break;
        case RLAY_RENDER: what = "render"; if (cb->render) r = cb->render(ud, c); else rlay_reply_default(c, &cmd); break;
        case RLAY_CALL: what = "call"; if (cb->call) r = cb->call(ud, c, &cmd); else rlay_reply_default(c, &cmd); break;
        case RLAY_CLOSE: if (cb->close) cb->close(ud, c); break;
        }
        if (c->err || !c->pending) continue;   /* failed, or the callback replied itself */
        if (r) { rlay__fail_reply(c, what, r); continue; }
        if (c->ma_on && (cmd.kind == RLAY_RESET || cmd.kind == RLAY_MULTI_STEP)) {
            rlay__err(c, RLAY_E_USAGE, "rlay_serve: in a multi-agent session the %s callback answers with rlay_reply_agents", what);
            rlay__end(c);
            break;
        }
        switch (cmd.kind) {
        case RLAY_RESET: rlay_reply_reset(c); break;
        case RLAY_STEP:
            if (c->nenv > 1) rlay_reply_step_batch(c, out.rewards, out.terminations, out.truncations);
            else rlay_reply_step(c, out.reward, out.terminated, out.truncated);
            break;
        case RLAY_RENDER: rlay_reply_render(c); break;
        case RLAY_CALL: rlay_reply_call(c); break;
        case RLAY_CLOSE: rlay_reply_close(c); break;
        }
    }
    return c->err;
}

/* ======================================================================================== */
/* Space builders (spec section 9), written with the public writer calls. */

static int rlay__sp_args(rlay_w *w, int dtype, int ndim, const uint32_t *shape, const char *fn) {
    if (!w || w->c->err) return 0;
    if (!rlay__dt_ok(dtype)) return !rlay__err(w->c, RLAY_E_USAGE, "%s: unknown dtype code %d", fn, dtype);
    if (ndim < 0 || ndim > RLAY_MAX_NDIM || (ndim && !shape)) return !rlay__err(w->c, RLAY_E_USAGE, "%s: ndim %d is not in 0..32", fn, ndim);
    return 1;
}
static void rlay__put_kind(rlay_w *w, uint32_t pairs, const char *kind) {
    rlay_put_map(w, pairs); rlay_put_key(w, "kind"); rlay_put_str(w, kind);
}
static void rlay__put_shape(rlay_w *w, int ndim, const uint32_t *shape) {
    int i;
    rlay_put_array(w, (uint32_t)ndim);
    for (i = 0; i < ndim; i++) rlay_put_uint(w, shape[i]);
}
void rlay_space_box(rlay_w *w, int dtype, int ndim, const uint32_t *shape, const void *low, const void *high) {
    if (!rlay__sp_args(w, dtype, ndim, shape, "rlay_space_box")) return;
    rlay__put_kind(w, 5, "box");
    rlay_put_key(w, "dtype"); rlay_put_str(w, rlay__dt[dtype].name);
    rlay_put_key(w, "shape"); rlay__put_shape(w, ndim, shape);
    rlay_put_key(w, "low"); rlay_put_tensor(w, dtype, ndim, shape, low);
    rlay_put_key(w, "high"); rlay_put_tensor(w, dtype, ndim, shape, high);
}
/* Stores x as one element of dtype; 0 if it does not fit. For integer dtypes +-inf stand for
   the dtype's limits (spec section 9: an integer Box with infinite bounds travels that way). */
static int rlay__store(int dtype, double x, unsigned char *p) {
    char cls = rlay__dt[dtype].cls;
    int sz = rlay__dt[dtype].size, i, bits = sz * 8;
    uint64_t u;
    if (cls == 'f') {
        if (sz == 2) u = rlay__double_to_half(x);
        else if (sz == 4) { float f = (float)x; uint32_t b; memcpy(&b, &f, 4); u = b; }
        else memcpy(&u, &x, 8);
    } else if (cls == 'b') {
        if (x != 0 && x != 1) return 0;
        u = x == 1;
    } else if (cls == 'u') {
        if (x == INFINITY) u = bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1;
        else if (x == -INFINITY) u = 0;
        else if (x >= 0 && x < ldexp(1.0, bits) && x == floor(x)) u = (uint64_t)x;
        else return 0;
    } else {
        double lim = ldexp(1.0, bits - 1);   /* exact; 2^(bits-1) - 1 may not be */
        if (x == INFINITY) u = ((uint64_t)1 << (bits - 1)) - 1;
        else if (x == -INFINITY) u = (uint64_t)0 - ((uint64_t)1 << (bits - 1));
        else if (x >= -lim && x < lim && x == floor(x)) u = (uint64_t)(int64_t)x;
        else return 0;
    }
    for (i = 0; i < sz; i++) p[i] = (unsigned char)(u >> (8 * i));
    return 1;
}
void rlay_space_box_uniform(rlay_w *w, int dtype, int ndim, const uint32_t *shape, double low, double high) {
    size_t count, sz, i;
    int ovf, copy;
    unsigned char *lo, *hi;
    if (!rlay__sp_args(w, dtype, ndim, shape, "rlay_space_box_uniform")) return;
    count = rlay__count(ndim, shape, &ovf);
    sz = rlay__dt[dtype].size;
    if (ovf || count > 0xffffffffu / sz) { rlay__err(w->c, RLAY_E_USAGE, "rlay_space_box_uniform: shape too large"); return; }
    /* room for one element even when the shape has a 0: rlay__store writes one before copying */
    lo = (unsigned char *)malloc((count ? count : 1) * sz); hi = (unsigned char *)malloc((count ? count : 1) * sz);
    if (!lo || !hi) { free(lo); free(hi); rlay__err(w->c, RLAY_E_NOMEM, "out of memory"); return; }
    if (!rlay__store(dtype, low, lo) || !rlay__store(dtype, high, hi))
        rlay__err(w->c, RLAY_E_USAGE, "rlay_space_box_uniform: bounds [%g, %g] do not fit dtype %s", low, high, rlay__dt[dtype].name);
    for (i = 1; i < count; i++) { memcpy(lo + i * sz, lo, sz); memcpy(hi + i * sz, hi, sz); }
    copy = w->copy;
    w->copy = 1;   /* the bounds are temporaries: copy them even into a referencing writer */
    rlay_space_box(w, dtype, ndim, shape, lo, hi);
    w->copy = copy;
    free(lo); free(hi);
}
void rlay_space_discrete(rlay_w *w, int64_t n, int64_t start) {
    rlay__put_kind(w, 4, "discrete");
    rlay_put_key(w, "n"); rlay_put_int(w, n);
    rlay_put_key(w, "start"); rlay_put_int(w, start);
    rlay_put_key(w, "dtype"); rlay_put_str(w, "int64");
}
void rlay_space_multi_discrete(rlay_w *w, int ndim, const uint32_t *shape, const int64_t *nvec, const int64_t *start) {
    size_t count;
    int ovf, copy;
    int64_t *zeros = NULL;
    if (!rlay__sp_args(w, RLAY_DT_INT64, ndim, shape, "rlay_space_multi_discrete")) return;
    count = rlay__count(ndim, shape, &ovf);
    if (ovf || count > 0xffffffffu / 8) { rlay__err(w->c, RLAY_E_USAGE, "rlay_space_multi_discrete: shape too large"); return; }
    if (!start) {
        if (!(zeros = (int64_t *)calloc(count + 1, 8))) { rlay__err(w->c, RLAY_E_NOMEM, "out of memory"); return; }
        start = zeros;
    }
    rlay__put_kind(w, 3, "multi_discrete");
    rlay_put_key(w, "nvec"); rlay_put_tensor(w, RLAY_DT_INT64, ndim, shape, nvec);
    copy = w->copy;
    w->copy |= zeros != NULL;   /* the zeros are a temporary */
    rlay_put_key(w, "start"); rlay_put_tensor(w, RLAY_DT_INT64, ndim, shape, start);
    w->copy = copy;
    free(zeros);
}
void rlay_space_multi_binary(rlay_w *w, uint32_t n) {
    rlay__put_kind(w, 2, "multi_binary");
    rlay_put_key(w, "n"); rlay_put_uint(w, n);
}
void rlay_space_multi_binary_shape(rlay_w *w, int ndim, const uint32_t *shape) {
    if (!rlay__sp_args(w, RLAY_DT_INT8, ndim, shape, "rlay_space_multi_binary_shape")) return;
    rlay__put_kind(w, 2, "multi_binary");
    rlay_put_key(w, "n"); rlay__put_shape(w, ndim, shape);
}
void rlay_space_text(rlay_w *w, uint32_t min_length, uint32_t max_length, const char *charset) {
    rlay__put_kind(w, 4, "text");
    rlay_put_key(w, "min_length"); rlay_put_uint(w, min_length);
    rlay_put_key(w, "max_length"); rlay_put_uint(w, max_length);
    rlay_put_key(w, "charset"); rlay_put_str(w, charset);
}
void rlay_space_dict(rlay_w *w, uint32_t n) { rlay__put_kind(w, 2, "dict"); rlay_put_key(w, "spaces"); rlay_put_map(w, n); }
void rlay_space_tuple(rlay_w *w, uint32_t n) { rlay__put_kind(w, 2, "tuple"); rlay_put_key(w, "spaces"); rlay_put_array(w, n); }
void rlay_space_one_of(rlay_w *w, uint32_t n) { rlay__put_kind(w, 2, "one_of"); rlay_put_key(w, "spaces"); rlay_put_array(w, n); }
void rlay_space_sequence(rlay_w *w, int stack) {
    rlay__open(w, 1, 3, RLAY__HOOK_SEQ, stack ? 1 : 0);   /* "stack" follows the element space */
    rlay_put_key(w, "kind"); rlay_put_str(w, "sequence"); rlay_put_key(w, "space");
}
void rlay_space_graph(rlay_w *w) {
    rlay__open(w, 1, 3, RLAY__HOOK_GRAPH, 0);             /* "edge_space" follows the node space */
    rlay_put_key(w, "kind"); rlay_put_str(w, "graph"); rlay_put_key(w, "node_space");
}

/* ======================================================================================== */
/* Conformance hooks (spec section 12), used by tests/conformance.c and the fuzzer; not API. */

static void rlay__recode_value(rlay_w *w, const rlay_value *v) {
    uint32_t i;
    switch (v->type) {
    case RLAY_T_NIL: rlay_put_nil(w); break;
    case RLAY_T_BOOL: rlay_put_bool(w, v->v.b); break;
    case RLAY_T_INT: if (v->neg) rlay_put_int(w, v->v.i); else rlay_put_uint(w, v->v.u); break;
    case RLAY_T_FLOAT: rlay_put_float(w, v->v.f); break;
    case RLAY_T_STR: rlay_put_strn(w, v->v.s, v->len); break;
    case RLAY_T_BYTES: rlay_put_bytes(w, v->v.s, v->len); break;
    case RLAY_T_ARRAY: rlay_put_array(w, v->len); for (i = 0; i < v->len; i++) rlay__recode_value(w, &v->v.items[i]); break;
    case RLAY_T_MAP: rlay_put_map(w, v->len); for (i = 0; i < 2 * v->len; i++) rlay__recode_value(w, &v->v.items[i]); break;
    default: rlay_put_tensor(w, v->v.t->dtype, v->v.t->ndim, v->v.t->shape, v->v.t->data); break;
    }
}
/* A space in canonical field order (kind first, section 9's order), sub-spaces too. */
static void rlay__recode_space(rlay_w *w, const rlay_value *sp) {
    const rlay_value *f[6];
    int kind = rlay__sp_get(NULL, sp, f, ""), nf, i;
    uint32_t j;
    for (nf = 0; rlay__sp_fields[kind][nf]; nf++) {}
    rlay_put_map(w, (uint32_t)nf);
    for (i = 0; i < nf; i++) {
        const char *name = rlay__sp_fields[kind][i];
        const rlay_value *v = f[i];
        rlay_put_key(w, name);
        if (kind == RLAY__SP_DICT && i == 1) {
            rlay_put_map(w, v->len);
            for (j = 0; j < v->len; j++) { rlay__recode_value(w, &v->v.items[2 * j]); rlay__recode_space(w, &v->v.items[2 * j + 1]); }
        } else if ((kind == RLAY__SP_TUPLE || kind == RLAY__SP_ONE_OF) && i == 1) {
            rlay_put_array(w, v->len);
            for (j = 0; j < v->len; j++) rlay__recode_space(w, &v->v.items[j]);
        } else if ((kind == RLAY__SP_SEQUENCE && i == 1) || (kind == RLAY__SP_GRAPH && i >= 1 && v->type != RLAY_T_NIL)) {
            rlay__recode_space(w, v);
        } else rlay__recode_value(w, v);
    }
}
/* Re-encodes a checked message canonically (spec section 5) into the frame at c->flat. */
static int rlay__recode(rlay_ctx *c, int kind, const rlay_value **f) {
    const rlay__field *fs = rlay__schema(kind);
    rlay_w *w = c->w_body;
    int nf, i;
    for (nf = 0; fs[nf].name; nf++) {}
    rlay__w_reset(w);
    rlay_put_map(w, (uint32_t)nf);
    for (i = 0; i < nf; i++) {
        rlay_put_key(w, fs[i].name);
        if (fs[i].types == RLAY__F_SPACE) rlay__recode_space(w, f[i]);
        else if (kind == RLAY_MULTI_RESULT && i == 2) {   /* section 18: rewards are floats (an int accepted, section 5) */
            uint32_t j;
            rlay_put_map(w, f[i]->len);
            for (j = 0; j < f[i]->len; j++) {
                const rlay_value *r = &f[i]->v.items[2 * j + 1];
                rlay__recode_value(w, &f[i]->v.items[2 * j]);
                if (r->type == RLAY_T_INT) rlay_put_float(w, r->neg ? (double)r->v.i : (double)r->v.u);
                else rlay__recode_value(w, r);
            }
        }
        else if ((fs[i].types & RLAY__F_FLOAT) && !(fs[i].types & RLAY__F_INT) && f[i]->type == RLAY_T_INT)
            rlay_put_float(w, f[i]->neg ? (double)f[i]->v.i : (double)f[i]->v.u);   /* section 5 */
        else rlay__recode_value(w, f[i]);
    }
    if (c->err || rlay__frame(c, kind, w) || rlay__flatten(c)) return c->err;
    return 0;
}
static void rlay__feed(rlay_ctx *c, const unsigned char *p, size_t n) {
    if (rlay__rx_reserve(c, c->rhave + n + 1)) return;
    if (n) memcpy(c->rbuf + c->rhave, p, n);
    c->rhave += n;
}
static void rlay__conform_reset(rlay_ctx *c, int role, int state) {
    c->err = 0; c->err_from_peer = 0; c->errmsg[0] = 0;
    c->role = role; c->state = state; c->rhave = 0; c->rneed = 0;
}
/* Decodes one frame stand-alone and re-encodes it canonically: c->flat/c->flen. */
int rlay__conform_roundtrip(rlay_ctx *c, const unsigned char *frame, size_t n);
int rlay__conform_roundtrip(rlay_ctx *c, const unsigned char *frame, size_t n) {
    const rlay_value *f[8];
    int r;
    rlay__conform_reset(c, RLAY__ENV, RLAY__S_IDLE);
    rlay__feed(c, frame, n);
    r = rlay__rx_frame(c);
    if (r == 0) { rlay__rx_eof(c); return c->err ? c->err : RLAY_E_TRUNCATED; }
    if (r < 0 || rlay__rx_message(c, 1, f)) return c->err;
    if (c->rneed != c->rhave) return rlay__err(c, RLAY_E_USAGE, "%lu bytes follow the frame", (unsigned long)(c->rhave - c->rneed));
    return rlay__recode(c, c->rkind, f);
}
/* Feeds a stream that then ends to a receiver playing `role` in `state` (-1: stand-alone);
   returns the error it fails with (0 if none). */
int rlay__conform_reject(rlay_ctx *c, const unsigned char *p, size_t n, int role, int state, uint32_t num_envs);
int rlay__conform_reject(rlay_ctx *c, const unsigned char *p, size_t n, int role, int state, uint32_t num_envs) {
    const rlay_value *f[8];
    uint32_t saved;
    rlay__conform_reset(c, role, state < 0 ? RLAY__S_CLOSED : state);   /* stand-alone: EOF is orderly */
    saved = c->nenv;
    c->nenv = num_envs;   /* the num_envs of the ENV_INFO this receiver was brought past */
    rlay__feed(c, p, n);
    for (;;) {
        int r = rlay__rx_frame(c);
        if (r < 0) break;
        if (r == 0) { rlay__rx_eof(c); break; }
        if (rlay__rx_message(c, state < 0, f)) break;
        rlay__rx_consume(c);
    }
    c->nenv = saved;
    return c->err;
}

#ifdef __cplusplus
}
#endif
#endif /* RLAY__IMPLEMENTED */
#endif /* RLAY_IMPLEMENTATION */
