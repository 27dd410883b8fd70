/* The text of HTTP/1.1 answers: growable buffers, status lines and reason phrases, header
 * lines checked against injection, the Date value, JSON strings and the server's JSON error
 * body. Pure functions over struct http_buf; the connection (core/http/http_conn.c) decides
 * when and where an answer goes. */
#include "http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

int http_buf_puts(struct http_buf *b, const char *s)
{
    return http_buf_append(b, s, strlen(s));
}

void http_buf_free(struct http_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- status lines, header lines, the JSON error body ---- */

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
    if (n > 0 && (size_t)n < sizeof line) /* always: the longest reason phrase fits */
        http_buf_append(b, line, (size_t)n);
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int http_token_eq(const char *name, size_t nl, const char *lower)
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
    if (http_token_eq(name, nl, "content-length") || http_token_eq(name, nl, "transfer-encoding") ||
        http_token_eq(name, nl, "connection") || http_token_eq(name, nl, "date"))
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
const char *http_date(void)
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

void http_slot_error(http_slot_t *s, int status, const char *code, const char *message,
                     const char *details_json, const char *extra_header)
{
    struct http_buf head = {0}, body = {0};
    http_head_start(&head, status);
    http_buf_puts(&head, "Content-Type: application/json\r\n");
    if (extra_header)
        http_buf_puts(&head, extra_header);
    http_buf_puts(&body, "{\"error\":{\"code\":");
    http_json_string(&body, code, strlen(code));
    http_buf_puts(&body, ",\"message\":");
    http_json_string(&body, message, strlen(message));
    http_buf_puts(&body, ",\"details\":");
    http_buf_puts(&body, details_json ? details_json : "{}");
    http_buf_puts(&body, "}}");
    http_slot_respond(s, status, &head, body.data ? body.data : "", body.len);
    http_buf_free(&head);
    http_buf_free(&body);
}
