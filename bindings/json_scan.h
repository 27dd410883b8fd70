/* Private to steward.json: a pass over JSON text before lua-cjson decodes it, which cjson
 * cannot do itself: refuse duplicate keys in an object (which one would win is not
 * defined, and an idempotency key must not be ambiguous), and bound the nesting depth and
 * the number of values, so the decode that follows (on the loop thread) does bounded work.
 * It is linear in the text and allocates at most in proportion to the number of keys.
 * Syntax is cjson's business: on malformed text the scan says so and cjson's error
 * message is the one the caller reports. Fuzzed by tests/fuzz/json_fuzz.c. */
#ifndef STEWARD_JSON_SCAN_H
#define STEWARD_JSON_SCAN_H

#include <stddef.h>

enum json_scan_status {
    JSON_SCAN_OK = 0,
    JSON_SCAN_SYNTAX,    /* not JSON: let the decoder say why */
    JSON_SCAN_DEPTH,     /* nested deeper than max_depth */
    JSON_SCAN_VALUES,    /* more than max_values values */
    JSON_SCAN_DUPLICATE, /* a key repeated in one object */
    JSON_SCAN_NOMEM,
};

struct json_scan_limits {
    size_t max_depth;  /* arrays and objects inside each other; 0: no limit */
    size_t max_values; /* every scalar, array and object counts one; 0: no limit */
};

struct json_scan_result {
    enum json_scan_status status;
    size_t offset; /* byte offset where the problem was found */
    /* JSON_SCAN_DUPLICATE: the key, unescaped (truncated to fit; key_len is its length) */
    char key[128];
    size_t key_len;
};

/* Scans text[0..n); returns res->status. */
enum json_scan_status json_scan(const char *text, size_t n, const struct json_scan_limits *lim,
                                struct json_scan_result *res);

#endif
