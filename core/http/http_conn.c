/* The HTTP/1.1 connection state machine: feeds input to the parser (core/http/http_parse.c),
 * keeps answers in request order (pipelining), decides keep-alive and closing, arms the one
 * timer by phase, applies back-pressure (max_pipelined, buffered output). It never touches
 * a socket: it calls struct http_io, so tests and the fuzz target drive it with plain memory
 * and core/http/http_listener.c with libuv TCP streams. */
#include "http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stop parsing more requests while this much output waits for a slow reader. */
#define OUT_HIGH_WATER (256 * 1024)
#define READ_CHUNK     65536

static void slot_free(http_slot_t *s)
{
    http_buf_free(&s->resp);
    free(s);
}

static void flush(http_conn_t *c)
{
    if (c->writing || c->closing)
        return;
    if (c->out.len == 0) {
        if (c->close_after_flush)
            http_conn_close(c, c->linger);
        return;
    }
    struct http_buf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    c->writing = 1;
    if (c->io->write(c, c->wbuf.data, c->wbuf.len) != 0) {
        c->writing = 0;
        http_conn_close(c, 0);
    }
}

/* Moves finished answers at the head of the queue to the output, in request order. */
static void drain_queue(http_conn_t *c)
{
    while (c->q_head && c->q_head->done) {
        http_slot_t *s = c->q_head;
        c->q_head = s->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->nq--;
        if (s->resp.len && http_buf_append(&c->out, s->resp.data, s->resp.len) != 0)
            c->close_after_flush = 1;
        if (s->close) {
            c->close_after_flush = 1;
            c->stop_parsing = 1;
        }
        slot_free(s);
        if (c->close_after_flush)
            break;
    }
    flush(c);
}

static void write_response(http_conn_t *c, http_slot_t *s, struct http_buf *b, int status,
                           const struct http_buf *head, const char *body, size_t body_len)
{
    http_server_t *srv = c->srv;
    int bodyless = status < 200 || status == 204 || status == 304;
    if (status >= 200) {
        if (!s->keep_alive || (srv->closing && !s->next && !c->in_msg))
            s->close = 1;
    }
    size_t need = head->len + 128 + (bodyless || s->head_req ? 0 : body_len);
    if (http_buf_reserve(b, need) != 0) {
        s->close = 1;
        return;
    }
    http_buf_append(b, head->data, head->len);
    char line[128];
    int n;
    if (status >= 200) {
        if (!bodyless) {
            n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", body_len);
            http_buf_append(b, line, (size_t)n);
        }
        n = snprintf(line, sizeof line, "Date: %s\r\n", http_date());
        http_buf_append(b, line, (size_t)n);
        if (s->close)
            http_buf_puts(b, "Connection: close\r\n");
        else if (s->http_minor == 0)
            http_buf_puts(b, "Connection: keep-alive\r\n");
    }
    http_buf_append(b, "\r\n", 2);
    if (!bodyless && !s->head_req)
        http_buf_append(b, body, body_len);
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        srv->stats.responses[cls]++;
}

void http_slot_respond(http_slot_t *s, int status, const struct http_buf *head, const char *body,
                       size_t body_len)
{
    http_conn_t *c = s->conn;
    if (!c) {
        slot_free(s);
        return;
    }
    if (s->done)
        return;
    if (status < 100 || status > 999)
        status = 500;
    s->done = 1;
    if (c->q_head == s) {
        write_response(c, s, &c->out, status, head, body, body_len);
        drain_queue(c);
        http_conn_update(c);
    } else {
        write_response(c, s, &s->resp, status, head, body, body_len);
    }
}

http_slot_t *http_slot_push(http_conn_t *c)
{
    http_slot_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->conn = c;
    s->keep_alive = 1;
    s->http_minor = 1;
    if (c->q_tail)
        c->q_tail->next = s;
    else
        c->q_head = s;
    c->q_tail = s;
    c->nq++;
    return s;
}

/* Answers a request the server refuses by itself, after the answers before it, and closes. */
void http_conn_fail(http_conn_t *c, int status, const char *code, const char *message,
                    const char *details, const char *extra)
{
    c->stop_parsing = 1;
    c->in_msg = c->in_body = 0;
    c->linger = 1;
    http_conn_body_release(c); /* no more of a body will be read */
    http_slot_t *s = http_slot_push(c);
    if (!s) {
        http_conn_close(c, 0);
        return;
    }
    s->close = 1;
    http_slot_error(s, status, code, message, details, extra);
}

void http_conn_continue(http_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (c->nq == 0) {
        http_buf_append(&c->out, cont, sizeof cont - 1);
        flush(c);
        return;
    }
    /* Interim answers belong after the final answers of the requests before this one. */
    http_slot_t *s = http_slot_push(c);
    if (s) {
        s->done = 1;
        http_buf_append(&s->resp, cont, sizeof cont - 1);
    }
}

int http_conn_can_parse(const http_conn_t *c)
{
    return !c->closing && !c->stop_parsing && c->nq < c->srv->limits.max_pipelined &&
           c->out.len + c->wbuf.len < OUT_HIGH_WATER;
}

static void drain_input(http_conn_t *c)
{
    size_t used = http_conn_parse(c, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in_off += used;
    if (c->in_off >= c->in.len)
        c->in_off = c->in.len = 0;
}

static enum http_phase conn_phase(const http_conn_t *c)
{
    if (c->closing || c->stop_parsing || c->peer_eof)
        return HTTP_PH_NONE;
    if (c->in_msg)
        return c->in_body ? HTTP_PH_BODY : HTTP_PH_HEADERS;
    if (c->nq == 0 && !c->writing && c->out.len == 0 && c->in.len == c->in_off)
        return HTTP_PH_IDLE;
    return HTTP_PH_NONE;
}

void http_conn_update(http_conn_t *c)
{
    if (c->closing)
        return;
    if (!c->parsing && c->in.len > c->in_off && http_conn_can_parse(c))
        drain_input(c);
    if (c->closing)
        return;
    int quiet = c->nq == 0 && !c->writing && c->out.len == 0 && !c->in_msg;
    if (quiet && (c->peer_eof || c->srv->closing || c->stop_parsing)) {
        http_conn_close(c, c->stop_parsing ? c->linger : 0);
        return;
    }
    int want = http_conn_can_parse(c) && !c->peer_eof && c->in.len == c->in_off;
    if (want != c->reading) {
        c->reading = want;
        c->io->read(c, want);
    }
    enum http_phase ph = conn_phase(c);
    if (ph != c->phase || (ph != HTTP_PH_NONE && c->timer_seq != c->msg_seq)) {
        const struct http_limits *l = &c->srv->limits;
        uint64_t ms = ph == HTTP_PH_IDLE      ? l->idle_timeout_ms
                      : ph == HTTP_PH_HEADERS ? l->header_timeout_ms
                      : ph == HTTP_PH_BODY    ? l->body_timeout_ms
                                              : 0;
        c->phase = ph;
        c->timer_seq = c->msg_seq;
        if (ms || ph == HTTP_PH_NONE)
            c->io->timer(c, ms);
    }
}

void http_conn_close(http_conn_t *c, int linger)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->phase = HTTP_PH_NONE;
    /* Answers still being computed are dropped; their slots are freed when they arrive. */
    while (c->q_head) {
        http_slot_t *s = c->q_head;
        c->q_head = s->next;
        if (s->done) {
            slot_free(s);
        } else {
            s->conn = NULL;
            s->next = NULL;
            c->srv->stats.dropped++;
        }
    }
    c->q_tail = NULL;
    c->nq = 0;
    c->io->timer(c, 0);
    if (c->reading) {
        c->reading = 0;
        c->io->read(c, 0);
    }
    c->io->close(c, linger);
}

void http_conn_init(http_conn_t *c, http_server_t *s, const struct http_io *io, void *io_ud,
                    int reject)
{
    memset(c, 0, sizeof *c);
    c->srv = s;
    c->io = io;
    c->io_ud = io_ud;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->stats.accepted++;
    c->rejected = reject;
    if (reject) {
        s->nrejecting++;
        s->stats.rejected++;
        char details[96];
        snprintf(details, sizeof details, "{\"limit\":\"max_connections\",\"max\":%zu}",
                 s->limits.max_connections);
        http_conn_fail(c, 503, "too_many_connections", "the server has too many open connections",
                       details, "Retry-After: 1\r\n");
    }
    http_conn_update(c);
}

void http_conn_server_closing(http_conn_t *c)
{
    /* A request being received is still answered (with Connection: close); an idle
     * connection closes now. */
    if (!c->in_msg)
        c->stop_parsing = 1;
    http_conn_update(c);
}

static char shared_in[READ_CHUNK];

void http_conn_read_buffer(http_conn_t *c, char **base, size_t *len)
{
    (void)c;
    *base = shared_in;
    *len = sizeof shared_in;
}

void http_conn_received(http_conn_t *c, size_t n)
{
    if (c->closing || n == 0)
        return;
    if (c->in.len == c->in_off) {
        /* The usual case: parse straight from the shared read buffer and keep only what
         * could not be parsed yet (pipelined requests over the limit). */
        c->in.len = c->in_off = 0;
        size_t used = http_conn_parse(c, shared_in, n);
        if (used < n && http_buf_append(&c->in, shared_in + used, n - used) != 0) {
            http_conn_close(c, 0);
            return;
        }
    } else if (http_buf_append(&c->in, shared_in, n) != 0) {
        http_conn_close(c, 0);
        return;
    }
    http_conn_update(c);
}

void http_conn_feed(http_conn_t *c, const char *data, size_t len)
{
    while (len > 0 && !c->closing) {
        char *base;
        size_t cap;
        http_conn_read_buffer(c, &base, &cap);
        size_t n = len < cap ? len : cap;
        memcpy(base, data, n);
        http_conn_received(c, n);
        data += n;
        len -= n;
    }
}

void http_conn_eof(http_conn_t *c)
{
    if (c->closing)
        return;
    c->peer_eof = 1;
    /* A half-closed peer may still read the answers to what it sent. */
    if (c->nq == 0)
        http_conn_close(c, 0);
    else
        http_conn_update(c);
}

void http_conn_written(http_conn_t *c, int status)
{
    if (c->closing)
        return;
    c->writing = 0;
    c->wbuf.len = 0;
    if (status < 0) {
        http_conn_close(c, 0);
        return;
    }
    flush(c);
    http_conn_update(c);
}

void http_conn_timeout(http_conn_t *c)
{
    if (c->closing)
        return;
    enum http_phase ph = c->phase;
    c->phase = HTTP_PH_NONE;
    if (ph == HTTP_PH_IDLE) {
        http_conn_close(c, 0);
    } else if (ph == HTTP_PH_HEADERS || ph == HTTP_PH_BODY) {
        c->srv->stats.timeouts++;
        const struct http_limits *l = &c->srv->limits;
        char details[96];
        snprintf(details, sizeof details, "{\"limit\":\"%s\",\"seconds\":%.3f}",
                 ph == HTTP_PH_HEADERS ? "header_timeout" : "body_timeout",
                 (double)(ph == HTTP_PH_HEADERS ? l->header_timeout_ms : l->body_timeout_ms) /
                     1000.0);
        http_conn_fail(c, 408, "request_timeout",
                       ph == HTTP_PH_HEADERS ? "the request headers took too long to arrive"
                                             : "the request body took too long to arrive",
                       details, NULL);
        http_conn_update(c);
    }
}

void http_conn_free(http_conn_t *c)
{
    http_server_t *s = c->srv;
    c->closing = 1;
    while (c->q_head) { /* only when the transport died without conn_close */
        http_slot_t *sl = c->q_head;
        c->q_head = sl->next;
        if (sl->done) {
            slot_free(sl);
        } else {
            sl->conn = NULL;
            sl->next = NULL;
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    if (c->rejected)
        s->nrejecting--;
    http_conn_body_release(c);
    free(c->refusal);
    c->refusal = NULL;
    http_buf_free(&c->in);
    http_buf_free(&c->url);
    http_buf_free(&c->hbuf);
    http_buf_free(&c->body);
    http_buf_free(&c->out);
    http_buf_free(&c->wbuf);
    free(c->hdrs);
    c->hdrs = NULL;
    http_server_check_closed(s);
}
