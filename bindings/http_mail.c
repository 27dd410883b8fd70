/* steward.http.send_mail: one message over libcurl's SMTP, on the same multi loop as the
 * HTTP requests. Given `body`, builds an RFC 5322 message (Date, Message-ID, From, To, Cc,
 * Subject, CRLF line endings); given `message`, sends it as it is (line endings fixed).
 * Dot-stuffing and the SMTP dialogue are libcurl's. */
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "duration.h"
#include "http_multi.h"

struct mail {
    http_xfer_t x;
    struct curl_slist *rcpt;
    char *what;
    char *msg; /* the whole message, CRLF line endings */
    size_t len, pos;
};

static void mail_release(http_xfer_t *x)
{
    struct mail *m = (struct mail *)x;
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(m->rcpt);
    free(m->what);
    free(m->msg);
    free(m);
}

static void mail_finish(http_xfer_t *x, CURLcode rc)
{
    task_t *t = task_wake(&x->wait);
    if (t) {
        lua_State *L = task_state(t);
        int n = 1;
        if (rc == CURLE_OK)
            lua_pushboolean(L, 1);
        else
            n = http_xfer_push_error(L, x, rc);
        mail_release(x);
        task_resume(t, n);
        return;
    }
    mail_release(x);
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct mail *m = ud;
    size_t len = size * n;
    if (len > m->len - m->pos)
        len = m->len - m->pos;
    memcpy(buf, m->msg + m->pos, len);
    m->pos += len;
    return len;
}

static const char *const known_opts[] = {
    "url",      "from",     "to",       "cc",      "bcc",
    "subject",  "body",     "html",     "message", "headers",
    "username", "password", "starttls", "timeout", "connect_timeout",
    "cafile",   "capath",   "insecure", NULL};

static void check_opts(lua_State *L, const char *fname)
{
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        int ok = 0;
        for (const char *const *o = known_opts; *o && !ok; o++)
            ok = strcmp(*o, k) == 0;
        if (!ok)
            luaL_error(L, "%s: unknown option '%s'", fname, k);
    }
}

static void no_crlf(lua_State *L, const char *s, const char *field, const char *fname)
{
    if (strpbrk(s, "\r\n"))
        luaL_error(L, "%s: %s: must not contain CR or LF", fname, field);
}

/* Pushes the envelope address "<addr>" of "Name <addr>" or of a bare address. */
static void push_addr(lua_State *L, const char *s)
{
    const char *lt = strrchr(s, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt) {
        lua_pushliteral(L, "<");
        lua_pushlstring(L, lt + 1, (size_t)(gt - lt - 1));
        lua_pushliteral(L, ">");
        lua_concat(L, 3);
    } else {
        lua_pushfstring(L, "<%s>", s);
    }
}

/* Appends the addresses of field (a string or an array of strings) to the envelope array at
 * index rcpt, and pushes them ", "-joined for the header. Returns how many. */
static int add_recipients(lua_State *L, const char *field, int rcpt, const char *fname)
{
    lua_pushliteral(L, "");
    int joined = lua_gettop(L);
    lua_getfield(L, 1, field);
    int v = joined + 1;
    if (lua_type(L, v) == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, v);
        lua_rawseti(L, -2, 1);
        lua_replace(L, v);
    } else if (lua_isnil(L, v)) {
        lua_pop(L, 1);
        return 0;
    } else if (!lua_istable(L, v)) {
        luaL_error(L, "%s: %s: string or array of strings expected, got %s", fname, field,
                   luaL_typename(L, v));
    }
    int count = (int)lua_objlen(L, v);
    for (int i = 1; i <= count; i++) {
        lua_rawgeti(L, v, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: %s[%d]: string expected, got %s", fname, field, i,
                       luaL_typename(L, -1));
        const char *a = lua_tostring(L, -1);
        no_crlf(L, a, field, fname);
        push_addr(L, a);
        lua_rawseti(L, rcpt, (int)lua_objlen(L, rcpt) + 1);
        lua_pushvalue(L, joined);
        lua_pushstring(L, i > 1 ? ", " : "");
        lua_pushvalue(L, -3);
        lua_concat(L, 3);
        lua_replace(L, joined);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return count;
}

/* Subject as is when ASCII, else RFC 2047 encoded-words (UTF-8, base64), split on
 * character boundaries so each word stays under the 75-character limit. */
static void add_subject(luaL_Buffer *b, const char *s)
{
    int ascii = 1;
    for (const char *p = s; *p; p++)
        ascii &= (unsigned char)*p < 0x80;
    if (ascii) {
        luaL_addstring(b, s);
        return;
    }
    size_t len = strlen(s), i = 0;
    while (i < len) {
        size_t n = len - i > 45 ? 45 : len - i;
        while (i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80)
            n--;
        unsigned char enc[64];
        EVP_EncodeBlock(enc, (const unsigned char *)s + i, (int)n);
        if (i)
            luaL_addstring(b, "\r\n ");
        luaL_addstring(b, "=?UTF-8?B?");
        luaL_addstring(b, (const char *)enc);
        luaL_addstring(b, "?=");
        i += n;
    }
}

static void add_date(luaL_Buffer *b)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char d[64];
    snprintf(d, sizeof d, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    luaL_addstring(b, d);
}

/* A MIME boundary: "steward-" and 32 random hex digits. */
static void add_boundary(char *out, size_t size)
{
    unsigned char rnd[16];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        uint64_t t = uv_hrtime();
        memset(rnd, 0, sizeof rnd);
        memcpy(rnd, &t, sizeof t);
    }
    size_t o = (size_t)snprintf(out, size, "steward-");
    for (size_t i = 0; i < sizeof rnd && o + 3 <= size; i++, o += 2)
        snprintf(out + o, 3, "%02x", rnd[i]);
}

static void add_message_id(luaL_Buffer *b, const char *from_addr)
{
    unsigned char rnd[16];
    char hex[33];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        uint64_t t = uv_hrtime();
        memset(rnd, 0, sizeof rnd);
        memcpy(rnd, &t, sizeof t);
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    const char *at = strrchr(from_addr, '@');
    size_t dlen = at ? strcspn(at + 1, ">") : 0;
    luaL_addstring(b, "<");
    luaL_addstring(b, hex);
    luaL_addstring(b, "@");
    if (dlen)
        luaL_addlstring(b, at + 1, dlen);
    else
        luaL_addstring(b, "steward.localdomain");
    luaL_addstring(b, ">");
}

/* Copies s with every line ending made CRLF, and a final CRLF. NULL on no memory. */
static char *to_crlf(const char *s, size_t len, size_t *out_len)
{
    char *out = malloc(2 * len + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
                i++;
            out[o++] = '\r';
            out[o++] = '\n';
        } else {
            out[o++] = s[i];
        }
    }
    if (o < 2 || out[o - 2] != '\r' || out[o - 1] != '\n') {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    *out_len = o;
    return out;
}

int l_http_send_mail(lua_State *L)
{
    static const char fname[] = "http.send_mail";
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_opts(L, fname);
    const char *url = http_opt_string(L, 1, "url", fname);
    const char *from = http_opt_string(L, 1, "from", fname);
    const char *subject = http_opt_string(L, 1, "subject", fname);
    const char *body = http_opt_string(L, 1, "body", fname);
    const char *html = http_opt_string(L, 1, "html", fname);
    const char *message = http_opt_string(L, 1, "message", fname);
    const char *user = http_opt_string(L, 1, "username", fname);
    const char *pass = http_opt_string(L, 1, "password", fname);
    const char *starttls = http_opt_string(L, 1, "starttls", fname);
    const char *cafile = http_opt_string(L, 1, "cafile", fname);
    const char *capath = http_opt_string(L, 1, "capath", fname);
    if (!url)
        return luaL_error(L, "%s: url: string expected, got nil", fname);
    if (strncmp(url, "smtp://", 7) != 0 && strncmp(url, "smtps://", 8) != 0)
        return luaL_error(L, "%s: url: smtp:// or smtps:// URL expected", fname);
    if (!from)
        return luaL_error(L, "%s: from: string expected, got nil", fname);
    no_crlf(L, from, "from", fname);
    if (!body == !message)
        return luaL_error(L, "%s: exactly one of body or message is needed", fname);
    if (html && !body)
        return luaL_error(L, "%s: html: goes with body (the plain-text part)", fname);
    long use_ssl = CURLUSESSL_TRY;
    if (starttls && strcmp(starttls, "required") == 0)
        use_ssl = CURLUSESSL_ALL;
    else if (starttls && strcmp(starttls, "no") == 0)
        use_ssl = CURLUSESSL_NONE;
    else if (starttls && strcmp(starttls, "try") != 0)
        return luaL_error(L, "%s: starttls: \"try\", \"required\" or \"no\" expected", fname);
    lua_getfield(L, 1, "timeout");
    double timeout = duration_opt(L, -1, "http.send_mail: timeout", 30.0);
    lua_getfield(L, 1, "connect_timeout");
    double ctimeout = duration_opt(L, -1, "http.send_mail: connect_timeout", 10.0);
    lua_getfield(L, 1, "insecure");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        return luaL_error(L, "%s: insecure: boolean expected, got %s", fname, luaL_typename(L, -1));
    int insecure = lua_toboolean(L, -1);
    lua_pop(L, 3);

    lua_newtable(L);
    int rcpt = lua_gettop(L);
    luaL_Buffer b;
    /* Everything that may raise runs before the operation owns memory. */
    int nto = add_recipients(L, "to", rcpt, fname);
    int ncc = add_recipients(L, "cc", rcpt, fname);
    add_recipients(L, "bcc", rcpt, fname);
    lua_pop(L, 1);
    int to_idx = rcpt + 1, cc_idx = rcpt + 2;
    if (lua_objlen(L, rcpt) == 0)
        return luaL_error(L, "%s: to: at least one recipient (to, cc or bcc) is needed", fname);
    push_addr(L, from);
    int env_from = lua_gettop(L);

    if (body) {
        if (!subject)
            return luaL_error(L, "%s: subject: string expected, got nil", fname);
        no_crlf(L, subject, "subject", fname);
        /* Extra headers first: luaL_Buffer needs the top of the stack to itself. */
        lua_pushliteral(L, "");
        int extra = lua_gettop(L);
        lua_getfield(L, 1, "headers");
        int hdr = extra + 1;
        if (!lua_isnil(L, hdr) && !lua_istable(L, hdr))
            return luaL_error(L, "%s: headers: table expected, got %s", fname,
                              luaL_typename(L, hdr));
        if (lua_istable(L, hdr)) {
            lua_pushnil(L);
            while (lua_next(L, hdr)) {
                if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                    return luaL_error(L, "%s: headers: string names and values expected", fname);
                no_crlf(L, lua_tostring(L, -2), "headers", fname);
                no_crlf(L, lua_tostring(L, -1), "headers", fname);
                lua_pushvalue(L, extra);
                lua_pushfstring(L, "%s: %s\r\n", lua_tostring(L, -3), lua_tostring(L, -2));
                lua_concat(L, 2);
                lua_replace(L, extra);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "Date: ");
        add_date(&b);
        luaL_addstring(&b, "\r\nMessage-ID: ");
        add_message_id(&b, lua_tostring(L, env_from));
        luaL_addstring(&b, "\r\nFrom: ");
        luaL_addstring(&b, from);
        if (nto) {
            luaL_addstring(&b, "\r\nTo: ");
            luaL_addstring(&b, lua_tostring(L, to_idx));
        }
        if (ncc) {
            luaL_addstring(&b, "\r\nCc: ");
            luaL_addstring(&b, lua_tostring(L, cc_idx));
        }
        luaL_addstring(&b, "\r\nSubject: ");
        add_subject(&b, subject);
        if (!html) {
            luaL_addstring(&b, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8"
                               "\r\nContent-Transfer-Encoding: 8bit\r\n");
            luaL_pushresult(&b);
            lua_pushvalue(L, extra);
            lua_pushliteral(L, "\r\n");
            lua_pushstring(L, body);
            lua_concat(L, 4);
        } else {
            /* multipart/alternative: the text part first, the HTML part last (the one a
             * mail reader prefers); the boundary is random, so no part can contain it. */
            char boundary[48];
            add_boundary(boundary, sizeof boundary);
            luaL_addstring(
                &b, "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"");
            luaL_addstring(&b, boundary);
            luaL_addstring(&b, "\"\r\n");
            luaL_pushresult(&b);
            lua_pushvalue(L, extra);
            lua_pushfstring(L,
                            "\r\n--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 8bit\r\n\r\n",
                            boundary);
            lua_pushstring(L, body);
            lua_pushfstring(L,
                            "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 8bit\r\n\r\n",
                            boundary);
            lua_pushstring(L, html);
            lua_pushfstring(L, "\r\n--%s--\r\n", boundary);
            lua_concat(L, 7);
        }
    } else {
        lua_pushstring(L, message);
    }
    size_t raw_len;
    const char *raw = lua_tolstring(L, -1, &raw_len);
    task_t *t = task_check(L, fname);
    /* Sessions to one mail server count against the default pool's limits too. */
    http_pool_t *pool = http_pool_get(L, HTTP_DEFAULT_MAX_HOST, HTTP_DEFAULT_MAX_TOTAL, fname);

    struct mail *m = calloc(1, sizeof *m);
    if (!m)
        return luaL_error(L, "%s: out of memory", fname);
    m->x.finish = mail_finish;
    m->x.release = mail_release;
    if (http_xfer_init(&m->x, pool) != 0) {
        free(m);
        return luaL_error(L, "%s: cannot create a libcurl handle", fname);
    }
    m->what = malloc(strlen(url) + 11);
    if (m->what)
        sprintf(m->what, "send_mail %s", url);
    m->msg = to_crlf(raw, raw_len, &m->len);
    int oom = !m->what || !m->msg;
    for (int i = 1, n = (int)lua_objlen(L, rcpt); i <= n && !oom; i++) {
        lua_rawgeti(L, rcpt, i);
        struct curl_slist *p = curl_slist_append(m->rcpt, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (p)
            m->rcpt = p;
        else
            oom = 1;
    }
    if (oom) {
        mail_release(&m->x);
        return luaL_error(L, "%s: out of memory", fname);
    }
    m->x.what = m->what;
    CURL *e = m->x.easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, lua_tostring(L, env_from));
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, m->rcpt);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, m);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)m->len);
    curl_easy_setopt(e, CURLOPT_USE_SSL, use_ssl);
    /* Every message gets its own SMTP session: a cached connection would carry over another
     * send's TLS state and login, and libcurl does not match them all when reusing. */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000.0 + 0.5));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(ctimeout * 1000.0 + 0.5));
    if (user)
        curl_easy_setopt(e, CURLOPT_USERNAME, user);
    if (pass)
        curl_easy_setopt(e, CURLOPT_PASSWORD, pass);
    if (cafile)
        curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
    if (capath)
        curl_easy_setopt(e, CURLOPT_CAPATH, capath);
    if (insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return http_xfer_suspend(L, t, &m->x, fname);
}
