/* Unit tests of the connection state machine in core/http/http_conn.c, driven through a fake
 * transport (no sockets): pipelined answers kept in order, keep-alive rules, limits (431,
 * 413, 400), 100-continue, timeouts by phase, answers that arrive after the connection is
 * gone, admission before the body and the byte budget of bodies in flight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"
#include "tap.h"

struct fake {
    http_conn_t c; /* first: the io callbacks cast back */
    struct http_buf wrote;
    int write_pending, reading, closed, linger;
    uint64_t timer_ms;
};

static int f_write(http_conn_t *c, const char *data, size_t len)
{
    struct fake *f = (struct fake *)c;
    http_buf_append(&f->wrote, data, len);
    f->write_pending = 1;
    return 0;
}
static void f_read(http_conn_t *c, int on)
{
    ((struct fake *)c)->reading = on;
}
static void f_timer(http_conn_t *c, uint64_t ms)
{
    ((struct fake *)c)->timer_ms = ms;
}
static void f_close(http_conn_t *c, int linger)
{
    struct fake *f = (struct fake *)c;
    f->closed = 1;
    f->linger = linger;
}
static const struct http_io fake_io = {f_write, f_read, f_timer, f_close};

/* Requests seen by the dispatcher; answered later by the test. */
static http_slot_t *slots[16];
static char paths[16][64];
static char bodies[16][64];
static int nslots;
static int auto_answer;

static void answer(http_slot_t *s, int status, const char *body)
{
    struct http_buf head = {0};
    http_head_start(&head, status);
    http_head_add(&head, "X-Test", 6, "1", 1);
    http_slot_respond(s, status, &head, body, strlen(body));
    http_buf_free(&head);
}

static void dispatch(http_server_t *s, http_slot_t *slot, const struct http_request *req, void *ud)
{
    (void)s;
    (void)ud;
    if (nslots < 16) {
        snprintf(paths[nslots], sizeof paths[0], "%.*s", (int)req->path_len, req->path);
        snprintf(bodies[nslots], sizeof bodies[0], "%.*s", (int)req->body_len, req->body);
    }
    if (auto_answer) {
        answer(slot, 200, paths[nslots < 16 ? nslots : 15]);
        nslots++;
        return;
    }
    slots[nslots++] = slot;
}

static void settle(struct fake *f)
{
    while (f->write_pending && !f->closed) {
        f->write_pending = 0;
        http_conn_written(&f->c, 0);
    }
}

static struct fake *open_conn(http_server_t *s)
{
    struct fake *f = calloc(1, sizeof *f);
    nslots = 0;
    http_conn_init(&f->c, s, &fake_io, f, 0);
    return f;
}

static void close_conn(struct fake *f)
{
    http_conn_free(&f->c);
    http_buf_free(&f->wrote);
    free(f);
}

static void feed(struct fake *f, const char *s)
{
    http_conn_feed(&f->c, s, strlen(s));
    settle(f);
}

static int wrote_has(struct fake *f, const char *needle)
{
    http_buf_append(&f->wrote, "", 1);
    f->wrote.len--;
    return strstr(f->wrote.data ? f->wrote.data : "", needle) != NULL;
}

static const char *after(struct fake *f, const char *needle)
{
    http_buf_append(&f->wrote, "", 1);
    f->wrote.len--;
    return f->wrote.data ? strstr(f->wrote.data, needle) : NULL;
}

static int admit_calls;

/* Refuses bodies sent to /deny, before they are read. */
static int admit(http_server_t *s, const struct http_request *head, void *ud,
                 struct http_refusal *out)
{
    (void)s;
    (void)ud;
    admit_calls++;
    if (head->path_len != 5 || memcmp(head->path, "/deny", 5) != 0)
        return 0;
    out->status = 401;
    snprintf(out->code, sizeof out->code, "unauthorized");
    snprintf(out->message, sizeof out->message, "no token");
    snprintf(out->extra_header, sizeof out->extra_header, "WWW-Authenticate: Bearer\r\n");
    return -1;
}

static void test_admission(void)
{
    struct http_limits l;
    http_limits_default(&l);
    l.max_body_bytes = 100;
    l.max_body_bytes_in_flight = 150;
    http_server_t srv;
    http_server_init(&srv, &l, dispatch, NULL);
    srv.admit = admit;
    auto_answer = 1;

    struct fake *f = open_conn(&srv);
    feed(f, "POST /deny HTTP/1.1\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n");
    ok(wrote_has(f, "HTTP/1.1 401 ") && wrote_has(f, "WWW-Authenticate: Bearer\r\n") &&
           !wrote_has(f, "100 Continue") && f->closed && f->linger && nslots == 0,
       "admit refuses at the headers: 401 with its header, no 100 Continue, closed");
    ok(srv.body_bytes_in_flight == 0 && srv.stats.refused == 1,
       "nothing reserved; counted as refused");
    close_conn(f);

    admit_calls = 0;
    f = open_conn(&srv);
    feed(f, "GET /deny HTTP/1.1\r\n\r\n");
    ok(admit_calls == 0 && nslots == 1, "a request without a body is not asked about");
    close_conn(f);

    /* The budget: a body reserves its Content-Length until it is dispatched. */
    f = open_conn(&srv);
    struct fake *g = open_conn(&srv);
    feed(f, "POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    ok(srv.body_bytes_in_flight == 100, "a body being received reserves its Content-Length");
    feed(g, "POST /b HTTP/1.1\r\nContent-Length: 60\r\n\r\n");
    ok(wrote_has(g, "HTTP/1.1 503 ") && wrote_has(g, "Retry-After: 1\r\n") &&
           wrote_has(g, "max_body_bytes_in_flight") && g->closed && srv.stats.over_budget == 1,
       "a body that does not fit the budget: 503 with Retry-After, naming the limit");
    close_conn(g);
    close_conn(f);
    ok(srv.body_bytes_in_flight == 0, "closing the connection gives the reservation back");

    f = open_conn(&srv);
    feed(f, "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /c HTTP/1.1\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    ok(nslots == 1 && strcmp(bodies[0], "abc") == 0 && srv.body_bytes_in_flight == 5,
       "dispatch gives a body's reservation back; a chunk reserves at its size line");
    feed(f, "0\r\n\r\n");
    ok(nslots == 2 && strcmp(bodies[1], "hello") == 0 && srv.body_bytes_in_flight == 0,
       "the chunked body is dispatched and its reservation given back");
    close_conn(f);

    /* A chunk size line past max_body_bytes is refused at once. */
    f = open_conn(&srv);
    feed(f, "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nab");
    ok(wrote_has(f, "HTTP/1.1 413 ") && f->closed && nslots == 0 && srv.body_bytes_in_flight == 0,
       "a chunk size of 2^63: 413 from its size line");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n");
    ok(!f->closed && srv.body_bytes_in_flight == 64, "a chunk within the limit is awaited");
    feed(f, "0123456789012345678901234567890123456789012345678901234567890123\r\n41\r\n");
    ok(wrote_has(f, "HTTP/1.1 413 ") && f->closed && srv.body_bytes_in_flight == 0,
       "the chunk that would pass max_body_bytes is refused from its size line");
    close_conn(f);
    auto_answer = 0;
}

int main(void)
{
    test_admission();

    struct http_limits l;
    http_limits_default(&l);
    l.max_header_bytes = 512;
    l.max_body_bytes = 64;
    l.max_pipelined = 2;
    http_server_t srv;
    http_server_init(&srv, &l, dispatch, NULL);
    struct fake *f;

    /* Pipelining: answers leave in request order even when the later one is ready first. */
    f = open_conn(&srv);
    ok(f->reading && f->timer_ms == l.idle_timeout_ms, "a new connection reads, idle timer set");
    feed(f, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    ok(nslots == 2 && strcmp(paths[0], "/a") == 0 && strcmp(paths[1], "/b") == 0,
       "two requests dispatched (max_pipelined = 2)");
    ok(!f->reading, "reading stops at max_pipelined");
    answer(slots[1], 200, "second");
    settle(f);
    ok(f->wrote.len == 0, "the second answer waits for the first");
    answer(slots[0], 200, "first");
    settle(f);
    const char *p1 = after(f, "first"), *p2 = after(f, "second");
    ok(p1 && p2 && p1 < p2, "both written, first before second");
    ok(nslots == 3 && strcmp(paths[2], "/c") == 0, "the held-back third request dispatched");
    answer(slots[2], 200, "third");
    settle(f);
    ok(wrote_has(f, "third") && f->reading && !f->closed, "keep-alive: reading again");
    ok(wrote_has(f, "Content-Length: 6\r\n") && wrote_has(f, "\r\nDate: ") &&
           wrote_has(f, "X-Test: 1\r\n"),
       "Content-Length, Date and the handler's headers");
    ok(srv.stats.requests == 3 && srv.stats.responses[2] == 3, "stats count requests");
    close_conn(f);

    /* Connection: close and HTTP/1.0. */
    f = open_conn(&srv);
    auto_answer = 1;
    feed(f, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
    ok(nslots == 1 && wrote_has(f, "Connection: close\r\n") && f->closed,
       "Connection: close answered, later bytes ignored, closed");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "GET /x HTTP/1.0\r\n\r\n");
    ok(f->closed && !wrote_has(f, "keep-alive"), "HTTP/1.0 closes by default");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ok(!f->closed && wrote_has(f, "Connection: keep-alive\r\n"), "HTTP/1.0 keep-alive on request");
    close_conn(f);

    /* HEAD: Content-Length of the body, no body. */
    f = open_conn(&srv);
    feed(f, "HEAD /abc HTTP/1.1\r\n\r\n");
    ok(wrote_has(f, "Content-Length: 4\r\n") && !wrote_has(f, "\r\n\r\n/abc"),
       "HEAD: length without the body");
    close_conn(f);

    /* Bodies: Content-Length and chunked. */
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel");
    ok(nslots == 0 && f->timer_ms == l.body_timeout_ms, "partial body: body timer");
    feed(f, "lo");
    ok(nslots == 1 && strcmp(bodies[0], "hello") == 0, "Content-Length body delivered");
    feed(f,
         "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    ok(nslots == 2 && strcmp(bodies[1], "abcde") == 0, "chunked body decoded");
    close_conn(f);

    /* Limits. */
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
    ok(nslots == 0 && wrote_has(f, "HTTP/1.1 413 ") && wrote_has(f, "\"body_too_large\"") &&
           f->closed && f->linger,
       "Content-Length over the limit: 413 at once, lingering close");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 7; i++)
        feed(f, "a\r\n0123456789\r\n");
    ok(nslots == 0 && wrote_has(f, "HTTP/1.1 413 ") && f->closed,
       "chunked body over the limit: 413");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "GET /h HTTP/1.1\r\n");
    for (int i = 0; i < 20; i++)
        feed(f, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    ok(wrote_has(f, "HTTP/1.1 431 ") && wrote_has(f, "\"max_header_bytes\"") && f->closed,
       "headers over the limit: 431");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "\x16\x03\x01garbage\r\n\r\n");
    ok(wrote_has(f, "HTTP/1.1 400 ") && wrote_has(f, "\"bad_request\"") && f->closed,
       "garbage: 400");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    ok(wrote_has(f, "HTTP/1.1 400 ") && nslots == 0, "Content-Length with Transfer-Encoding: 400");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nContent-Length: 3x\r\n\r\n");
    ok(wrote_has(f, "HTTP/1.1 400 "), "bad Content-Length: 400");
    close_conn(f);

    /* 100-continue. */
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    ok(wrote_has(f, "HTTP/1.1 100 Continue\r\n\r\n") && nslots == 0,
       "100 Continue within the limit");
    feed(f, "body");
    ok(nslots == 1 && wrote_has(f, "HTTP/1.1 200 OK"), "then the final answer");
    close_conn(f);
    f = open_conn(&srv);
    feed(f, "POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n");
    ok(!wrote_has(f, "100 Continue") && wrote_has(f, "HTTP/1.1 413 ") && f->closed,
       "over the limit: 413 without 100 Continue");
    close_conn(f);

    /* Timeouts by phase. */
    f = open_conn(&srv);
    feed(f, "GET /slow HTTP/1.1\r\nHost");
    ok(f->timer_ms == l.header_timeout_ms, "half a request: header timer");
    http_conn_timeout(&f->c);
    settle(f);
    ok(wrote_has(f, "HTTP/1.1 408 ") && wrote_has(f, "\"header_timeout\"") && f->closed,
       "header timeout: 408 and close");
    close_conn(f);
    f = open_conn(&srv);
    http_conn_timeout(&f->c);
    ok(f->closed && f->wrote.len == 0, "idle timeout: quiet close");
    close_conn(f);

    /* The connection goes away while a handler runs: the late answer is dropped safely. */
    auto_answer = 0;
    f = open_conn(&srv);
    feed(f, "GET /late HTTP/1.1\r\n\r\n");
    http_slot_t *late = slots[0];
    http_conn_eof(&f->c); /* half-close: still answerable */
    ok(!f->closed, "peer EOF with a request in flight: kept open for the answer");
    close_conn(f); /* the transport died */
    uint64_t before = srv.stats.responses[2];
    answer(late, 200, "nobody");
    ok(srv.stats.responses[2] == before, "the late answer is dropped (ASan checks the memory)");

    /* Rejected over max_connections. */
    f = calloc(1, sizeof *f);
    http_conn_init(&f->c, &srv, &fake_io, f, 1);
    settle(f);
    ok(wrote_has(f, "HTTP/1.1 503 ") && wrote_has(f, "Retry-After: 1\r\n") && f->closed,
       "rejected connection: 503 with Retry-After, closed");
    close_conn(f);

    /* Graceful close: idle connections close, busy ones finish with Connection: close. */
    f = open_conn(&srv);
    struct fake *g = open_conn(&srv);
    nslots = 0;
    feed(g, "GET /busy HTTP/1.1\r\n\r\n");
    http_server_close(&srv);
    ok(f->closed && !g->closed, "close: the idle connection closes, the busy one stays");
    answer(slots[0], 200, "done");
    settle(g);
    ok(wrote_has(g, "Connection: close\r\n") && g->closed, "the busy one answers, then closes");
    close_conn(f);
    close_conn(g);
    ok(srv.nconns == 0, "no connection left");

    ok(http_head_add(&(struct http_buf){0}, "X-Bad", 5, "a\r\nb", 4) == -1,
       "header values with CR LF refused");
    return tap_done();
}
