/* The admin socket's framing (docs/repl.md): a frame is one type byte, a 4-byte big-endian
 * payload length, then the payload. Shared by the daemon's side (bindings/unix.c) and the
 * client (`steward repl` / `steward eval`, core/repl/repl_client.c), and fuzzed
 * (tests/fuzz/frame_fuzz.c). The decoder is incremental: bytes arrive as the socket gives them.
 *
 * Frame types. Client -> daemon:
 *   'H' hello      "key=value" lines (color=1, width=120, client=...); optional, any time
 *   'E' eval       a Lua chunk; the result comes back rendered as text
 *   'J' eval-json  a Lua chunk; the result comes back as a JSON array of the values
 *   'C' complete   the word before the cursor; answered with 'L'
 *   'I' interrupt  empty; cancels the running eval
 * Daemon -> client:
 *   'G' greeting   first frame of a session: a banner line, then "key=value" lines (role=...)
 *   'O' output     streamed text (print, tails, traces) of the running eval
 *   'R' result     the eval finished: its rendered results (or JSON array for 'J')
 *   'X' error      the eval failed: the message (and traceback)
 *   'M' more       the chunk is incomplete (the client reads another line and re-sends)
 *   'L' list       completion candidates, one per line
 *   'B' bye        the daemon ends the session: the reason */
#ifndef STEWARD_FRAME_H
#define STEWARD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER      5
#define FRAME_MAX_PAYLOAD (16u << 20) /* decoders refuse larger frames */

/* 1 when t is one of the types above, else 0. */
int frame_type_valid(unsigned char t);

/* Writes the 5-byte header of a frame of type t with len payload bytes into out. */
void frame_header(unsigned char out[FRAME_HEADER], unsigned char t, uint32_t len);

typedef struct frame_decoder {
    size_t max; /* largest payload accepted (<= FRAME_MAX_PAYLOAD) */
    unsigned char hdr[FRAME_HEADER];
    size_t hdr_have;
    unsigned char type;
    uint32_t len;
    char *buf; /* payload being assembled (malloc'd, len + 1 bytes, NUL-terminated) */
    size_t have;
    char err[96]; /* why the stream is malformed, once frame_decode returned -1 */
} frame_decoder_t;

/* max 0 means FRAME_MAX_PAYLOAD. */
void frame_decoder_init(frame_decoder_t *d, size_t max);
void frame_decoder_free(frame_decoder_t *d);

typedef struct frame {
    unsigned char type;
    uint32_t len;
    char *payload; /* malloc'd, len + 1 bytes, NUL-terminated; the caller frees it */
} frame_t;

/* Feeds up to n bytes. Returns 1 with *out filled when a frame completed (having consumed
 * *used bytes: call again with the rest), 0 when all n bytes were consumed and more are
 * needed, or -1 when the stream is malformed (unknown type, payload over max, out of memory;
 * d->err says which). After -1 the decoder stays failed. */
int frame_decode(frame_decoder_t *d, const char *data, size_t n, size_t *used, frame_t *out);

#endif
