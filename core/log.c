/* Structured logging: each record is built in memory and written with one write(2), so
 * lines from concurrent writers never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static int json_format;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

enum log_level log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return (enum log_level)i;
    return (enum log_level) - 1;
}

const char *log_level_name(enum log_level level)
{
    return level >= LOG_DEBUG && level <= LOG_OFF ? level_names[level] : "?";
}

void log_init(void)
{
    const char *lv = getenv("STEWARD_LOG_LEVEL");
    const char *fmt = getenv("STEWARD_LOG_FORMAT");
    if (lv && *lv) {
        int l = (int)log_level_parse(lv);
        if (l >= 0)
            min_level = (enum log_level)l;
    }
    json_format = fmt && strcmp(fmt, "json") == 0;
}

void log_set_level(enum log_level level)
{
    min_level = level;
}

int log_enabled(enum log_level level)
{
    return level >= min_level && level < LOG_OFF;
}

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return; /* drop the rest of the record rather than crash */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* logfmt quotes a value that is empty or holds spaces, quotes, '=' or control bytes. */
static void add_logfmt_value(struct buf *b, const char *v)
{
    int quote = *v == 0;
    for (const char *c = v; *c && !quote; c++)
        if ((unsigned char)*c <= ' ' || *c == '"' || *c == '=' || *c == '\\')
            quote = 1;
    if (!quote) {
        buf_str(b, v);
        return;
    }
    buf_add(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        default:
            if (*c < 0x20) {
                snprintf(esc, sizeof esc, "\\x%02x", *c);
                buf_str(b, esc);
            } else {
                buf_add(b, (const char *)c, 1);
            }
        }
    }
    buf_add(b, "\"", 1);
}

static void add_json_string(struct buf *b, const char *v)
{
    buf_add(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            buf_add(b, "\\", 1);
            buf_add(b, (const char *)c, 1);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            buf_str(b, esc);
        } else {
            buf_add(b, (const char *)c, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static void add_field(struct buf *b, const char *k, const char *v, int literal)
{
    if (json_format) {
        buf_add(b, ",", 1);
        add_json_string(b, k);
        buf_add(b, ":", 1);
        if (literal)
            buf_str(b, v);
        else
            add_json_string(b, v);
    } else {
        buf_add(b, " ", 1);
        buf_str(b, k);
        buf_add(b, "=", 1);
        add_logfmt_value(b, v);
    }
}

void log_writev(enum log_level level, const char *msg, size_t nfields, const char *const *keys,
                const char *const *values, const unsigned char *literal)
{
    if (!log_enabled(level))
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

    struct buf b = {0};
    if (json_format) {
        buf_str(&b, "{\"ts\":\"");
        buf_str(&b, ts);
        buf_str(&b, "\",\"level\":\"");
        buf_str(&b, level_names[level]);
        buf_str(&b, "\",\"msg\":");
        add_json_string(&b, msg ? msg : "");
    } else {
        buf_str(&b, "ts=");
        buf_str(&b, ts);
        buf_str(&b, " level=");
        buf_str(&b, level_names[level]);
        buf_str(&b, " msg=");
        add_logfmt_value(&b, msg ? msg : "");
    }
    for (size_t i = 0; i < nfields; i++)
        add_field(&b, keys[i] ? keys[i] : "?", values[i] ? values[i] : "",
                  literal && literal[i] && values[i]);
    buf_str(&b, json_format ? "}\n" : "\n");
    if (b.p) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t n = write(2, b.p + off, b.len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        free(b.p);
    }
}

void log_write(enum log_level level, const char *msg, ...)
{
    if (!log_enabled(level))
        return;
    const char *keys[32], *values[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, msg);
    /* clang-tidy 14, checking several files in one run, misses this va_start in every file
     * after the first and takes ap for uninitialized; log.c checked alone is clean. */
    for (;;) {
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above */
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (n < 32) {
            keys[n] = k;
            values[n] = v;
            n++;
        }
        if (!v)
            break;
    }
    va_end(ap);
    log_writev(level, msg, n, keys, values, NULL);
}
