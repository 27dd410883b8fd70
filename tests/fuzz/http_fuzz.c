/* libFuzzer target for the HTTP server's connection state machine (core/http/http_conn.c) and
 * the route table (core/http/http_router.c): arbitrary bytes are fed in pieces through a fake
 * transport, requests are routed and answered now or later (out of order), timeouts and
 * peer EOF are injected, and the connection is torn down with answers still pending. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_router.h"
#include "http_server.h"

struct fake {
    http_conn_t c;
    int write_pending, closed;
};

static int f_write(http_conn_t *c, const char *data, size_t len)
{
    (void)data;
    (void)len;
    ((struct fake *)c)->write_pending = 1;
    return 0;
}
static void f_read(http_conn_t *c, int on)
{
    (void)c, (void)on;
}
static void f_timer(http_conn_t *c, uint64_t ms)
{
    (void)c, (void)ms;
}
static void f_close(http_conn_t *c, int linger)
{
    (void)linger;
    ((struct fake *)c)->closed = 1;
}
static const struct http_io io = {f_write, f_read, f_timer, f_close};

static http_router_t *router;
static http_slot_t *held[64];
static size_t nheld;
static uint8_t mode;

static void answer(http_slot_t *s, int status)
{
    struct http_buf head = {0};
    http_head_start(&head, status);
    http_head_add(&head, "Content-Type", 12, "text/plain", 10);
    http_slot_respond(s, status, &head, "fuzz", 4);
    http_buf_free(&head);
}

static void dispatch(http_server_t *s, http_slot_t *slot, const struct http_request *req, void *ud)
{
    (void)s;
    (void)ud;
    struct http_route_match m;
    char allow[128];
    enum http_route_result r =
        http_router_match(router, req->method, req->path, req->path_len, &m, allow, sizeof allow);
    if (r == HTTP_ROUTE_NOT_FOUND) {
        http_slot_error(slot, 404, "not_found", "no route", NULL, NULL);
    } else if (r == HTTP_ROUTE_BAD_METHOD) {
        http_slot_error(slot, 405, "method_not_allowed", "no", NULL, "Allow: GET\r\n");
    } else if ((mode & 1) && nheld < 64) {
        held[nheld++] = slot; /* answered later, in reverse order */
    } else {
        answer(slot, 200);
    }
}

/* Refuses a body to any path holding an 'x' (with a header line, as the daemon's 401). */
static int admit(http_server_t *s, const struct http_request *head, void *ud,
                 struct http_refusal *out)
{
    (void)s;
    (void)ud;
    if (head->body_len != 0)
        abort();
    if (!memchr(head->path, 'x', head->path_len))
        return 0;
    out->status = 401;
    snprintf(out->code, sizeof out->code, "unauthorized");
    snprintf(out->extra_header, sizeof out->extra_header, "WWW-Authenticate: Bearer\r\n");
    return -1;
}

static void settle(struct fake *f)
{
    while (f->write_pending && !f->closed) {
        f->write_pending = 0;
        http_conn_written(&f->c, 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!router) {
        router = http_router_new();
        void *old;
        const char *why;
        http_router_add(router, "GET", "/a/{id}", (void *)1, &old, &why);
        http_router_add(router, "POST", "/v1/events", (void *)2, &old, &why);
        http_router_add(router, "*", "/any", (void *)3, &old, &why);
    }
    if (size < 2)
        return 0;
    mode = data[0];
    size_t piece = (size_t)data[1] % 64 + 1;
    int use_admit = (data[1] & 0x40) != 0, small_budget = (data[1] & 0x80) != 0;
    data += 2;
    size -= 2;

    struct http_limits l;
    http_limits_default(&l);
    l.max_header_bytes = 1024;
    l.max_body_bytes = 512;
    l.max_pipelined = (mode >> 4) % 8 + 1;
    l.max_body_bytes_in_flight = small_budget ? 512 : 4096;
    http_server_t srv;
    http_server_init(&srv, &l, dispatch, NULL);
    if (use_admit)
        srv.admit = admit;
    struct fake *f = calloc(1, sizeof *f);
    nheld = 0;
    http_conn_init(&f->c, &srv, &io, f, (mode & 0x80) != 0);
    settle(f);
    for (size_t off = 0; off < size && !f->closed; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        http_conn_feed(&f->c, (const char *)data + off, n);
        if (mode & 2)
            settle(f);
        if ((mode & 4) && nheld) /* answer the latest held request early */
            answer(held[--nheld], 201);
    }
    if (mode & 8)
        http_conn_timeout(&f->c);
    if (mode & 0x40)
        http_conn_eof(&f->c);
    settle(f);
    /* Half the held answers before the transport goes, half after (dropped). */
    size_t keep = nheld / 2;
    while (nheld > keep)
        answer(held[--nheld], 202);
    settle(f);
    http_conn_free(&f->c);
    if (srv.body_bytes_in_flight != 0) /* every reservation is given back */
        abort();
    while (nheld)
        answer(held[--nheld], 203);
    free(f);
    return 0;
}
