/* Conformance runner for rlay-c: the line protocol of spec/protocol.md section 12.

   stdin, one command a line; stdout, one answer a line (`ok` or `fail <why>`):
     roundtrip FRAME_HEX CANON_HEX             decode FRAME, re-encode canonically, compare
     reject FRAME_HEX ERROR_NAME ROLE STATE [NUM_ENVS]    feed FRAME (then end of stream) to a receiver
                                               playing ROLE (agent/env) in STATE (- = stand-alone)
   rlay-c's additions, for the space vectors of spec/vectors/spaces.json (section 9); a space or
   a value is given as a stand-alone value: its body and its data section, in hex:
     space BODY DATA                           a valid descriptor; re-encodes to the same bytes
     space_value SBODY SDATA VBODY VDATA       a value of that space; re-encodes to the same bytes
     space_reject BODY DATA ERROR_NAME         a descriptor refused with ERROR_NAME
     value_reject SBODY SDATA VBODY VDATA ERROR_NAME   a value refused (structure, not bounds)
*/
#define RLAY_IMPLEMENTATION
#include "../rlay.h"

#include <ctype.h>

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Decodes hex into a fresh buffer; NULL if the text is not hex. */
static unsigned char *unhex(const char *s, size_t *n) {
    size_t len = strlen(s), i;
    unsigned char *out;
    if (len % 2) return NULL;
    out = (unsigned char *)malloc(len / 2 + 1);
    if (!out) return NULL;
    for (i = 0; i < len / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) { free(out); return NULL; }
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    *n = len / 2;
    return out;
}

/* Prints text on one line: control bytes become '?'. */
static void put_clean(const char *s) {
    for (; *s; s++) putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

static void put_hex(const unsigned char *p, size_t n, size_t max) {
    size_t i;
    for (i = 0; i < n && i < max; i++) printf("%02x", p[i]);
    if (n > max) printf("...");
}

static int state_of(const char *s) {
    int i;
    if (strcmp(s, "-") == 0) return -1;
    for (i = 0; i <= RLAY__S_CLOSED; i++)
        if (strcmp(s, rlay__state_names[i]) == 0) return i;
    return -2;
}

static void roundtrip(rlay_ctx *c, char **tok, int ntok) {
    unsigned char *frame, *canon;
    size_t fn, cn, i;
    int r;
    if (ntok != 3) { printf("fail roundtrip needs FRAME_HEX CANON_HEX"); return; }
    frame = unhex(tok[1], &fn);
    canon = unhex(tok[2], &cn);
    if (!frame || !canon) { printf("fail bad hex"); free(frame); free(canon); return; }
    r = rlay__conform_roundtrip(c, frame, fn);
    if (r) {
        printf("fail decoding failed with %s: ", rlay_error_name(r));
        put_clean(rlay_errmsg(c));
    } else if (c->flen != cn || memcmp(c->flat, canon, cn) != 0) {
        for (i = 0; i < cn && i < c->flen && c->flat[i] == canon[i]; i++) {}
        printf("fail re-encoded frame differs from byte %lu: got ", (unsigned long)i);
        put_hex(c->flat + i, c->flen - i, 24);
        printf(" expected ");
        put_hex(canon + i, cn - i, 24);
        printf(" (lengths %lu and %lu)", (unsigned long)c->flen, (unsigned long)cn);
    } else {
        printf("ok");
    }
    free(frame);
    free(canon);
}

/* Decodes hex body + hex data as one stand-alone value into d; the buffers go to keep[]. */
static int decode_value(rlay_ctx *c, rlay__doc *d, const char *body_hex, const char *data_hex,
                        unsigned char **keep, const rlay_value **v) {
    size_t bn, dn;
    keep[0] = unhex(body_hex, &bn);
    keep[1] = unhex(data_hex, &dn);
    if (!keep[0] || !keep[1]) return rlay__err(c, RLAY_E_USAGE, "bad hex");
    return rlay__decode(c, d, keep[0], bn, keep[1], dn, 0, v);
}

/* Compares the canonical body and data section of what `w` holds with the expected hex. */
static void compare_canonical(rlay_ctx *c, rlay_w *w, const char *body_hex, const char *data_hex) {
    unsigned char *body, *data;
    size_t bn, dn, dlen;
    if (c->err || rlay__frame(c, RLAY_CALL_RESULT, w) || rlay__flatten(c)) {
        printf("fail re-encoding failed with %s: ", rlay_error_name(c->err));
        put_clean(rlay_errmsg(c));
        return;
    }
    body = unhex(body_hex, &bn);
    data = unhex(data_hex, &dn);
    dlen = rlay__rd32le(c->flat + 4);
    if (dlen != dn || memcmp(c->flat + 12, data, dn) != 0) {
        printf("fail data section: got ");
        put_hex(c->flat + 12, dlen, 40);
        printf(" expected ");
        put_hex(data, dn, 40);
    } else if (c->flen - 12 - dlen != bn || memcmp(c->flat + 12 + dlen, body, bn) != 0) {
        printf("fail body: got ");
        put_hex(c->flat + 12 + dlen, c->flen - 12 - dlen, 60);
        printf(" expected ");
        put_hex(body, bn, 60);
    } else {
        printf("ok");
    }
    free(body);
    free(data);
}

static void fail_with(rlay_ctx *c, const char *what) {
    printf("fail %s: %s: ", what, rlay_error_name(c->err));
    put_clean(rlay_errmsg(c));
}

static void spaces(rlay_ctx *c, char **tok, int ntok) {
    static rlay__doc sdoc, vdoc;
    unsigned char *keep[4] = {NULL, NULL, NULL, NULL};
    const rlay_value *sp = NULL, *v = NULL;
    const char *cmd = tok[0];
    int want = !strcmp(cmd, "space") ? 3 : !strcmp(cmd, "space_value") ? 5 : !strcmp(cmd, "space_reject") ? 4 : 6;
    int i;
    rlay__conform_reset(c, RLAY__ENV, RLAY__S_IDLE);
    rlay__w_reset(c->w_body);
    if (ntok != want) { printf("fail %s takes %d fields", cmd, want - 1); return; }
    if (decode_value(c, &sdoc, tok[1], tok[2], keep, &sp) || rlay__check_space(c, sp, "space")) {
        if (!strcmp(cmd, "space_reject") && c->err && strcmp(rlay_error_name(c->err), tok[3]) == 0) printf("ok");
        else if (!strcmp(cmd, "space_reject")) { printf("fail expected %s, ", tok[3]); fail_with(c, "got"); }
        else fail_with(c, "the space was refused");
    } else if (!strcmp(cmd, "space_reject")) {
        printf("fail accepted; expected %s", tok[3]);
    } else if (!strcmp(cmd, "space")) {
        rlay__recode_space(c->w_body, sp);
        compare_canonical(c, c->w_body, tok[1], tok[2]);
    } else if (decode_value(c, &vdoc, tok[3], tok[4], keep + 2, &v)) {
        fail_with(c, "the value does not decode");
    } else {
        int oob = 0, r = rlay__vcheck(c, sp, v, 0, &oob);
        if (!strcmp(cmd, "value_reject")) {
            if (r < 0 && !strcmp(tok[5], "BAD_VALUE")) printf("ok");
            else if (r < 0) printf("fail got BAD_VALUE (%s), expected %s", c->vmsg, tok[5]);
            else printf("fail accepted; expected %s", tok[5]);
        } else if (r < 0) {
            printf("fail BAD_VALUE: ");
            put_clean(c->vmsg);
        } else {
            rlay__recode_value(c->w_body, v);
            compare_canonical(c, c->w_body, tok[3], tok[4]);
        }
    }
    for (i = 0; i < 4; i++) free(keep[i]);
}

static void reject(rlay_ctx *c, char **tok, int ntok) {
    unsigned char *bytes;
    size_t n;
    int role, state, r;
    unsigned long num_envs = 1;
    if (ntok != 5 && ntok != 6) { printf("fail reject needs FRAME_HEX ERROR_NAME ROLE STATE [NUM_ENVS]"); return; }
    if (ntok == 6 && ((num_envs = strtoul(tok[5], NULL, 10)) < 1 || num_envs > 0x7fffffffUL)) { printf("fail bad NUM_ENVS '%s'", tok[5]); return; }
    if (strcmp(tok[3], "agent") == 0) role = RLAY__AGENT;
    else if (strcmp(tok[3], "env") == 0 || strcmp(tok[3], "-") == 0) role = RLAY__ENV;
    else { printf("fail unknown role '%s'", tok[3]); return; }
    if ((state = state_of(tok[4])) == -2) { printf("fail unknown state '%s'", tok[4]); return; }
    if (!(bytes = unhex(tok[1], &n))) { printf("fail bad hex"); return; }
    r = rlay__conform_reject(c, bytes, n, role, state, (uint32_t)num_envs);
    if (r == 0) printf("fail accepted: no error before the stream ended cleanly (state %s)", rlay__state_names[c->state]);
    else if (strcmp(rlay_error_name(r), tok[2]) == 0) printf("ok");
    else {
        printf("fail expected %s, got %s: ", tok[2], rlay_error_name(r));
        put_clean(rlay_errmsg(c));
    }
    free(bytes);
}

int main(void) {
    rlay_ctx *c = rlay_new();
    char *line = NULL;
    size_t cap = 0;
    long len;
    if (!c) { fprintf(stderr, "out of memory\n"); return 1; }
    while ((len = (long)getline(&line, &cap, stdin)) >= 0) {
        char *tok[8];
        int ntok = 0;
        char *p = line;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        /* split on single spaces, keeping empty fields (an empty FRAME_HEX is legal) */
        tok[ntok++] = p;
        while ((p = strchr(p, ' ')) != NULL && ntok < 8) { *p++ = 0; tok[ntok++] = p; }
        if (strcmp(tok[0], "roundtrip") == 0) roundtrip(c, tok, ntok);
        else if (strcmp(tok[0], "reject") == 0) reject(c, tok, ntok);
        else if (strncmp(tok[0], "space", 5) == 0 || strcmp(tok[0], "value_reject") == 0) spaces(c, tok, ntok);
        else { printf("fail unknown command '"); put_clean(tok[0]); printf("'"); }
        putchar('\n');
        fflush(stdout);
    }
    free(line);
    rlay_free(c);
    return 0;
}
