/* Modbus/TCP and RTU-over-TCP load generator (and a trivial server) for scripts/bench/benchmark.py.
 *
 * One thread, epoll, non-blocking sockets: on one core it drives more requests
 * per second than any of the Python servers can answer, which the benchmark
 * shows by running it against "serve" (a server that answers at once).
 *
 *   loadgen closed HOST PORT NPORTS CONNS QTY SECONDS [FUNC [UNIT [ADDR]]]
 *       CONNS connections (spread over NPORTS ports from PORT), each sends a read
 *       of QTY registers from address ADDR (default 0) of unit id UNIT (default 1),
 *       waits for the answer, sends the next; FUNC 3 (holding registers, the
 *       default) or 4 (input registers).
 *   loadgen fleet HOST PORT NPORTS UNITS QTY SECONDS [PER_MINUTE [FUNC [ADDR]]]
 *       NPORTS x max(UNITS, 1) meters, each read PER_MINUTE times a minute (default 60:
 *       once a second; fractions allowed), the reads spread evenly over the period; one
 *       connection per port, requests on it one after another (UNITS 0: unit id 1 on
 *       every port; otherwise unit ids 1..UNITS); FUNC and ADDR as in closed.
 *       Latency counts from the scheduled poll time, so queueing is included; an answer
 *       later than TIMEOUT_S after its request was sent counts as a timeout as well
 *       (a master would have given up on it), and a poll never answered as unanswered.
 *   loadgen storm HOST PORT CONNS QTY TIMEOUT_S
 *       CONNS connects at once, each then reads once; then one more connection
 *       reads once: how long until all were connected and answered, and how long
 *       the extra one took.
 *   loadgen serve PORT
 *       Answers every read at once with zeros (the load generator's own ceiling).
 *
 * Every mode also comes as MODE-rtu (closed-rtu, fleet-rtu, storm-rtu, serve-rtu) with the
 * same arguments: the same requests framed as RTU over TCP (unit id, PDU, CRC-16/MODBUS low
 * byte first, no MBAP header). An RTU answer has no length field: a read of QTY registers
 * is answered by 5 + 2*QTY bytes, an exception by 5. Answers whose CRC does not match are
 * counted (crc_errors), so are answers from another unit id or function code or with another
 * byte count (bad_answers: the rest of the stream is ignored until the request times out).
 *
 * In closed mode a request unanswered for TIMEOUT_S is counted (timeouts) and sent again, as
 * a master retries: an RTU slave is silent to a unit id it does not have, so a wrong unit id
 * or a lost frame shows as timeouts, never as a hang; every mode is bounded by its SECONDS.
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
#define TIMEOUT_S 1.0 /* a request unanswered this long is a timeout (closed: sent again) */

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
static uint8_t read_unit = 1; /* closed: the unit id every read goes to */
static uint16_t read_addr = 0; /* the first register every read asks for */
static int rtu;               /* framing: 0 Modbus/TCP (MBAP header), 1 RTU over TCP */
static int expect_qty;        /* RTU: the registers asked for, as answers carry no length */
static uint64_t crc_errors, bad_answers;

/* CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), a byte at a time from a table:
 * serve-rtu computes one per answer, up to 255 bytes, and must stay far above the servers. */
static uint16_t crc_table[256];

static void crc_init(void) {
    for (int i = 0; i < 256; i++) {
        uint16_t crc = i;
        for (int bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >> 1) ^ 0xA001 : crc >> 1;
        crc_table[i] = crc;
    }
}

static uint16_t crc16(const uint8_t *p, int n) {
    uint16_t crc = 0xFFFF;
    while (n-- > 0) crc = (crc >> 8) ^ crc_table[(crc ^ *p++) & 0xff];
    return crc;
}

static int crc_ok(const uint8_t *frame, int len) {
    uint16_t crc = crc16(frame, len - 2);
    return frame[len - 2] == (crc & 0xff) && frame[len - 1] == crc >> 8;
}

/* RTU requests carry no transaction id, so each unit id's read is built once and reused. */
static uint8_t rtu_reads[256][8];
static uint8_t rtu_built[256];

static int build_read(uint8_t *out, uint16_t tid, uint8_t unit, uint16_t qty) {
    if (rtu) {
        if (!rtu_built[unit]) {
            uint8_t *f = rtu_reads[unit];
            f[0] = unit; f[1] = read_func; f[2] = read_addr >> 8; f[3] = read_addr & 0xff;
            f[4] = qty >> 8; f[5] = qty & 0xff;
            uint16_t crc = crc16(f, 6);
            f[6] = crc & 0xff; /* low byte first */
            f[7] = crc >> 8;
            rtu_built[unit] = 1;
        }
        memcpy(out, rtu_reads[unit], 8);
        return 8;
    }
    uint8_t f[12] = {tid >> 8, tid & 0xff, 0, 0, 0, 6, unit, read_func, read_addr >> 8, read_addr & 0xff,
                     qty >> 8, qty & 0xff};
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
    int unit;         /* the unit id of the last request sent, which an RTU answer must carry */
    int discard;      /* RTU: a bad answer came; ignore input until the next request */
    /* fleet: a ring of pending polls (unit id, scheduled time) */
    int q_unit[256];
    double q_time[256];
    int q_head, q_len;
};

/* RTU: the answer length follows from the request (5 + 2*QTY bytes, an exception 5), so a
 * frame from the wrong unit id or function code leaves no boundary to trust: it is counted
 * and the rest ignored until the next request. *func is -1 for an answer with a bad CRC. */
static int take_rtu_frame(struct conn *c, int *func) {
    if (c->discard) { c->have = 0; return 0; }
    if (c->have < 5) return 0;
    int exception = c->buf[1] & 0x80, len = exception ? 5 : 5 + 2 * expect_qty;
    if (c->buf[0] != c->unit || (c->buf[1] & 0x7f) != read_func ||
        (!exception && c->buf[2] != (uint8_t)(2 * expect_qty))) {
        bad_answers++;
        c->discard = 1;
        c->have = 0;
        return 0;
    }
    if (c->have < len) return 0;
    if (crc_ok(c->buf, len)) {
        *func = c->buf[1];
    } else {
        crc_errors++;
        *func = -1;
    }
    memmove(c->buf, c->buf + len, c->have - len);
    c->have -= len;
    return 1;
}

static int take_frame(struct conn *c, int *func) {
    if (rtu) return take_rtu_frame(c, func);
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
    int len = build_read(req, tid, unit, qty);
    c->unit = unit;
    c->discard = 0;
    return send(c->fd, req, len, MSG_NOSIGNAL) == len ? 0 : -1;
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
    uint64_t done = 0, errors = 0, warm = 0, timeouts = 0;
    uint16_t tid = 0;
    double start = now_s(), warm_end = start + 0.5, end = warm_end + seconds, next_check = start;
    for (int i = 0; i < nconns; i++) { conns[i].sent_at = now_s(); send_read(&conns[i], ++tid, read_unit, qty); }
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
                if (func < 0) {
                    /* a bad CRC: no answer to count, and the master asks again at once */
                } else if (t >= warm_end) {
                    record(t - c->sent_at);
                    done++;
                    if (func & 0x80) errors++;
                } else {
                    warm++;
                }
                c->sent_at = t;
                if (send_read(c, ++tid, read_unit, qty) < 0) { closed = 1; break; }
            }
        }
        /* a tenth of a second between scans: 100 connections per event would cost more */
        if (t < next_check || closed) continue;
        next_check = t + 0.1;
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &conns[i];
            if (t - c->sent_at < TIMEOUT_S) continue;
            timeouts++;
            if (rtu) c->have = 0; /* as a master drops a partial frame; MBAP's length resyncs */
            c->sent_at = t;
            if (send_read(c, ++tid, read_unit, qty) < 0) { closed = 1; break; }
        }
    }
    double elapsed = now_s() - warm_end;
    if (elapsed > seconds) elapsed = seconds;
    printf("{\"framing\": \"%s\", \"requests\": %llu, \"warm_up_requests\": %llu, \"errors\": %llu, "
           "\"timeouts\": %llu, \"crc_errors\": %llu, \"bad_answers\": %llu, \"seconds\": %.3f, "
           "\"rps\": %.1f, \"p50_us\": %ld, \"p99_us\": %ld, \"closed_early\": %d}\n",
           rtu ? "rtu" : "tcp", (unsigned long long)done, (unsigned long long)warm,
           (unsigned long long)errors, (unsigned long long)timeouts, (unsigned long long)crc_errors,
           (unsigned long long)bad_answers, elapsed, done / elapsed,
           percentile_us(0.50), percentile_us(0.99), closed);
    return 0;
}

static int run_fleet(const char *host, int port, int nports, int units, int qty, double seconds,
                     double per_minute) {
    int per_port = units > 0 ? units : 1;
    long meters = (long)nports * per_port;
    double gap = 60.0 / (per_minute * meters); /* seconds between two polls of the fleet */
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
    long total_polls = (long)(seconds / gap), next_poll = 0;
    uint64_t answered = 0, errors = 0, late = 0, max_queue = 0;
    /* poll k: meter k % meters, at start + k * gap (meter m at m/meters of every period) */
    double deadline = start + seconds + 2.0; /* 2 s for the last answers */
    int failed = 0;
    while (answered + errors < (uint64_t)total_polls && !failed) {
        double t = now_s();
        if (t > deadline) break;
        while (next_poll < total_polls && start + next_poll * gap <= t) {
            long m = next_poll % meters;
            struct conn *c = &conns[m / per_port];
            if (c->q_len == 256) { failed = 1; break; }
            int slot = (c->q_head + c->q_len) % 256;
            c->q_unit[slot] = units > 0 ? (int)(m % per_port) + 1 : 1;
            c->q_time[slot] = start + next_poll * gap;
            c->q_len++;
            if ((uint64_t)c->q_len > max_queue) max_queue = c->q_len;
            if (!c->busy) {
                c->sent_at = t;
                if (send_read(c, ++tid, c->q_unit[c->q_head], qty) < 0) { failed = 1; break; }
                c->busy = 1;
            }
            next_poll++;
        }
        if (next_poll < total_polls) {
            double due = start + next_poll * gap;
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
                if (func & 0x80) errors++; else answered++; /* a bad CRC (-1) is an error too */
                if (t - c->sent_at > TIMEOUT_S) late++;
                c->q_head = (c->q_head + 1) % 256;
                c->q_len--;
                c->busy = 0;
                if (c->q_len > 0) {
                    c->sent_at = t;
                    if (send_read(c, ++tid, c->q_unit[c->q_head], qty) < 0) { failed = 1; break; }
                    c->busy = 1;
                }
            }
        }
    }
    uint64_t unanswered = total_polls - answered - errors;
    printf("{\"framing\": \"%s\", \"meters\": %ld, \"polls\": %ld, \"answered\": %llu, "
           "\"errors\": %llu, \"timeouts\": %llu, \"unanswered\": %llu, \"crc_errors\": %llu, "
           "\"bad_answers\": %llu, "
           "\"p50_us\": %ld, \"p99_us\": %ld, \"max_us\": %ld, \"max_queue\": %llu, \"failed\": %d}\n",
           rtu ? "rtu" : "tcp", meters, total_polls, (unsigned long long)answered,
           (unsigned long long)errors, (unsigned long long)(late + unanswered),
           (unsigned long long)unanswered, (unsigned long long)crc_errors, (unsigned long long)bad_answers,
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
                if (take_frame(c, &func) && func >= 0 && c->busy == 1) {
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

/* serve: answers the whole MBAP reads in c's buffer with zeros. */
static void answer_mbap(struct conn *c) {
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

/* serve-rtu: answers the whole RTU reads (8 bytes each) in c's buffer with zeros, any unit id.
 * A candidate whose CRC does not match loses one byte and the next one is tried, as an RTU
 * slave resynchronises, so one bad byte costs one request rather than the connection. */
static void answer_rtu(struct conn *c) {
    uint8_t out[BUF];
    int at = 0;
    while (c->have - at >= 8) {
        const uint8_t *req = c->buf + at;
        if (!crc_ok(req, 8)) { at++; continue; }
        int qty = req[4] << 8 | req[5];
        if (qty > 125) qty = 125;
        out[0] = req[0];
        out[1] = req[1];
        out[2] = 2 * qty;
        memset(out + 3, 0, 2 * qty);
        uint16_t crc = crc16(out, 3 + 2 * qty);
        out[3 + 2 * qty] = crc & 0xff;
        out[4 + 2 * qty] = crc >> 8;
        send(c->fd, out, 5 + 2 * qty, MSG_NOSIGNAL);
        at += 8;
    }
    memmove(c->buf, c->buf + at, c->have - at);
    c->have -= at;
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
            if (rtu) answer_rtu(c); else answer_mbap(c);
        }
    }
}

int main(int argc, char **argv) {
    raise_fd_limit();
    hist = calloc(HIST_US, sizeof *hist);
    crc_init();
    /* MODE-rtu is MODE with RTU framing */
    char mode[16] = "";
    if (argc >= 2 && strlen(argv[1]) < sizeof mode) strcpy(mode, argv[1]);
    size_t mlen = strlen(mode);
    if (mlen > 4 && strcmp(mode + mlen - 4, "-rtu") == 0) { rtu = 1; mode[mlen - 4] = 0; }
    if (argc >= 8 && strcmp(mode, "closed") == 0) {
        if (argc >= 9) read_func = (uint8_t)atoi(argv[8]);
        if (argc >= 10) read_unit = (uint8_t)atoi(argv[9]);
        if (argc >= 11) read_addr = (uint16_t)atoi(argv[10]);
        if (read_func != 3 && read_func != 4) { fprintf(stderr, "loadgen: FUNC must be 3 or 4\n"); return 2; }
        expect_qty = atoi(argv[6]);
        return run_closed(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atof(argv[7]));
    }
    if (argc >= 8 && strcmp(mode, "fleet") == 0) {
        double per_minute = argc >= 9 ? atof(argv[8]) : 60.0;
        if (argc >= 10) read_func = (uint8_t)atoi(argv[9]);
        if (argc >= 11) read_addr = (uint16_t)atoi(argv[10]);
        if (read_func != 3 && read_func != 4) { fprintf(stderr, "loadgen: FUNC must be 3 or 4\n"); return 2; }
        if (!(per_minute > 0)) { fprintf(stderr, "loadgen: PER_MINUTE must be above 0\n"); return 2; }
        expect_qty = atoi(argv[6]);
        return run_fleet(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atof(argv[7]),
                         per_minute);
    }
    if (argc >= 7 && strcmp(mode, "storm") == 0) {
        expect_qty = atoi(argv[5]);
        return run_storm(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atof(argv[6]));
    }
    if (argc >= 3 && strcmp(mode, "serve") == 0)
        return run_serve(atoi(argv[2]));
    fprintf(stderr, "usage: see the comment at the top of loadgen.c\n");
    return 2;
}
