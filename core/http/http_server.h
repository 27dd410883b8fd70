/* The HTTP/1.1 server: a per-connection state machine (parsing with http-parser, limits,
 * pipelined responses in order, keep-alive) that talks to its transport through a small
 * I/O interface, plus the libuv TCP transport and listener. The fuzz target drives the
 * state machine through a fake transport; see docs/internals-http.md.
 *
 * Implemented by core/http/http_message.c (answer text), core/http/http_parse.c (bytes to requests),
 * core/http/http_conn.c (the connection state machine) and core/http/http_listener.c (the server,
 * its sockets and the libuv transport). */
#ifndef STEWARD_HTTP_SERVER_H
#define STEWARD_HTTP_SERVER_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_limits {
    size_t max_header_bytes;    /* request line + headers */
    size_t max_body_bytes;      /* decoded body */
    size_t max_connections;     /* open at once; more are answered 503 */
    uint64_t header_timeout_ms; /* from a request's first byte to its last header */
    uint64_t body_timeout_ms;   /* from the end of the headers to the end of the body */
    uint64_t idle_timeout_ms;   /* keep-alive with nothing to do */
    size_t max_pipelined;       /* requests parsed but not yet answered, per connection */
    /* Bodies being received, all connections together: a body is reserved in full when its
     * Content-Length arrives (chunk by chunk for a chunked one) and released when its
     * request is dispatched; one that does not fit is answered 503 with Retry-After. */
    size_t max_body_bytes_in_flight;
};
void http_limits_default(struct http_limits *l);

struct http_buf {
    char *data;
    size_t len, cap;
};
int http_buf_reserve(struct http_buf *b, size_t extra); /* 0 or -1 */
int http_buf_append(struct http_buf *b, const void *p, size_t n);
void http_buf_free(struct http_buf *b);
int http_buf_puts(struct http_buf *b, const char *s);

struct http_header {
    const char *name; /* lower-cased */
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* A parsed request; every pointer is valid only during the dispatch call. */
struct http_request {
    const char *method;
    const char *path;
    size_t path_len;
    const char *query; /* without the '?'; "" when none */
    size_t query_len;
    const struct http_header *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
    int http_major, http_minor;
    const char *remote; /* peer IP address, or "" */
};

typedef struct http_server http_server_t;
typedef struct http_conn http_conn_t;
typedef struct http_slot http_slot_t;

/* Called once per complete request. The callee must answer exactly once, now or later,
 * with http_slot_respond / http_slot_error. */
typedef void (*http_dispatch_fn)(http_server_t *s, http_slot_t *slot,
                                 const struct http_request *req, void *ud);

/* Why a request is refused before its body is read; the strings are copied in. */
struct http_refusal {
    int status;
    char code[64];
    char message[200];
    char extra_header[200]; /* a full "Name: value\r\n" line, or "" */
};
/* Called at the end of the headers of a request that has a body, before any of it is read
 * (req->body is empty): 0 admits it; otherwise fill *out: the server answers it, closes
 * the connection and never buffers the body. It runs inside the parser: it must not
 * suspend, nor touch the server. */
typedef int (*http_admit_fn)(http_server_t *s, const struct http_request *head, void *ud,
                             struct http_refusal *out);

struct http_stats {
    uint64_t accepted, rejected, requests, responses[6]; /* responses[n] = nxx answers */
    uint64_t parse_errors, timeouts, too_large, dropped; /* dropped: answers nobody got */
    uint64_t refused, over_budget; /* refused by admit; 503 over max_body_bytes_in_flight */
};

struct http_server {
    struct http_limits limits;
    http_dispatch_fn dispatch;
    void *ud;
    http_admit_fn admit;         /* NULL: every body is read */
    size_t body_bytes_in_flight; /* reserved by connections receiving a body */
    struct http_stats stats;
    http_conn_t *conns; /* every open connection */
    size_t nconns, nrejecting;
    int closing, aborting;
    uv_tcp_t *listener; /* NULL when not listening */
    int listener_closing;
    /* Called once the server is closing, the listener is closed and no connection is left. */
    void (*on_closed)(http_server_t *s, void *ud);
    int closed_notified;
};

void http_server_init(http_server_t *s, const struct http_limits *l, http_dispatch_fn dispatch,
                      void *ud);
/* Binds and listens; 0, or a negative libuv error with *err_what naming the step. */
int http_server_listen(http_server_t *s, uv_loop_t *loop, const char *host, int port,
                       const char **err_what);
/* The same on a socket with SO_REUSEPORT: worker processes each bind the one address. */
int http_server_listen_shared(http_server_t *s, uv_loop_t *loop, const char *host, int port,
                              const char **err_what);
int http_server_port(const http_server_t *s);
/* Stops accepting, closes idle connections, lets requests in flight finish (their
 * answers carry Connection: close). on_closed runs when the last connection is gone. */
void http_server_close(http_server_t *s);
/* Closes every connection now (answers in flight are dropped). For teardown. */
void http_server_abort(http_server_t *s);

/* ---- building answers ---- */

/* The reason phrase for a status ("Unknown" for unlisted codes). */
const char *http_status_reason(int status);
/* Starts a response head in b: "HTTP/1.1 <status> <reason>\r\n". b is reset first. */
void http_head_start(struct http_buf *b, int status);
/* Appends a header line; -1 (and nothing appended) when the name is not a token or the
 * value holds CR, LF or NUL. Content-Length, Transfer-Encoding, Connection and Date are
 * skipped (0): the server writes those. */
int http_head_add(struct http_buf *b, const char *name, size_t nl, const char *value, size_t vl);
/* Answers slot with the head built in head (status line + headers) and body; the server
 * adds Content-Length, Date and Connection. Frees the slot when its connection is gone. */
void http_slot_respond(http_slot_t *slot, int status, const struct http_buf *head, const char *body,
                       size_t body_len);
/* Answers with the JSON error body {"error":{"code","message","details"}}. details_json
 * is a JSON object text or NULL. extra_header is a full "Name: value\r\n" line or NULL. */
void http_slot_error(http_slot_t *slot, int status, const char *code, const char *message,
                     const char *details_json, const char *extra_header);
/* Appends s to b as a JSON string literal (with quotes). */
int http_json_string(struct http_buf *b, const char *s, size_t n);
/* The Date header value for now, formatted once per second and without the locale. */
const char *http_date(void);
/* Whether name[0..nl) equals lower, ignoring ASCII case. */
int http_token_eq(const char *name, size_t nl, const char *lower);

/* ---- the connection state machine and its transport ---- */

struct http_io {
    /* Writes data (one write in flight at a time); the transport calls
     * http_conn_written when done, never from inside this call. */
    int (*write)(http_conn_t *c, const char *data, size_t len); /* 0 or < 0 */
    void (*read)(http_conn_t *c, int on);                       /* start/stop delivering bytes */
    void (*timer)(http_conn_t *c, uint64_t ms);                 /* arm (0 = stop) the one timer */
    /* Close the transport; linger: shut down writing and drain input for a moment first so
     * the peer reads the last answer. The transport calls http_conn_free later, never from
     * inside this call. */
    void (*close)(http_conn_t *c, int linger);
};

struct http_hdr_off {
    uint32_t name, name_len, value, value_len;
};

enum http_phase { HTTP_PH_NONE = 0, HTTP_PH_IDLE, HTTP_PH_HEADERS, HTTP_PH_BODY };

struct http_conn {
    http_server_t *srv;
    const struct http_io *io;
    void *io_ud;
    http_conn_t *prev, *next;
    http_parser parser;
    struct http_buf in; /* unparsed input */
    size_t in_off;
    struct http_buf url, hbuf, body;
    struct http_hdr_off *hdrs;
    size_t nhdrs, hdrs_cap;
    size_t hdr_bytes;
    int last_was_value;
    int in_msg, in_body, msg_ready, expect_continue, body_too_large;
    int err_status;               /* a limit or parse error to answer, found in a callback */
    struct http_refusal *refusal; /* err_status came from admit: its answer */
    size_t body_reserved;         /* this connection's share of body_bytes_in_flight */
    http_slot_t *q_head, *q_tail; /* answers not yet written, in request order */
    size_t nq;
    struct http_buf out, wbuf; /* answers ready / being written */
    int writing, reading, closing, close_after_flush, linger, peer_eof, stop_parsing;
    int parsing, rejected;
    enum http_phase phase;
    uint64_t msg_seq, timer_seq;
    char remote[64];
};

/* Sets up c (zeroed by the caller or not) as a new connection of s. reject: over
 * max_connections, answer 503 and close. */
void http_conn_init(http_conn_t *c, http_server_t *s, const struct http_io *io, void *io_ud,
                    int reject);
/* Where the transport puts the next bytes; then http_conn_received(c, n). */
void http_conn_read_buffer(http_conn_t *c, char **base, size_t *len);
void http_conn_received(http_conn_t *c, size_t n);
/* Copies data through read_buffer/received (for tests and the fuzz target). */
void http_conn_feed(http_conn_t *c, const char *data, size_t len);
void http_conn_eof(http_conn_t *c);                 /* the peer closed its side */
void http_conn_written(http_conn_t *c, int status); /* the write finished (status < 0: failed) */
void http_conn_timeout(http_conn_t *c);
/* The transport is closed: orphans pending answers, frees buffers, unlinks c. */
void http_conn_free(http_conn_t *c);
/* Closes c now (linger: let the peer read the last answer first); pending answers are
 * dropped when they come. */
void http_conn_close(http_conn_t *c, int linger);
/* The server is closing: finish what is in flight on c, then close it. */
void http_conn_server_closing(http_conn_t *c);

/* ---- internal to core/http_*.c ---- */

/* One request's place in its connection's answer queue. */
struct http_slot {
    http_slot_t *next;
    http_conn_t *conn; /* NULL once the connection is gone: the answer is dropped */
    int done, close, head_req, keep_alive, http_minor;
    struct http_buf resp; /* the answer, while earlier ones are still pending */
};

/* http_conn.c, for the parser */
http_slot_t *http_slot_push(http_conn_t *c); /* a new slot at the end of the queue */
/* Answers a request the server refuses by itself, after the answers before it, and closes. */
void http_conn_fail(http_conn_t *c, int status, const char *code, const char *message,
                    const char *details, const char *extra_header);
void http_conn_continue(http_conn_t *c);       /* queues "100 Continue" */
int http_conn_can_parse(const http_conn_t *c); /* not closing, under the back-pressure limits */
/* Re-evaluates reading, closing and the phase timer after any change. */
void http_conn_update(http_conn_t *c);
/* http_parse.c: gives back the connection's body reservation (and a large body buffer). */
void http_conn_body_release(http_conn_t *c);
/* http_parse.c: parses as much of data as allowed, dispatching complete requests; returns
 * how much was used (all of it when the rest is to be thrown away). */
size_t http_conn_parse(http_conn_t *c, const char *data, size_t len);
/* http_listener.c: runs on_closed once the server is closing and nothing is left. */
void http_server_check_closed(http_server_t *s);

#endif
