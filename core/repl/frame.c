/* The admin socket's frame codec (core/repl/frame.h): the header encoder and the incremental
 * decoder both ends of the socket use. The decoder must survive any byte sequence (it reads
 * what a local client sends and is fuzzed by tests/fuzz/frame_fuzz.c), so every failure is
 * reported through d->err and is sticky. */
#include "frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int frame_type_valid(unsigned char t)
{
    switch (t) {
    case 'H':
    case 'E':
    case 'J':
    case 'C':
    case 'I':
    case 'G':
    case 'O':
    case 'R':
    case 'X':
    case 'M':
    case 'L':
    case 'B': return 1;
    default: return 0;
    }
}

void frame_header(unsigned char out[FRAME_HEADER], unsigned char t, uint32_t len)
{
    out[0] = t;
    out[1] = (unsigned char)(len >> 24);
    out[2] = (unsigned char)(len >> 16);
    out[3] = (unsigned char)(len >> 8);
    out[4] = (unsigned char)len;
}

void frame_decoder_init(frame_decoder_t *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = (max == 0 || max > FRAME_MAX_PAYLOAD) ? FRAME_MAX_PAYLOAD : max;
}

void frame_decoder_free(frame_decoder_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->have = 0;
    d->hdr_have = 0;
}

/* The struct has no separate "failed" flag (its layout is shared with the client), so a
 * non-empty err is the failed state. */
static int fail(frame_decoder_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->have = 0;
    d->hdr_have = 0;
    if (!d->err[0])
        snprintf(d->err, sizeof d->err, "malformed frame");
    return -1;
}

int frame_decode(frame_decoder_t *d, const char *data, size_t n, size_t *used, frame_t *out)
{
    size_t pos = 0;
    if (used)
        *used = 0;
    if (d->err[0])
        return -1;
    if (!data)
        n = 0;
    while (d->hdr_have < FRAME_HEADER) {
        if (pos == n) {
            if (used)
                *used = pos;
            return 0;
        }
        d->hdr[d->hdr_have++] = (unsigned char)data[pos++];
        if (d->hdr_have == 1 && !frame_type_valid(d->hdr[0])) {
            snprintf(d->err, sizeof d->err, "unknown frame type 0x%02x", d->hdr[0]);
            return fail(d);
        }
        if (d->hdr_have == FRAME_HEADER) {
            d->type = d->hdr[0];
            d->len = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
                     (uint32_t)d->hdr[3] << 8 | (uint32_t)d->hdr[4];
            if (d->len > d->max) {
                snprintf(d->err, sizeof d->err, "frame of %lu bytes is over the limit of %lu",
                         (unsigned long)d->len, (unsigned long)d->max);
                return fail(d);
            }
            d->buf = malloc((size_t)d->len + 1);
            if (!d->buf) {
                snprintf(d->err, sizeof d->err, "out of memory for a frame of %lu bytes",
                         (unsigned long)d->len);
                return fail(d);
            }
            d->have = 0;
        }
    }
    size_t take = n - pos;
    if (take > d->len - d->have)
        take = d->len - d->have;
    if (take) {
        memcpy(d->buf + d->have, data + pos, take);
        d->have += take;
        pos += take;
    }
    if (used)
        *used = pos;
    if (d->have < d->len)
        return 0;
    d->buf[d->len] = '\0';
    out->type = d->type;
    out->len = d->len;
    out->payload = d->buf;
    d->buf = NULL;
    d->have = 0;
    d->hdr_have = 0;
    return 1;
}
