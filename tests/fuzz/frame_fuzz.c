/* libFuzzer target for the admin socket's frame decoder (core/repl/frame.c). The first two input
 * bytes pick the decoder's limit and a seed for the chunk sizes; the rest is the stream, fed
 * in chunks whose sizes come from the input so headers and payloads split everywhere. Checks
 * the decoder's contract: whole frames have a valid type, len <= max and a NUL-terminated
 * payload; `used` never exceeds the chunk; 0 means the chunk was consumed; -1 is sticky and
 * sets err. The decoder is freed wherever the input ends, mid-frame included (LeakSanitizer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* Small limits make the "over the limit" path reachable; 0 is the 16 MiB default. */
    static const size_t limits[] = {0, 1, 7, 64, 255, 4096, 65536, FRAME_MAX_PAYLOAD};
    size_t max = limits[data[0] % (sizeof limits / sizeof limits[0])];
    uint8_t seed = data[1];
    data += 2;
    size -= 2;

    frame_decoder_t d;
    frame_decoder_init(&d, max);
    size_t lim = d.max;
    int failed = 0;
    size_t off = 0, k = 0;
    while (off < size) {
        /* chunk sizes: 1..16 drawn from the stream's own bytes, mixed with the seed */
        size_t chunk = (size_t)((data[k % size] ^ seed) % 16) + 1;
        k++;
        if (chunk > size - off)
            chunk = size - off;
        const char *p = (const char *)data + off;
        off += chunk;
        while (chunk > 0) {
            size_t used = (size_t)-1;
            frame_t f;
            int rc = frame_decode(&d, p, chunk, &used, &f);
            if (used > chunk)
                abort();
            if (rc == -1) {
                if (!d.err[0])
                    abort(); /* a failure always says why */
                failed = 1;
                break;
            }
            if (failed)
                abort(); /* -1 is sticky */
            if (rc == 0) {
                if (used != chunk)
                    abort();
            } else if (rc == 1) {
                if (!frame_type_valid(f.type) || f.len > lim || !f.payload ||
                    f.payload[f.len] != '\0' || used == 0)
                    abort();
                free(f.payload);
            } else {
                abort();
            }
            p += used;
            chunk -= used;
        }
        if (failed) {
            /* once failed, every later call fails again without consuming input */
            size_t used = 1;
            frame_t f;
            if (frame_decode(&d, (const char *)data, size, &used, &f) != -1 || used != 0)
                abort();
            break;
        }
    }
    frame_decoder_free(&d);
    return 0;
}
