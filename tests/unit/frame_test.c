/* Unit tests of the admin socket's frame codec (core/repl/frame.c): header encoding, frames fed a
 * byte at a time and several to a buffer, zero-length payloads, every error and its sticky
 * state, the size limits, and freeing a decoder in the middle of a frame. */
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "tap.h"

/* Appends one encoded frame to buf at *n. */
static void put(unsigned char *buf, size_t *n, unsigned char t, const char *p, uint32_t len)
{
    frame_header(buf + *n, t, len);
    memcpy(buf + *n + FRAME_HEADER, p, len);
    *n += FRAME_HEADER + len;
}

/* Feeds all of data in pieces of step bytes; collects up to max frames. Returns the number of
 * frames, or -1 on a decode error. */
static int feed(frame_decoder_t *d, const unsigned char *data, size_t n, size_t step,
                frame_t *frames, int max)
{
    int got = 0;
    size_t off = 0;
    while (off < n) {
        size_t chunk = n - off < step ? n - off : step;
        const char *p = (const char *)data + off;
        while (chunk > 0) {
            size_t used = 0;
            frame_t f;
            int rc = frame_decode(d, p, chunk, &used, &f);
            if (rc < 0)
                return -1;
            p += used;
            chunk -= used;
            off += used;
            if (rc == 1) {
                if (got < max)
                    frames[got++] = f;
                else
                    free(f.payload);
            } else if (chunk != 0) {
                return -2; /* 0 must mean "all consumed" */
            }
        }
    }
    return got;
}

static void free_frames(frame_t *f, int n)
{
    for (int i = 0; i < n; i++)
        free(f[i].payload);
}

int main(void)
{
    unsigned char h[FRAME_HEADER];
    frame_header(h, 'E', 0x01020304u);
    ok(h[0] == 'E' && h[1] == 1 && h[2] == 2 && h[3] == 3 && h[4] == 4,
       "the header is the type byte then the length big-endian");
    frame_header(h, 'O', 0);
    ok(h[0] == 'O' && !h[1] && !h[2] && !h[3] && !h[4], "a zero length encodes as four zeros");
    frame_header(h, 'R', 0xFFFFFFFFu);
    ok(h[1] == 0xFF && h[4] == 0xFF, "the largest length encodes without truncation");

    const char *valid = "HEJCIGORXMLB";
    int all = 1;
    for (const char *c = valid; *c; c++)
        all &= frame_type_valid((unsigned char)*c);
    ok(all, "every documented type is valid");
    int nvalid = 0;
    for (int t = 0; t < 256; t++)
        nvalid += frame_type_valid((unsigned char)t);
    ok(nvalid == 12, "exactly the 12 documented types are valid (got %d)", nvalid);

    /* several frames in one buffer, fed whole and a byte at a time */
    static unsigned char buf[1 << 16];
    size_t n = 0;
    put(buf, &n, 'H', "color=1", 7);
    put(buf, &n, 'E', "return 1+1", 10);
    put(buf, &n, 'I', "", 0);
    put(buf, &n, 'O', "a\0b", 3);
    for (size_t step = 1; step <= n; step = step == 1 ? 2 : step * 3) {
        frame_decoder_t d;
        frame_decoder_init(&d, 0);
        frame_t f[8];
        int got = feed(&d, buf, n, step, f, 8);
        ok(got == 4, "4 frames in one stream, fed %zu bytes at a time (got %d)", step, got);
        if (got == 4) {
            ok(f[0].type == 'H' && f[0].len == 7 && strcmp(f[0].payload, "color=1") == 0,
               "step %zu: first frame intact", step);
            ok(f[1].type == 'E' && f[1].len == 10 && strcmp(f[1].payload, "return 1+1") == 0,
               "step %zu: second frame intact", step);
            ok(f[2].type == 'I' && f[2].len == 0 && f[2].payload && f[2].payload[0] == '\0',
               "step %zu: a zero-length payload is a malloc'd empty string", step);
            ok(f[3].type == 'O' && f[3].len == 3 && memcmp(f[3].payload, "a\0b", 4) == 0,
               "step %zu: binary payload with a NUL, NUL-terminated after len", step);
            free_frames(f, 4);
        }
        ok(d.hdr_have == 0 && d.buf == NULL, "step %zu: the decoder is between frames", step);
        frame_decoder_free(&d);
    }

    /* a frame completes in the call that consumes its last byte; the rest is left */
    {
        frame_decoder_t d;
        frame_decoder_init(&d, 0);
        size_t used = 99;
        frame_t f;
        int rc = frame_decode(&d, (const char *)buf, n, &used, &f);
        ok(rc == 1 && used == FRAME_HEADER + 7, "one frame per call: used counts its bytes only");
        if (rc == 1)
            free(f.payload);
        rc = frame_decode(&d, (const char *)buf, 0, &used, &f);
        ok(rc == 0 && used == 0, "feeding nothing needs more");
        rc = frame_decode(&d, (const char *)buf + FRAME_HEADER + 7, 3, &used, &f);
        ok(rc == 0 && used == 3 && d.hdr_have == 3, "a partial header is kept across calls");
        rc = frame_decode(&d, (const char *)buf + FRAME_HEADER + 10, 2, &used, &f);
        ok(rc == 0 && used == 2 && d.hdr_have == FRAME_HEADER && d.len == 10,
           "the header completes; the payload is awaited");
        rc = frame_decode(&d, (const char *)buf + 2 * FRAME_HEADER + 7, 10, &used, &f);
        ok(rc == 1 && used == 10 && strcmp(f.payload, "return 1+1") == 0,
           "the payload completes the frame");
        if (rc == 1)
            free(f.payload);
        frame_decoder_free(&d);
    }

    /* unknown type */
    {
        frame_decoder_t d;
        frame_decoder_init(&d, 0);
        frame_t f;
        size_t used;
        int rc = frame_decode(&d, "\x7f\0\0\0\0", 5, &used, &f);
        ok(rc == -1, "an unknown type fails");
        ok(strcmp(d.err, "unknown frame type 0x7f") == 0, "err names the type: %s", d.err);
        rc = frame_decode(&d, "I\0\0\0\0", 5, &used, &f);
        ok(rc == -1 && strcmp(d.err, "unknown frame type 0x7f") == 0,
           "after -1 it stays failed, with the first error");
        frame_decoder_free(&d);
        frame_decoder_init(&d, 0);
        rc = frame_decode(&d, "\0", 1, &used, &f);
        ok(rc == -1 && strcmp(d.err, "unknown frame type 0x00") == 0,
           "a NUL type byte is refused at once (%s)", d.err);
        frame_decoder_free(&d);
        frame_decoder_init(&d, 0);
        rc = frame_decode(&d, "e", 1, &used, &f);
        ok(rc == -1, "types are case-sensitive");
        frame_decoder_free(&d);
    }

    /* limits */
    {
        frame_decoder_t d;
        frame_decoder_init(&d, 10);
        ok(d.max == 10, "max is kept");
        frame_t f;
        size_t used;
        unsigned char b[FRAME_HEADER + 10];
        frame_header(b, 'E', 10);
        memset(b + FRAME_HEADER, 'x', 10);
        int rc = frame_decode(&d, (const char *)b, sizeof b, &used, &f);
        ok(rc == 1 && f.len == 10, "a frame of exactly max bytes passes");
        if (rc == 1)
            free(f.payload);
        frame_header(b, 'E', 11);
        rc = frame_decode(&d, (const char *)b, FRAME_HEADER, &used, &f);
        ok(rc == -1, "max + 1 fails on the header, before any payload");
        ok(strcmp(d.err, "frame of 11 bytes is over the limit of 10") == 0, "err: %s", d.err);
        ok(d.buf == NULL, "nothing is allocated for a refused frame");
        frame_decoder_free(&d);

        frame_decoder_init(&d, 0);
        ok(d.max == FRAME_MAX_PAYLOAD, "max 0 means FRAME_MAX_PAYLOAD");
        frame_decoder_free(&d);
        frame_decoder_init(&d, (size_t)FRAME_MAX_PAYLOAD * 4);
        ok(d.max == FRAME_MAX_PAYLOAD, "max is capped at FRAME_MAX_PAYLOAD");
        frame_header(b, 'O', FRAME_MAX_PAYLOAD + 1);
        rc = frame_decode(&d, (const char *)b, FRAME_HEADER, &used, &f);
        ok(rc == -1 && strstr(d.err, "over the limit of 16777216"), "over 16 MiB fails: %s", d.err);
        frame_decoder_free(&d);
        frame_decoder_init(&d, 0);
        frame_header(b, 'O', 0xFFFFFFFFu);
        rc = frame_decode(&d, (const char *)b, FRAME_HEADER, &used, &f);
        ok(rc == -1 &&
               strcmp(d.err, "frame of 4294967295 bytes is over the limit of 16777216") == 0,
           "a 4 GiB length fails without allocating: %s", d.err);
        frame_decoder_free(&d);
    }

    /* a malformed frame after good ones: the good ones come out first */
    {
        frame_decoder_t d;
        frame_decoder_init(&d, 0);
        unsigned char b[64];
        size_t m = 0;
        put(b, &m, 'E', "x", 1);
        b[m++] = 'Z';
        frame_t f[4];
        size_t used;
        int rc = frame_decode(&d, (const char *)b, m, &used, &f[0]);
        ok(rc == 1 && used == FRAME_HEADER + 1, "the good frame before garbage is delivered");
        if (rc == 1)
            free(f[0].payload);
        rc = frame_decode(&d, (const char *)b + used, m - used, &used, &f[0]);
        ok(rc == -1 && strcmp(d.err, "unknown frame type 0x5a") == 0, "then the garbage fails");
        frame_decoder_free(&d);
    }

    /* freeing mid-frame (LeakSanitizer checks nothing leaks) and reuse after free */
    {
        frame_decoder_t d;
        frame_decoder_init(&d, 0);
        unsigned char b[FRAME_HEADER + 4];
        frame_header(b, 'O', 100);
        memcpy(b + FRAME_HEADER, "abcd", 4);
        frame_t f;
        size_t used;
        int rc = frame_decode(&d, (const char *)b, sizeof b, &used, &f);
        ok(rc == 0 && d.buf != NULL && d.have == 4, "a frame in progress holds its buffer");
        frame_decoder_free(&d);
        ok(d.buf == NULL, "free releases a half-assembled payload");
        frame_decoder_free(&d);
        ok(d.buf == NULL, "free twice is harmless");
    }

    return tap_done();
}
