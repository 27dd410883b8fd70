/* The HTTP/1.1 server: the connection state machine (http-parser callbacks, limits,
 * pipelined answers kept in request order, keep-alive, timeouts by phase) and, at the end
 * of the file, the libuv TCP transport that feeds it. The state machine never touches a
 * socket: it calls struct http_io, so the fuzz target can drive it with arbitrary bytes. */
#include "http_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>


/* Stop parsing more requests while this much output waits for a slow reader. */
#define OUT_HIGH_WATER (256 * 1024)
/* How long a closing connection drains input so the peer can read the last answer. */
#define LINGER_MS 2000
#define READ_CHUNK 65536

struct http_slot {
    http_slot_t *next;
    http_conn_t *conn; /* NULL once the connection is gone: the answer is dropped */
    int done, close, head_req, keep_alive, http_minor;
    struct http_buf resp; /* the answer, while earlier ones are still pending */
};

void http_limits_default(struct http_limits *l)
{
    l->max_header_bytes = 16384;
    l->max_body_bytes = 8 * 1024 * 1024;
    l->max_connections = 10000;
    l->header_timeout_ms = 10000;
    l->body_timeout_ms = 30000;
    l->idle_timeout_ms = 60000;
    l->max_pipelined = 64;
}

/* ---- buffers ---- */

int http_buf_reserve(struct http_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int http_buf_append(struct http_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (http_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_puts(struct http_buf *b, const char *s) { return http_buf_append(b, s, strlen(s)); }

void http_buf_free(struct http_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- answers ---- */

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void http_head_start(struct http_buf *b, int status)
{
    char line[96];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, http_status_reason(status));
    b->len = 0;
    http_buf_append(b, line, (size_t)n);
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int name_is(const char *name, size_t nl, const char *lower)
{
    return strlen(lower) == nl && strncasecmp(name, lower, nl) == 0;
}

int http_head_add(struct http_buf *b, const char *name, size_t nl, const char *value, size_t vl)
{
    if (nl == 0)
        return -1;
    for (size_t i = 0; i < nl; i++)
        if (!name[i] || !is_tchar((unsigned char)name[i]))
            return -1;
    for (size_t i = 0; i < vl; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return -1;
    if (name_is(name, nl, "content-length") || name_is(name, nl, "transfer-encoding") ||
        name_is(name, nl, "connection") || name_is(name, nl, "date"))
        return 0;
    if (http_buf_reserve(b, nl + vl + 4) != 0)
        return -1;
    http_buf_append(b, name, nl);
    http_buf_append(b, ": ", 2);
    http_buf_append(b, value, vl);
    http_buf_append(b, "\r\n", 2);
    return 0;
}

/* The Date header value, formatted once per second and without the locale. */
static const char *http_date(void)
{
    static time_t cached = -1;
    static char text[40];
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        cached = now;
    }
    return text;
}

int http_json_string(struct http_buf *b, const char *s, size_t n)
{
    if (http_buf_reserve(b, n + 2) != 0)
        return -1;
    http_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            http_buf_append(b, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            http_buf_append(b, esc, 6);
        } else {
            http_buf_append(b, &s[i], 1);
        }
    }
    return http_buf_append(b, "\"", 1);
}

static void slot_free(http_slot_t *s)
{
    http_buf_free(&s->resp);
    free(s);
}

static void conn_update(http_conn_t *c);
static void conn_close(http_conn_t *c, int linger);

static void flush(http_conn_t *c)
{
    if (c->writing || c->closing)
        return;
    if (c->out.len == 0) {
        if (c->close_after_flush)
            conn_close(c, c->linger);
        return;
    }
    struct http_buf t = c->wbuf;
    c->wbuf = c->out;
    c->out = t;
    c->out.len = 0;
    c->writing = 1;
    if (c->io->write(c, c->wbuf.data, c->wbuf.len) != 0) {
        c->writing = 0;
        conn_close(c, 0);
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
            buf_puts(b, "Connection: close\r\n");
        else if (s->http_minor == 0)
            buf_puts(b, "Connection: keep-alive\r\n");
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
        conn_update(c);
    } else {
        write_response(c, s, &s->resp, status, head, body, body_len);
    }
}

void http_slot_error(http_slot_t *s, int status, const char *code, const char *message,
                     const char *details_json, const char *extra_header)
{
    struct http_buf head = {0}, body = {0};
    http_head_start(&head, status);
    buf_puts(&head, "Content-Type: application/json\r\n");
    if (extra_header)
        buf_puts(&head, extra_header);
    buf_puts(&body, "{\"error\":{\"code\":");
    http_json_string(&body, code, strlen(code));
    buf_puts(&body, ",\"message\":");
    http_json_string(&body, message, strlen(message));
    buf_puts(&body, ",\"details\":");
    buf_puts(&body, details_json ? details_json : "{}");
    buf_puts(&body, "}}");
    http_slot_respond(s, status, &head, body.data ? body.data : "", body.len);
    http_buf_free(&head);
    http_buf_free(&body);
}

/* ---- the connection state machine ---- */

static http_slot_t *slot_push(http_conn_t *c)
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
static void conn_fail(http_conn_t *c, int status, const char *code, const char *message,
                      const char *details, const char *extra)
{
    c->stop_parsing = 1;
    c->in_msg = c->in_body = 0;
    c->linger = 1;
    http_slot_t *s = slot_push(c);
    if (!s) {
        conn_close(c, 0);
        return;
    }
    s->close = 1;
    http_slot_error(s, status, code, message, details, extra);
}

static void limit_details(char *out, size_t cap, const char *what, size_t limit)
{
    snprintf(out, cap, "{\"limit\":\"%s\",\"max\":%zu}", what, limit);
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
    c->url.len = c->hbuf.len = c->body.len = 0;
    c->nhdrs = 0;
    c->hdr_bytes = 0;
    c->last_was_value = 0;
    c->expect_continue = 0;
    conn_update(c); /* starts the header timer at the request's first byte */
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
        if (name_is(c->hbuf.data + h->name, h->name_len, name))
            return name_is(c->hbuf.data + h->value, h->value_len, value);
    }
    return 0;
}

static void send_continue(http_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (c->nq == 0) {
        http_buf_append(&c->out, cont, sizeof cont - 1);
        flush(c);
        return;
    }
    /* Interim answers belong after the final answers of the requests before this one. */
    http_slot_t *s = slot_push(c);
    if (s) {
        s->done = 1;
        http_buf_append(&s->resp, cont, sizeof cont - 1);
    }
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
        c->in_body = 1;
        if (p->http_major == 1 && p->http_minor >= 1 &&
            header_value_is(c, "expect", "100-continue"))
            send_continue(c);
        conn_update(c); /* the body timer replaces the header timer */
    }
    return 0;
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
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void dispatch_msg(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    http_parser *p = &c->parser;
    c->msg_ready = 0;
    http_slot_t *s = slot_push(c);
    if (!s) {
        conn_close(c, 0);
        return;
    }
    s->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    s->head_req = p->method == HTTP_HEAD;
    s->http_minor = p->http_major == 1 ? p->http_minor : 1;
    if (!s->keep_alive || srv->closing)
        c->stop_parsing = 1;
    srv->stats.requests++;

    struct http_header stackh[32], *hv = stackh;
    if (c->nhdrs > 32) {
        hv = malloc(c->nhdrs * sizeof *hv);
        if (!hv) {
            s->close = 1;
            http_slot_error(s, 500, "out_of_memory", "out of memory", NULL, NULL);
            return;
        }
    }
    for (size_t i = 0; i < c->nhdrs; i++) {
        hv[i].name = c->hbuf.data + c->hdrs[i].name;
        hv[i].name_len = c->hdrs[i].name_len;
        hv[i].value = c->hbuf.data + c->hdrs[i].value;
        hv[i].value_len = c->hdrs[i].value_len;
    }
    struct http_request req = {0};
    req.method = http_method_str((enum http_method)p->method);
    const char *url = c->url.data ? c->url.data : "";
    const char *q = memchr(url, '?', c->url.len);
    req.path = url;
    req.path_len = q ? (size_t)(q - url) : c->url.len;
    req.query = q ? q + 1 : "";
    req.query_len = q ? c->url.len - req.path_len - 1 : 0;
    req.headers = hv;
    req.nheaders = c->nhdrs;
    req.body = c->body.data ? c->body.data : "";
    req.body_len = c->body.len;
    req.http_major = p->http_major;
    req.http_minor = p->http_minor;
    req.remote = c->remote;
    srv->dispatch(srv, s, &req, srv->ud);
    if (hv != stackh)
        free(hv);
}

static void parse_failed(http_conn_t *c, enum http_errno e)
{
    char details[160];
    const struct http_limits *l = &c->srv->limits;
    int status = c->err_status ? c->err_status : (e == HPE_HEADER_OVERFLOW ? 431 : 400);
    c->err_status = 0;
    if (status == 431) {
        c->srv->stats.too_large++;
        limit_details(details, sizeof details, "max_header_bytes", l->max_header_bytes);
        conn_fail(c, 431, "headers_too_large", "request headers are too large", details, NULL);
    } else if (status == 413) {
        c->srv->stats.too_large++;
        limit_details(details, sizeof details, "max_body_bytes", l->max_body_bytes);
        conn_fail(c, 413, "body_too_large", "request body is too large", details, NULL);
    } else {
        c->srv->stats.parse_errors++;
        const char *why = e == HPE_CB_headers_complete
                              ? "both Content-Length and Transfer-Encoding"
                              : http_errno_description(e);
        struct http_buf d = {0};
        buf_puts(&d, "{\"parser\":");
        http_json_string(&d, why, strlen(why));
        http_buf_append(&d, "}", 2); /* with the NUL: details is a C string */
        conn_fail(c, 400, "bad_request", "malformed HTTP request", d.data, NULL);
        http_buf_free(&d);
    }
}

static int can_parse(const http_conn_t *c)
{
    return !c->closing && !c->stop_parsing && c->nq < c->srv->limits.max_pipelined &&
           c->out.len + c->wbuf.len < OUT_HIGH_WATER;
}

/* Parses as much of data as allowed; returns how much was used (all of it when the rest
 * is to be thrown away). */
static size_t parse_some(http_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    c->parsing = 1;
    while (off < len && can_parse(c)) {
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

static void drain_input(http_conn_t *c)
{
    size_t used = parse_some(c, c->in.data + c->in_off, c->in.len - c->in_off);
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

static void conn_update(http_conn_t *c)
{
    if (c->closing)
        return;
    if (!c->parsing && c->in.len > c->in_off && can_parse(c))
        drain_input(c);
    if (c->closing)
        return;
    int quiet = c->nq == 0 && !c->writing && c->out.len == 0 && !c->in_msg;
    if (quiet && (c->peer_eof || c->srv->closing || c->stop_parsing)) {
        conn_close(c, c->stop_parsing ? c->linger : 0);
        return;
    }
    int want = can_parse(c) && !c->peer_eof && c->in.len == c->in_off;
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

static void conn_close(http_conn_t *c, int linger)
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
        limit_details(details, sizeof details, "max_connections", s->limits.max_connections);
        conn_fail(c, 503, "too_many_connections", "the server has too many open connections",
                  details, "Retry-After: 1\r\n");
    }
    conn_update(c);
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
        size_t used = parse_some(c, shared_in, n);
        if (used < n && http_buf_append(&c->in, shared_in + used, n - used) != 0) {
            conn_close(c, 0);
            return;
        }
    } else if (http_buf_append(&c->in, shared_in, n) != 0) {
        conn_close(c, 0);
        return;
    }
    conn_update(c);
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
        conn_close(c, 0);
    else
        conn_update(c);
}

void http_conn_written(http_conn_t *c, int status)
{
    if (c->closing)
        return;
    c->writing = 0;
    c->wbuf.len = 0;
    if (status < 0) {
        conn_close(c, 0);
        return;
    }
    flush(c);
    conn_update(c);
}

void http_conn_timeout(http_conn_t *c)
{
    if (c->closing)
        return;
    enum http_phase ph = c->phase;
    c->phase = HTTP_PH_NONE;
    if (ph == HTTP_PH_IDLE) {
        conn_close(c, 0);
    } else if (ph == HTTP_PH_HEADERS || ph == HTTP_PH_BODY) {
        c->srv->stats.timeouts++;
        const struct http_limits *l = &c->srv->limits;
        char details[96];
        snprintf(details, sizeof details, "{\"limit\":\"%s\",\"seconds\":%.3f}",
                 ph == HTTP_PH_HEADERS ? "header_timeout" : "body_timeout",
                 (double)(ph == HTTP_PH_HEADERS ? l->header_timeout_ms : l->body_timeout_ms) /
                     1000.0);
        conn_fail(c, 408, "request_timeout",
                  ph == HTTP_PH_HEADERS ? "the request headers took too long to arrive"
                                        : "the request body took too long to arrive",
                  details, NULL);
        conn_update(c);
    }
}

static void server_check_closed(http_server_t *s)
{
    if (s->closing && !s->listener && !s->listener_closing && s->nconns == 0 &&
        !s->closed_notified) {
        s->closed_notified = 1;
        if (s->on_closed)
            s->on_closed(s, s->ud);
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
    http_buf_free(&c->in);
    http_buf_free(&c->url);
    http_buf_free(&c->hbuf);
    http_buf_free(&c->body);
    http_buf_free(&c->out);
    http_buf_free(&c->wbuf);
    free(c->hdrs);
    c->hdrs = NULL;
    server_check_closed(s);
}

/* ---- the server and its libuv TCP transport ---- */

void http_server_init(http_server_t *s, const struct http_limits *l, http_dispatch_fn dispatch,
                      void *ud)
{
    memset(s, 0, sizeof *s);
    if (l)
        s->limits = *l;
    else
        http_limits_default(&s->limits);
    if (s->limits.max_pipelined == 0)
        s->limits.max_pipelined = 1;
    s->dispatch = dispatch;
    s->ud = ud;
}

struct uv_conn {
    http_conn_t c; /* first: the io callbacks cast back */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int open_handles;
    int lingering, hard_closing;
};

static void uvc_handle_closed(uv_handle_t *h)
{
    struct uv_conn *u = h->data;
    if (--u->open_handles == 0) {
        http_conn_free(&u->c);
        free(u);
    }
}

static void uvc_hard_close(struct uv_conn *u)
{
    if (u->hard_closing)
        return;
    u->hard_closing = 1;
    uv_close((uv_handle_t *)&u->tcp, uvc_handle_closed);
    uv_close((uv_handle_t *)&u->timer, uvc_handle_closed);
}

static void uvc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct uv_conn *u = h->data;
    char *base;
    size_t len;
    http_conn_read_buffer(&u->c, &base, &len);
    *buf = uv_buf_init(base, (unsigned)len);
}

static void uvc_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct uv_conn *u = st->data;
    if (u->lingering) {
        if (nread < 0)
            uvc_hard_close(u);
        return;
    }
    if (nread > 0)
        http_conn_received(&u->c, (size_t)nread);
    else if (nread == UV_EOF)
        http_conn_eof(&u->c);
    else if (nread < 0)
        conn_close(&u->c, 0);
}

static void uvc_on_write(uv_write_t *req, int status)
{
    struct uv_conn *u = req->data;
    http_conn_written(&u->c, status);
}

static int uvc_write(http_conn_t *c, const char *data, size_t len)
{
    struct uv_conn *u = (struct uv_conn *)c;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    u->wreq.data = u;
    return uv_write(&u->wreq, (uv_stream_t *)&u->tcp, &b, 1, uvc_on_write);
}

static void uvc_read(http_conn_t *c, int on)
{
    struct uv_conn *u = (struct uv_conn *)c;
    if (on)
        uv_read_start((uv_stream_t *)&u->tcp, uvc_alloc, uvc_on_read);
    else
        uv_read_stop((uv_stream_t *)&u->tcp);
}

static void uvc_on_timer(uv_timer_t *t)
{
    struct uv_conn *u = t->data;
    if (u->lingering)
        uvc_hard_close(u);
    else
        http_conn_timeout(&u->c);
}

static void uvc_timer(http_conn_t *c, uint64_t ms)
{
    struct uv_conn *u = (struct uv_conn *)c;
    if (ms)
        uv_timer_start(&u->timer, uvc_on_timer, ms, 0);
    else
        uv_timer_stop(&u->timer);
}

static void uvc_on_shutdown(uv_shutdown_t *req, int status)
{
    struct uv_conn *u = req->data;
    if (status < 0)
        uvc_hard_close(u);
}

static void uvc_close(http_conn_t *c, int linger)
{
    struct uv_conn *u = (struct uv_conn *)c;
    if (linger && !u->c.srv->aborting) {
        u->lingering = 1;
        u->sreq.data = u;
        if (uv_shutdown(&u->sreq, (uv_stream_t *)&u->tcp, uvc_on_shutdown) == 0 &&
            uv_read_start((uv_stream_t *)&u->tcp, uvc_alloc, uvc_on_read) == 0) {
            uv_timer_start(&u->timer, uvc_on_timer, LINGER_MS, 0);
            return;
        }
    }
    uvc_hard_close(u);
}

static const struct http_io uv_io = {uvc_write, uvc_read, uvc_timer, uvc_close};

static void free_unlinked(uv_handle_t *h) { free(h->data); }

static void on_connection(uv_stream_t *ls, int status)
{
    http_server_t *s = ls->data;
    if (status < 0 || s->closing)
        return;
    struct uv_conn *u = calloc(1, sizeof *u);
    if (!u)
        return;
    uv_tcp_init(ls->loop, &u->tcp);
    u->tcp.data = u;
    u->open_handles = 1;
    if (uv_accept(ls, (uv_stream_t *)&u->tcp) != 0) {
        /* Not linked to the server yet: close the handle and free it ourselves. */
        uv_close((uv_handle_t *)&u->tcp, free_unlinked);
        return;
    }
    uv_timer_init(ls->loop, &u->timer);
    u->timer.data = u;
    u->open_handles = 2;
    uv_tcp_nodelay(&u->tcp, 1);
    int reject = s->nconns - s->nrejecting >= s->limits.max_connections;
    http_conn_init(&u->c, s, &uv_io, u, reject);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&u->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, u->c.remote, sizeof u->c.remote);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, u->c.remote, sizeof u->c.remote);
    }
}

int http_server_listen(http_server_t *s, uv_loop_t *loop, const char *host, int port,
                       const char **err_what)
{
    struct sockaddr_storage ss;
    int rc;
    *err_what = "address";
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc != 0)
        return rc;
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t)
        return UV_ENOMEM;
    uv_tcp_init(loop, t);
    t->data = s;
    *err_what = "bind";
    rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
    if (rc == 0) {
        *err_what = "listen";
        rc = uv_listen((uv_stream_t *)t, 1024, on_connection);
    }
    if (rc != 0) {
        t->data = t;
        uv_close((uv_handle_t *)t, free_unlinked);
        return rc;
    }
    s->listener = t;
    return 0;
}

int http_server_port(const http_server_t *s)
{
    if (!s->listener)
        return 0;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(s->listener, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void listener_closed(uv_handle_t *h)
{
    http_server_t *s = h->data;
    free(h);
    s->listener_closing = 0;
    server_check_closed(s);
}

static void close_listener(http_server_t *s)
{
    if (!s->listener)
        return;
    s->listener_closing = 1;
    uv_close((uv_handle_t *)s->listener, listener_closed);
    s->listener = NULL;
}

void http_server_close(http_server_t *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    close_listener(s);
    for (http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->in_msg)
            c->stop_parsing = 1;
        conn_update(c);
    }
    server_check_closed(s);
}

void http_server_abort(http_server_t *s)
{
    s->closing = 1;
    s->aborting = 1;
    close_listener(s);
    for (http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c, 0);
    }
    server_check_closed(s);
}
