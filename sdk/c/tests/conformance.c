/* Conformance runner for rlay-c: the line protocol of spec/protocol.md section 12.

   stdin, one command a line; stdout, one answer a line (`ok` or `fail <why>`):
     roundtrip FRAME_HEX CANON_HEX             decode FRAME, re-encode canonically, compare
     reject FRAME_HEX ERROR_NAME ROLE STATE    feed FRAME (then end of stream) to a receiver
                                               playing ROLE (agent/env) in STATE (- = stand-alone)
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

static void reject(rlay_ctx *c, char **tok, int ntok) {
    unsigned char *bytes;
    size_t n;
    int role, state, r;
    if (ntok != 5) { printf("fail reject needs FRAME_HEX ERROR_NAME ROLE STATE"); return; }
    if (strcmp(tok[3], "agent") == 0) role = RLAY__AGENT;
    else if (strcmp(tok[3], "env") == 0 || strcmp(tok[3], "-") == 0) role = RLAY__ENV;
    else { printf("fail unknown role '%s'", tok[3]); return; }
    if ((state = state_of(tok[4])) == -2) { printf("fail unknown state '%s'", tok[4]); return; }
    if (!(bytes = unhex(tok[1], &n))) { printf("fail bad hex"); return; }
    r = rlay__conform_reject(c, bytes, n, role, state);
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
        else { printf("fail unknown command '"); put_clean(tok[0]); printf("'"); }
        putchar('\n');
        fflush(stdout);
    }
    free(line);
    rlay_free(c);
    return 0;
}
