/* From bytes to requests: the http-parser callbacks of a connection, the header and body
 * limits (431/413, a chunk refused from its size line), admission at the end of the headers
 * (the server's admit hook, the byte budget of bodies in flight: 503), Expect:
 * 100-continue, malformed input (400), and the hand-over of each complete request to the
 * server's dispatch function, outside the parser. */
#include "http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void limit_details(char *out, size_t cap, const char *what, size_t limit)
{
    snprintf(out, cap, "{\"limit\":\"%s\",\"max\":%zu}", what, limit);
}

/* A body buffer larger than this is freed once its request is dispatched, so an idle
 * keep-alive connection does not keep the memory of its largest body. */
#define BODY_KEEP_BYTES (64 * 1024)

void http_conn_body_release(http_conn_t *c)
{
    c->srv->body_bytes_in_flight -= c->body_reserved;
    c->body_reserved = 0;
    if (c->body.cap > BODY_KEEP_BYTES)
        http_buf_free(&c->body);
    c->body.len = 0;
}

/* Reserves room for the body to reach total bytes; -1 (err_status 503) over the budget. */
static int body_reserve(http_conn_t *c, uint64_t total)
{
    http_server_t *srv = c->srv;
    if (total <= c->body_reserved)
        return 0;
    uint64_t extra = total - c->body_reserved;
    size_t max = srv->limits.max_body_bytes_in_flight;
    if (max && (extra > max || srv->body_bytes_in_flight > max - extra)) {
        c->err_status = 503;
        return -1;
    }
    srv->body_bytes_in_flight += (size_t)extra;
    c->body_reserved += (size_t)extra;
    return 0;
}

static int header_limit_hit(http_conn_t *c)
{
    if (c->hdr_bytes <= c->srv->limits.max_header_bytes)
        return 0;
    c->err_status = 431;
    return -1;
}

static int on_message_begin(http_parser *p)
{
    http_conn_t *c = p->data;
    c->in_msg = 1;
    c->in_body = 0;
    c->msg_seq++;
    http_conn_body_release(c);
    c->url.len = c->hbuf.len = 0;
    c->nhdrs = 0;
    c->hdr_bytes = 0;
    c->last_was_value = 0;
    c->expect_continue = 0;
    http_conn_update(c); /* starts the header timer at the request's first byte */
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    c->hdr_bytes += len;
    if (header_limit_hit(c) || http_buf_append(&c->url, at, len) != 0)
        return -1;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    c->hdr_bytes += len;
    if (c->nhdrs == 0 || c->last_was_value) {
        c->hdr_bytes += 4; /* ": " and CRLF */
        if (c->nhdrs == c->hdrs_cap) {
            size_t cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
            struct http_hdr_off *h = realloc(c->hdrs, cap * sizeof *h);
            if (!h)
                return -1;
            c->hdrs = h;
            c->hdrs_cap = cap;
        }
        struct http_hdr_off *h = &c->hdrs[c->nhdrs++];
        h->name = (uint32_t)c->hbuf.len;
        h->name_len = 0;
        h->value = (uint32_t)c->hbuf.len;
        h->value_len = 0;
        c->last_was_value = 0;
    }
    if (header_limit_hit(c) || http_buf_reserve(&c->hbuf, len) != 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = at[i];
        c->hbuf.data[c->hbuf.len++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    c->hdrs[c->nhdrs - 1].name_len += (uint32_t)len;
    c->hdrs[c->nhdrs - 1].value = (uint32_t)c->hbuf.len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->nhdrs == 0)
        return -1;
    c->hdr_bytes += len;
    c->last_was_value = 1;
    if (header_limit_hit(c) || http_buf_append(&c->hbuf, at, len) != 0)
        return -1;
    c->hdrs[c->nhdrs - 1].value_len += (uint32_t)len;
    return 0;
}

static int header_value_is(http_conn_t *c, const char *name, const char *value)
{
    for (size_t i = 0; i < c->nhdrs; i++) {
        struct http_hdr_off *h = &c->hdrs[i];
        if (http_token_eq(c->hbuf.data + h->name, h->name_len, name))
            return http_token_eq(c->hbuf.data + h->value, h->value_len, value);
    }
    return 0;
}

/* The request as the dispatch and admit functions see it; hv holds room for 32 headers,
 * more are malloc'd into *heap (the caller frees it). -1: out of memory. */
static int build_request(http_conn_t *c, struct http_request *req, struct http_header *hv,
                         struct http_header **heap)
{
    http_parser *p = &c->parser;
    *heap = NULL;
    if (c->nhdrs > 32) {
        hv = *heap = malloc(c->nhdrs * sizeof *hv);
        if (!hv)
            return -1;
    }
    for (size_t i = 0; i < c->nhdrs; i++) {
        hv[i].name = c->hbuf.data + c->hdrs[i].name;
        hv[i].name_len = c->hdrs[i].name_len;
        hv[i].value = c->hbuf.data + c->hdrs[i].value;
        hv[i].value_len = c->hdrs[i].value_len;
    }
    memset(req, 0, sizeof *req);
    req->method = http_method_str((enum http_method)p->method);
    const char *url = c->url.data ? c->url.data : "";
    const char *q = memchr(url, '?', c->url.len);
    req->path = url;
    req->path_len = q ? (size_t)(q - url) : c->url.len;
    req->query = q ? q + 1 : "";
    req->query_len = q ? c->url.len - req->path_len - 1 : 0;
    req->headers = hv;
    req->nheaders = c->nhdrs;
    req->body = c->body.data ? c->body.data : "";
    req->body_len = c->body.len;
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    req->remote = c->remote;
    return 0;
}

/* Asks the server's admit function about a request whose body is to come; -1 refuses it
 * (err_status and c->refusal say how to answer). */
static int admit(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    if (!srv->admit)
        return 0;
    struct http_header stackh[32], *heap;
    struct http_request req;
    struct http_refusal *r = calloc(1, sizeof *r);
    if (!r || build_request(c, &req, stackh, &heap) != 0) {
        free(r);
        c->err_status = 500;
        return -1;
    }
    req.body = "";
    req.body_len = 0;
    int rc = srv->admit(srv, &req, srv->ud, r);
    free(heap);
    if (rc == 0) {
        free(r);
        return 0;
    }
    if (r->status < 400 || r->status > 599)
        r->status = 403;
    free(c->refusal);
    c->refusal = r;
    c->err_status = r->status;
    return -1;
}

static int on_headers_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    int has_cl = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_cl && p->uses_transfer_encoding) {
        c->err_status = 400;
        return -1;
    }
    if (has_cl && p->content_length > c->srv->limits.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    int has_body = (p->flags & F_CHUNKED) || (has_cl && p->content_length > 0);
    if (has_body) {
        /* Before a byte of the body is read: whether the server wants it at all (a bad
         * token costs no memory), then room for it among the bodies in flight. */
        if (admit(c) != 0)
            return -1;
        if (has_cl && body_reserve(c, p->content_length) != 0)
            return -1;
        c->in_body = 1;
        if (p->http_major == 1 && p->http_minor >= 1 &&
            header_value_is(c, "expect", "100-continue"))
            http_conn_continue(c);
        http_conn_update(c); /* the body timer replaces the header timer */
    }
    return 0;
}

/* A chunk's size line: refuse a chunk that would take the body over its limit before
 * reading it (a declared size of 2^63 is answered now, not after max_body_bytes). */
static int on_chunk_header(http_parser *p)
{
    http_conn_t *c = p->data;
    uint64_t chunk = p->content_length;
    if (chunk > c->srv->limits.max_body_bytes ||
        c->body.len + chunk > c->srv->limits.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    return body_reserve(c, c->body.len + chunk);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->body.len + len > c->srv->limits.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    return http_buf_append(&c->body, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    c->in_msg = c->in_body = 0;
    c->msg_ready = 1;
    /* Return from http_parser_execute so the request is dispatched outside the parser. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void dispatch_msg(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    http_parser *p = &c->parser;
    c->msg_ready = 0;
    http_slot_t *s = http_slot_push(c);
    if (!s) {
        http_conn_close(c, 0);
        return;
    }
    s->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    s->head_req = p->method == HTTP_HEAD;
    s->http_minor = p->http_major == 1 ? p->http_minor : 1;
    if (!s->keep_alive || srv->closing)
        c->stop_parsing = 1;
    srv->stats.requests++;

    struct http_header stackh[32], *heap;
    struct http_request req;
    if (build_request(c, &req, stackh, &heap) != 0) {
        s->close = 1;
        http_slot_error(s, 500, "out_of_memory", "out of memory", NULL, NULL);
        http_conn_body_release(c);
        return;
    }
    srv->dispatch(srv, s, &req, srv->ud);
    free(heap);
    /* The handler has its own copy of the body (dispatch copies what it keeps). */
    http_conn_body_release(c);
}

static void parse_failed(http_conn_t *c, enum http_errno e)
{
    char details[160];
    const struct http_limits *l = &c->srv->limits;
    int status = c->err_status ? c->err_status : (e == HPE_HEADER_OVERFLOW ? 431 : 400);
    struct http_refusal *r = c->refusal;
    c->err_status = 0;
    c->refusal = NULL;
    http_conn_body_release(c); /* the body will not be read */
    if (r) {
        c->srv->stats.refused++;
        http_conn_fail(c, r->status, r->code[0] ? r->code : "refused",
                       r->message[0] ? r->message : "the request is refused", NULL,
                       r->extra_header[0] ? r->extra_header : NULL);
        free(r);
    } else if (status == 500) {
        http_conn_fail(c, 500, "out_of_memory", "out of memory", NULL, NULL);
    } else if (status == 503) {
        c->srv->stats.over_budget++;
        limit_details(details, sizeof details, "max_body_bytes_in_flight",
                      l->max_body_bytes_in_flight);
        http_conn_fail(c, 503, "server_busy",
                       "too many request bodies are being received; retry later", details,
                       "Retry-After: 1\r\n");
    } else if (status == 431) {
        c->srv->stats.too_large++;
        limit_details(details, sizeof details, "max_header_bytes", l->max_header_bytes);
        http_conn_fail(c, 431, "headers_too_large", "request headers are too large", details, NULL);
    } else if (status == 413) {
        c->srv->stats.too_large++;
        limit_details(details, sizeof details, "max_body_bytes", l->max_body_bytes);
        http_conn_fail(c, 413, "body_too_large", "request body is too large", details, NULL);
    } else {
        c->srv->stats.parse_errors++;
        const char *why = e == HPE_CB_headers_complete ? "both Content-Length and Transfer-Encoding"
                                                       : http_errno_description(e);
        struct http_buf d = {0};
        http_buf_puts(&d, "{\"parser\":");
        http_json_string(&d, why, strlen(why));
        http_buf_append(&d, "}", 2); /* with the NUL: details is a C string */
        http_conn_fail(c, 400, "bad_request", "malformed HTTP request", d.data, NULL);
        http_buf_free(&d);
    }
}

/* Parses as much of data as allowed; returns how much was used (all of it when the rest
 * is to be thrown away). */
size_t http_conn_parse(http_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    c->parsing = 1;
    while (off < len && http_conn_can_parse(c)) {
        size_t n = http_parser_execute(&c->parser, &settings, data + off, len - off);
        off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->msg_ready)
                dispatch_msg(c);
            continue;
        }
        if (e != HPE_OK) {
            parse_failed(c, e);
            break;
        }
        if (c->parser.upgrade)
            break;
        if (n == 0) { /* no progress and no error: never spin on it */
            parse_failed(c, HPE_UNKNOWN);
            break;
        }
    }
    c->parsing = 0;
    if (c->closing || c->stop_parsing)
        return len;
    return off;
}
