/* The server's socket side: http_server_t setup, the listening TCP socket, accepting (and
 * the max_connections limit), the libuv transport behind each connection's struct http_io
 * (streams, the one timer, lingering close), and graceful close / abort of the whole
 * server. The protocol itself is core/http/http_conn.c's. */
#include "http_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long a closing connection drains input so the peer can read the last answer. */
#define LINGER_MS 2000

void http_limits_default(struct http_limits *l)
{
    l->max_header_bytes = 16384;
    l->max_body_bytes = 8 * 1024 * 1024;
    l->max_connections = 10000;
    l->header_timeout_ms = 10000;
    l->body_timeout_ms = 30000;
    l->idle_timeout_ms = 60000;
    l->max_pipelined = 64;
    l->max_body_bytes_in_flight = 128 * 1024 * 1024;
}

void http_server_check_closed(http_server_t *s)
{
    if (s->closing && !s->listener && !s->listener_closing && s->nconns == 0 &&
        !s->closed_notified) {
        s->closed_notified = 1;
        if (s->on_closed)
            s->on_closed(s, s->ud);
    }
}

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
        http_conn_close(&u->c, 0);
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

static void free_unlinked(uv_handle_t *h)
{
    free(h->data);
}

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

/* A socket of its own with SO_REUSEPORT set before bind (libuv 1.44 cannot ask for it): every
 * worker process binds the same address and the kernel spreads new connections over their
 * listening sockets. Only worker processes ask for it, so a second daemon started by mistake
 * on a taken port still fails with EADDRINUSE. */
static int shared_socket(uv_tcp_t *t, const struct sockaddr *sa, const char **err_what)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int on = 1;
    *err_what = "SO_REUSEPORT";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    *err_what = "bind";
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, sa, len) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    int rc = uv_tcp_open(t, fd);
    if (rc != 0)
        close(fd);
    return rc;
}

static int server_listen(http_server_t *s, uv_loop_t *loop, const char *host, int port, int shared,
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
    rc = shared ? shared_socket(t, (struct sockaddr *)&ss, err_what)
                : uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
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

int http_server_listen(http_server_t *s, uv_loop_t *loop, const char *host, int port,
                       const char **err_what)
{
    return server_listen(s, loop, host, port, 0, err_what);
}

int http_server_listen_shared(http_server_t *s, uv_loop_t *loop, const char *host, int port,
                              const char **err_what)
{
    return server_listen(s, loop, host, port, 1, err_what);
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
    http_server_check_closed(s);
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
        http_conn_server_closing(c);
    }
    http_server_check_closed(s);
}

void http_server_abort(http_server_t *s)
{
    s->closing = 1;
    s->aborting = 1;
    close_listener(s);
    for (http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        http_conn_close(c, 0);
    }
    http_server_check_closed(s);
}
