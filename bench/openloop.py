"""Open-loop HTTP/1.1 load at a fixed rate, for bench/ingest.

Requests are scheduled at start + k / rate whatever the server does; each is
sent on an idle keep-alive connection, or queued until one frees up. Latency
is measured from the scheduled time, not the send time, so a server that
falls behind is charged for the queueing it causes (no coordinated
omission). A server more than a second of load behind is saturated: the
requests beyond that are dropped (counted, never sent) and the run is marked
so. Each request gets its own webhook-id and is signed when sent.

One thread, non-blocking sockets and select(), whose timeout has microsecond
resolution (epoll's is a millisecond, which would add up to 1 ms of
scheduling error to every figure). The generator reports its own overhead:
how late it got round to each request after its scheduled time (sched_lag:
the generator's own lateness, from Python and from waiting for a CPU), how
late each was sent (send_lag: sched_lag plus any wait for a free
connection, which is the server's doing), and the CPU time it used.
"""

import base64
import collections
import hmac
import select
import socket
import time


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


class Signer:
    """Builds signed requests for one tenant source."""

    def __init__(self, host, port, path, key, body, id_prefix):
        self.key = key
        self.body = body
        self.id_prefix = id_prefix
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nUser-Agent: referee-bench\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()

    def request(self, k):
        """The bytes of request number k."""
        wid = f"{self.id_prefix}{k:08d}"
        ts = str(int(time.time()))
        mac = hmac.digest(self.key, f"{wid}.{ts}.".encode() + self.body,
                          "sha256")
        sig = "v1," + base64.b64encode(mac).decode()
        return b"".join((
            self.head,
            f"webhook-id: {wid}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: {sig}\r\n\r\n".encode(),
            self.body,
        ))


class Conn:
    """One keep-alive connection and the request it carries, if any."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.out = b""
        self.inbuf = b""
        self.due = None  # scheduled time of the request in flight

    def fileno(self):
        return self.sock.fileno()


def parse_response(buf):
    """Returns (status, bytes used) for one whole response in buf, or None
    while it is incomplete. Only Content-Length bodies are expected."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if len(buf) < end + 4 + length:
        return None
    return status, end + 4 + length


class Run:
    """State of one fixed-rate run."""

    def __init__(self, host, port, signer, rate, total, conns):
        self.host, self.port = host, port
        self.signer = signer
        self.rate = rate
        self.total = total
        self.conns = [Conn(host, port) for _ in range(conns)]
        self.idle = collections.deque(self.conns)  # used round-robin
        self.backlog = collections.deque()  # (due, k) waiting for a conn
        self.backlog_max = max(1, rate)  # queue at most a second of load
        self.dropped = 0  # never sent: the server was a second behind
        self.latencies = []  # seconds, scheduled time to whole answer
        self.lags = []  # seconds, scheduled time to send
        self.sched_lags = []  # seconds, scheduled time to being handled
        self.statuses = {}
        self.errors = 0
        self.max_backlog = 0
        self.answered = 0

    def send(self, conn, due, k):
        now = time.perf_counter()
        self.lags.append(now - due)
        conn.due = due
        conn.out = self.signer.request(k)
        self.flush(conn)

    def flush(self, conn):
        try:
            n = conn.sock.send(conn.out)
        except BlockingIOError:
            n = 0
        conn.out = conn.out[n:]

    def next_request(self, conn):
        """Gives a freed connection the oldest queued request, if any."""
        if self.backlog:
            due, k = self.backlog.popleft()
            self.send(conn, due, k)
        else:
            self.idle.append(conn)

    def replace(self, conn):
        """A connection failed: count it and open a new one."""
        self.errors += 1
        conn.sock.close()
        fresh = Conn(self.host, self.port)
        self.conns[self.conns.index(conn)] = fresh
        self.next_request(fresh)

    def readable(self, conn):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.replace(conn)
            return
        conn.inbuf += data
        got = parse_response(conn.inbuf)
        if got is None:
            return
        status, used = got
        conn.inbuf = conn.inbuf[used:]
        self.latencies.append(time.perf_counter() - conn.due)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.answered += 1
        conn.due = None
        self.next_request(conn)

    def schedule(self, start, k, now):
        """Sends or queues every request due by now; returns the next k."""
        while k < self.total and start + k / self.rate <= now:
            due = start + k / self.rate
            self.sched_lags.append(now - due)
            if self.idle:
                self.send(self.idle.popleft(), due, k)
            elif len(self.backlog) >= self.backlog_max:
                self.dropped += 1
            else:
                self.backlog.append((due, k))
                self.max_backlog = max(self.max_backlog, len(self.backlog))
            k += 1
        return k

    def go(self, drain_s):
        start = time.perf_counter() + 0.05
        cpu0 = time.process_time()
        k = 0
        deadline = None
        while self.answered + self.errors + self.dropped < self.total:
            now = time.perf_counter()
            k = self.schedule(start, k, now)
            if k == self.total and deadline is None:
                deadline = now + drain_s
            if deadline is not None and now > deadline:
                break
            busy = [c for c in self.conns if c.due is not None]
            writing = [c for c in busy if c.out]
            wait = (start + k / self.rate - now) if k < self.total else 0.2
            r, w, _ = select.select(busy, writing, [], max(0.0, wait))
            for c in w:
                self.flush(c)
            for c in r:
                self.readable(c)
        end = time.perf_counter()
        cpu = time.process_time() - cpu0
        for c in self.conns:
            c.sock.close()
        return self.summary(end - start, cpu)

    def summary(self, wall, cpu):
        lat = sorted(self.latencies)
        lags = sorted(self.lags)
        sched = sorted(self.sched_lags)

        def ms(v):
            return None if v is None else round(v * 1000, 3)

        return {
            "scheduled": self.total,
            "answered": self.answered,
            "dropped": self.dropped,
            "unanswered": self.total - self.dropped - self.answered,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "connection_errors": self.errors,
            "rate": round(self.answered / wall, 1) if wall > 0 else 0.0,
            "saturated": self.dropped > 0 or
            self.answered < 0.97 * self.rate * wall,
            "p50_ms": ms(percentile(lat, 50)),
            "p90_ms": ms(percentile(lat, 90)),
            "p99_ms": ms(percentile(lat, 99)),
            "max_ms": ms(lat[-1] if lat else None),
            "send_lag_p50_ms": ms(percentile(lags, 50)),
            "send_lag_p99_ms": ms(percentile(lags, 99)),
            "sched_lag_p50_ms": ms(percentile(sched, 50)),
            "sched_lag_p99_ms": ms(percentile(sched, 99)),
            "sched_lag_max_ms": ms(sched[-1] if sched else None),
            "max_backlog": self.max_backlog,
            "generator_cpu": round(cpu / wall, 3) if wall > 0 else 0.0,
        }


def run(host, port, path, key, body, id_prefix, rate, duration_s,
        conns=32, drain_s=30.0):
    """Sends rate * duration_s signed requests at a fixed rate and returns
    a dict of figures (latencies in ms, measured from the scheduled time)."""
    signer = Signer(host, port, path, key, body, id_prefix)
    total = int(rate * duration_s)
    return Run(host, port, signer, rate, total, conns).go(drain_s)
