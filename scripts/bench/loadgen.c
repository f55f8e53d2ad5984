/* Modbus/TCP load generator (and a trivial server) for scripts/bench/benchmark.py.
 *
 * One thread, epoll, non-blocking sockets: on one core it drives more requests
 * per second than any of the Python servers can answer, which the benchmark
 * shows by running it against "serve" (a server that answers at once).
 *
 *   loadgen closed HOST PORT NPORTS CONNS QTY SECONDS [FUNC]
 *       CONNS connections (spread over NPORTS ports from PORT), each sends a read
 *       of QTY registers from address 0, waits for the answer, sends the next;
 *       FUNC 3 (holding registers, the default) or 4 (input registers).
 *   loadgen fleet HOST PORT NPORTS UNITS QTY SECONDS
 *       NPORTS x max(UNITS, 1) meters, each read once a second, spread evenly over
 *       the second; one connection per port, requests on it one after another
 *       (UNITS 0: unit id 1 on every port; otherwise unit ids 1..UNITS).
 *       Latency counts from the scheduled poll time, so queueing is included.
 *   loadgen storm HOST PORT CONNS QTY TIMEOUT_S
 *       CONNS connects at once, each then reads once; then one more connection
 *       reads once: how long until all were connected and answered, and how long
 *       the extra one took.
 *   loadgen serve PORT
 *       Answers every read at once with zeros (the load generator's own ceiling).
 *
 * Results are one line of JSON on stdout; latencies in microseconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 2000000 /* latencies above 2 s land in the last bucket */
#define BUF 600

static uint32_t *hist;
static uint64_t hist_n;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void record(double latency_s) {
    long us = (long)(latency_s * 1e6);
    if (us < 0) us = 0;
    if (us >= HIST_US) us = HIST_US - 1;
    hist[us]++;
    hist_n++;
}

static long percentile_us(double p) {
    if (hist_n == 0) return -1;
    uint64_t target = (uint64_t)(p * hist_n), seen = 0;
    if (target >= hist_n) target = hist_n - 1;
    for (long us = 0; us < HIST_US; us++) {
        seen += hist[us];
        if (seen > target) return us;
    }
    return HIST_US - 1;
}

static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int connect_to(const char *host, int port, int nonblock) {
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static uint8_t read_func = 3; /* the read's function code: 3 holding, 4 input registers */

static int build_read(uint8_t *out, uint16_t tid, uint8_t unit, uint16_t qty) {
    uint8_t f[12] = {tid >> 8, tid & 0xff, 0, 0, 0, 6, unit, read_func, 0, 0, qty >> 8, qty & 0xff};
    memcpy(out, f, 12);
    return 12;
}

/* A connection's receive buffer: returns 1 with the frame's function code when a whole frame is in. */
struct conn {
    int fd;
    uint8_t buf[BUF];
    int have;
    double sent_at;   /* closed/storm: when the outstanding request was sent */
    int busy;         /* a request is outstanding */
    int port;
    /* fleet: a ring of pending polls (unit id, scheduled time) */
    int q_unit[256];
    double q_time[256];
    int q_head, q_len;
};

static int take_frame(struct conn *c, int *func) {
    if (c->have < 7) return 0;
    int len = (c->buf[4] << 8 | c->buf[5]) + 6;
    if (len > BUF || c->have < len) return 0;
    *func = c->buf[7];
    memmove(c->buf, c->buf + len, c->have - len);
    c->have -= len;
    return 1;
}

/* Read what is there; -1 when the peer closed or failed. */
static int fill(struct conn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->have, BUF - c->have, 0);
        if (n > 0) { c->have += n; if (c->have == BUF) return 0; continue; }
        if (n == 0) return -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == EINTR) continue;
        return -1;
    }
}

static int send_read(struct conn *c, uint16_t tid, uint8_t unit, uint16_t qty) {
    uint8_t req[12];
    build_read(req, tid, unit, qty);
    return send(c->fd, req, 12, MSG_NOSIGNAL) == 12 ? 0 : -1;
}

static int run_closed(const char *host, int port, int nports, int nconns, int qty, double seconds) {
    int ep = epoll_create1(0);
    struct conn *conns = calloc(nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = connect_to(host, port + i % nports, 0); /* blocking connect, then non-blocking */
        if (conns[i].fd < 0) { printf("{\"error\": \"connect failed\"}\n"); return 1; }
        fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    uint64_t done = 0, errors = 0, warm = 0;
    uint16_t tid = 0;
    double start = now_s(), warm_end = start + 0.5, end = warm_end + seconds;
    for (int i = 0; i < nconns; i++) { conns[i].sent_at = now_s(); send_read(&conns[i], ++tid, 1, qty); }
    struct epoll_event evs[256];
    int closed = 0;
    while (!closed) {
        int n = epoll_wait(ep, evs, 256, 100);
        double t = now_s();
        if (t >= end) break;
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            if (fill(c) < 0) { closed = 1; break; }
            int func;
            while (take_frame(c, &func)) {
                if (t >= warm_end) {
                    record(t - c->sent_at);
                    done++;
                    if (func & 0x80) errors++;
                } else {
                    warm++;
                }
                c->sent_at = t;
                if (send_read(c, ++tid, 1, qty) < 0) { closed = 1; break; }
            }
        }
    }
    double elapsed = now_s() - warm_end;
    if (elapsed > seconds) elapsed = seconds;
    printf("{\"requests\": %llu, \"warm_up_requests\": %llu, \"errors\": %llu, \"seconds\": %.3f, "
           "\"rps\": %.1f, \"p50_us\": %ld, \"p99_us\": %ld, \"closed_early\": %d}\n",
           (unsigned long long)done, (unsigned long long)warm, (unsigned long long)errors, elapsed,
           done / elapsed,
           percentile_us(0.50), percentile_us(0.99), closed);
    return 0;
}

static int run_fleet(const char *host, int port, int nports, int units, int qty, double seconds) {
    int per_port = units > 0 ? units : 1;
    long meters = (long)nports * per_port;
    int ep = epoll_create1(0);
    struct conn *conns = calloc(nports, sizeof *conns);
    for (int i = 0; i < nports; i++) {
        conns[i].fd = connect_to(host, port + i, 0);
        if (conns[i].fd < 0) { printf("{\"error\": \"connect failed to port %d\"}\n", port + i); return 1; }
        fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    /* warm-up: one read on every connection, all answered, before the clock starts, so the
     * server has accepted every connection (and started whatever serves it) */
    struct epoll_event evs[256];
    uint16_t tid = 0;
    int warm_left = nports;
    for (int i = 0; i < nports; i++) send_read(&conns[i], ++tid, 1, qty);
    double warm_deadline = now_s() + 60;
    while (warm_left > 0 && now_s() < warm_deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            int func;
            if (fill(c) < 0) { printf("{\"error\": \"closed in warm-up\"}\n"); return 1; }
            while (take_frame(c, &func)) warm_left--;
        }
    }
    if (warm_left > 0) { printf("{\"error\": \"%d connections not answered in warm-up\"}\n", warm_left); return 1; }
    double start = now_s() + 0.2;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = 0xFFFFFFFF};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    long total_polls = (long)(meters * seconds), next_poll = 0;
    uint64_t answered = 0, errors = 0, max_queue = 0;
    /* poll k: meter k % meters, at start + k / meters (meter m at m/meters of every second) */
    double deadline = start + seconds + 2.0; /* 2 s for the last answers */
    int failed = 0;
    while (answered + errors < (uint64_t)total_polls && !failed) {
        double t = now_s();
        if (t > deadline) break;
        while (next_poll < total_polls && start + (double)next_poll / meters <= t) {
            long m = next_poll % meters;
            struct conn *c = &conns[m / per_port];
            if (c->q_len == 256) { failed = 1; break; }
            int slot = (c->q_head + c->q_len) % 256;
            c->q_unit[slot] = units > 0 ? (int)(m % per_port) + 1 : 1;
            c->q_time[slot] = start + (double)next_poll / meters;
            c->q_len++;
            if ((uint64_t)c->q_len > max_queue) max_queue = c->q_len;
            if (!c->busy) {
                if (send_read(c, ++tid, c->q_unit[c->q_head], qty) < 0) { failed = 1; break; }
                c->busy = 1;
            }
            next_poll++;
        }
        if (next_poll < total_polls) {
            double due = start + (double)next_poll / meters;
            struct itimerspec its = {0};
            its.it_value.tv_sec = (time_t)due;
            its.it_value.tv_nsec = (long)((due - (time_t)due) * 1e9);
            if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, evs, 256, 100);
        t = now_s();
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u32 == 0xFFFFFFFF) { uint64_t x; read(tfd, &x, sizeof x); continue; }
            struct conn *c = &conns[evs[k].data.u32];
            if (fill(c) < 0) { failed = 1; break; }
            int func;
            while (take_frame(c, &func)) {
                if (!c->busy) continue;
                record(t - c->q_time[c->q_head]);
                if (func & 0x80) errors++; else answered++;
                c->q_head = (c->q_head + 1) % 256;
                c->q_len--;
                c->busy = 0;
                if (c->q_len > 0) {
                    if (send_read(c, ++tid, c->q_unit[c->q_head], qty) < 0) { failed = 1; break; }
                    c->busy = 1;
                }
            }
        }
    }
    printf("{\"meters\": %ld, \"polls\": %ld, \"answered\": %llu, \"errors\": %llu, "
           "\"p50_us\": %ld, \"p99_us\": %ld, \"max_us\": %ld, \"max_queue\": %llu, \"failed\": %d}\n",
           meters, total_polls, (unsigned long long)answered, (unsigned long long)errors,
           percentile_us(0.50), percentile_us(0.99), percentile_us(1.0),
           (unsigned long long)max_queue, failed);
    return 0;
}

static int run_storm(const char *host, int port, int nconns, int qty, double timeout_s) {
    int ep = epoll_create1(0);
    struct conn *conns = calloc(nconns, sizeof *conns);
    double t0 = now_s();
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = connect_to(host, port, 1);
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = i};
        if (conns[i].fd >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    int connected = 0, answered = 0;
    double all_connected = -1, all_answered = -1;
    struct epoll_event evs[256];
    uint16_t tid = 0;
    while (answered < nconns && now_s() - t0 < timeout_s) {
        int n = epoll_wait(ep, evs, 256, 50);
        double t = now_s();
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            if ((evs[k].events & EPOLLOUT) && !c->busy) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) continue;
                connected++;
                if (connected == nconns) all_connected = t - t0;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->busy = 1;
                send_read(c, ++tid, 1, qty);
            } else if (evs[k].events & EPOLLIN) {
                int func;
                if (fill(c) < 0) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); continue; }
                if (take_frame(c, &func) && c->busy == 1) {
                    c->busy = 2;
                    answered++;
                    if (answered == nconns) all_answered = t - t0;
                }
            }
        }
    }
    /* one more client while the others stay connected */
    double e0 = now_s(), extra = -1;
    int fd = connect_to(host, port, 0);
    if (fd >= 0) {
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct conn c = {.fd = fd};
        int func = 0;
        if (send_read(&c, 1, 1, qty) == 0) {
            while (!take_frame(&c, &func)) {
                ssize_t n = recv(fd, c.buf + c.have, BUF - c.have, 0);
                if (n <= 0) break;
                c.have += n;
            }
            if (func == read_func) extra = now_s() - e0;
        }
        close(fd);
    }
    printf("{\"clients\": %d, \"connected\": %d, \"answered\": %d, \"all_connected_s\": %.4f, "
           "\"all_answered_s\": %.4f, \"extra_client_s\": %.4f}\n",
           nconns, connected, answered, all_connected, all_answered, extra);
    for (int i = 0; i < nconns; i++) if (conns[i].fd >= 0) close(conns[i].fd);
    return 0;
}

static int run_serve(int port) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
        perror("serve");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (fill(c) < 0) { close(c->fd); free(c); continue; }
            uint8_t out[BUF];
            while (c->have >= 12) {
                int qty = c->buf[10] << 8 | c->buf[11];
                if (qty > 125) qty = 125;
                int len = 9 + 2 * qty;
                memcpy(out, c->buf, 8);
                out[4] = (3 + 2 * qty) >> 8;
                out[5] = (3 + 2 * qty) & 0xff;
                out[8] = 2 * qty;
                memset(out + 9, 0, 2 * qty);
                int flen = (c->buf[4] << 8 | c->buf[5]) + 6;
                memmove(c->buf, c->buf + flen, c->have - flen);
                c->have -= flen;
                send(c->fd, out, len, MSG_NOSIGNAL);
            }
        }
    }
}

int main(int argc, char **argv) {
    raise_fd_limit();
    hist = calloc(HIST_US, sizeof *hist);
    if (argc >= 8 && strcmp(argv[1], "closed") == 0) {
        if (argc >= 9) read_func = (uint8_t)atoi(argv[8]);
        if (read_func != 3 && read_func != 4) { fprintf(stderr, "loadgen: FUNC must be 3 or 4\n"); return 2; }
        return run_closed(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atof(argv[7]));
    }
    if (argc >= 8 && strcmp(argv[1], "fleet") == 0)
        return run_fleet(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atof(argv[7]));
    if (argc >= 7 && strcmp(argv[1], "storm") == 0)
        return run_storm(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atof(argv[6]));
    if (argc >= 3 && strcmp(argv[1], "serve") == 0)
        return run_serve(atoi(argv[2]));
    fprintf(stderr, "usage: see the comment at the top of loadgen.c\n");
    return 2;
}
