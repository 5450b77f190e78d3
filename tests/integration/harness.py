"""Test harness for the referee integration tests (standard library only).

A Daemon owns a throwaway directory with a data folder, a tenants folder
(filled from tests/fixtures/tenants or from strings) and an optional config
file. It starts the real binary on 127.0.0.1 with port 0, learns the port
from the daemon's "listening" log line, keeps draining the daemon's output
in a thread, and can stop it gracefully, kill it with SIGKILL and start it
again on the same data directory. DaemonTestCase prints the log tail of
every daemon a test used when that test fails.

Environment: REFEREE_BIN (the binary; default build/referee in the source
tree), REFEREE_SANITIZED=1 (slower binary: scale() stretches waits),
REFEREE_KEEP_TMP=1 (keep the throwaway directories for a post-mortem).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get(
    "REFEREE_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("REFEREE_BIN",
                     os.path.join(SOURCE_DIR, "build", "referee"))
FIXTURE_TENANTS = os.path.join(SOURCE_DIR, "tests", "fixtures", "tenants")
SANITIZED = os.environ.get("REFEREE_SANITIZED", "") not in ("", "0")
KEEP_TMP = os.environ.get("REFEREE_KEEP_TMP", "") not in ("", "0")
HOST = "127.0.0.1"

# Secrets of the fixture tenants (tests/fixtures/tenants/*/tenant.lua).
SECRETS = {
    ("acme", "shop"): "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ("acme", "billing"): "billing-plain-secret-0123456789",
    ("globex", "shop"): "whsec_Z2xvYmV4LWtleS1mb3ItdGVzdHMtb25seQ==",
}

LISTENING = re.compile(r"mod=daemon addr=127\.0\.0\.1:(\d+) .*"
                       r'msg="listening with (\d+) tenants"')


def scale(seconds):
    """Stretches a time limit for the slower sanitized build."""
    return seconds * (3.0 if SANITIZED else 1.0)


def wait_until(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value, which is returned; raises
    AssertionError naming `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def new_id(prefix="msg"):
    """A fresh delivery id."""
    return "%s_%s" % (prefix, uuid.uuid4().hex)


# --- Standard Webhooks --------------------------------------------------

def secret_key(secret):
    """The HMAC key of a secret: base64-decoded after whsec_, else its
    bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def signature(secret, msg_id, timestamp, body):
    """The "v1,<base64>" signature of one delivery."""
    signed = ("%s.%s." % (msg_id, timestamp)).encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret, body, msg_id=None, timestamp=None, extra=None):
    """webhook-id, webhook-timestamp and webhook-signature for body, plus
    Content-Type and any extra headers."""
    msg_id = new_id() if msg_id is None else msg_id
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
    headers.update(extra or {})
    return headers


def hook_path(tenant, source):
    return "/t/%s/hooks/%s" % (tenant, source)


# --- HTTP ---------------------------------------------------------------

class Response:
    """A finished HTTP exchange: status, lower-cased headers, body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def error_code(self):
        """The code of a {"error":{"code":..,"message":..}} body."""
        doc = self.json()
        assert set(doc) == {"error"}, doc
        assert set(doc["error"]) == {"code", "message"}, doc
        return doc["error"]["code"]

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def exchange(conn, method, path, body=b"", headers=None):
    """Sends one request on an http.client connection; returns a Response.
    Raises OSError or http.client errors when the connection fails."""
    if isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return Response(resp.status,
                    {k.lower(): v for k, v in resp.getheaders()}, data)


def read_http_response(sock, timeout):
    """Reads one response (status line, headers, Content-Length body) from a
    raw socket. Returns a Response, or None when the peer closed or reset
    the connection before a status line came; raises AssertionError when
    neither happens within `timeout` seconds."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        want = int(headers.get("content-length", "0"))
        while len(rest) < want:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return Response(status, headers, rest[:want])
    except ConnectionResetError:
        return None
    except socket.timeout:
        raise AssertionError("no answer and no close within %.1f s (got %r)"
                             % (timeout, buf[:200]))


def send_head(sock, method, path, headers, body_part=b""):
    """Writes a request head (and optionally the start of its body) on a
    raw socket."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + HOST]
    lines += ["%s: %s" % kv for kv in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body_part)


def start_request_in_flight(sock, path, headers, body, sent):
    """Sends the head of a request with `Expect: 100-continue` plus the
    first `sent` bytes of its body, and returns once the server has
    answered "100 Continue": from then on the request is in flight."""
    headers = dict(headers, **{"Content-Length": str(len(body)),
                               "Expect": "100-continue"})
    send_head(sock, "POST", path, headers)
    sock.settimeout(scale(5))
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(1)
        assert chunk, "closed before 100 Continue: %r" % got
        got += chunk
    assert got.startswith(b"HTTP/1.1 100"), got
    sock.sendall(body[:sent])


def wait_closed(sock, timeout):
    """Reads and discards until the peer closes (EOF or reset). Returns the
    seconds it took, or None if the socket was still open at `timeout`."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < timeout:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


# --- the daemon ---------------------------------------------------------

class DaemonError(AssertionError):
    pass


class Daemon:
    """One referee daemon with its own throwaway directory.

    tenants: names of fixture tenants to copy (tests/fixtures/tenants/NAME)
    extra_tenants: {id: tenant.lua text} written beside them
    config: text of a Lua config file, passed with --config
    port: the port to listen on (0: any; the log line tells which)
    allow_private: sets scripts.allow_private in the config, since the
        tests' tenants reach their stand-in services on 127.0.0.1
    """

    def __init__(self, tenants=("acme",), extra_tenants=None, config=None,
                 label="referee", port=0, allow_private=True):
        self.label = label
        self.listen_port = port
        self.root = tempfile.mkdtemp(prefix="referee-it-")
        self.data_dir = os.path.join(self.root, "data")
        self.tenants_dir = os.path.join(self.root, "tenants")
        self.config_path = None
        self.log_path = os.path.join(self.root, "daemon.log")
        os.makedirs(self.tenants_dir)
        for name in tenants:
            shutil.copytree(os.path.join(FIXTURE_TENANTS, name),
                            os.path.join(self.tenants_dir, name))
        for name, text in (extra_tenants or {}).items():
            self.write_tenant(name, text)
        if allow_private:
            # The test's own config, with the operator's consent added.
            config = ("local c = (function()\n%s\nend)() or {}\n"
                      "c.scripts = c.scripts or {}\n"
                      "c.scripts.allow_private = true\n"
                      "return c\n" % (config or "return {}"))
        if config is not None:
            self.config_path = os.path.join(self.root, "config.lua")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.proc = None
        self.port = None
        self.starts = 0
        self._lines = []
        self._cond = threading.Condition()
        self._reader = None
        self._log = open(self.log_path, "ab")

    # -- files ---------------------------------------------------------

    def write_tenant(self, tenant_id, text):
        """Writes tenants/<id>/tenant.lua atomically (a running daemon may
        be watching): the file, or a new folder, is renamed into place."""
        folder = os.path.join(self.tenants_dir, tenant_id)
        staging = tempfile.mkdtemp(prefix="staging-", dir=self.root)
        with open(os.path.join(staging, "tenant.lua"), "w") as f:
            f.write(text)
        if os.path.isdir(folder):
            os.replace(os.path.join(staging, "tenant.lua"),
                       os.path.join(folder, "tenant.lua"))
            os.rmdir(staging)
        else:
            os.rename(staging, folder)

    # -- process -------------------------------------------------------

    def argv(self):
        argv = [BIN, "run", "--listen", "%s:%d" % (HOST, self.listen_port),
                "--data", self.data_dir,
                "--tenants", self.tenants_dir]
        if self.config_path:
            argv += ["--config", self.config_path]
        return argv

    def start(self, timeout=None):
        """Starts the binary and waits for its listening line."""
        assert self.proc is None, "already running"
        self.starts += 1
        first_line = len(self._lines)
        self._note("--- start %d: %s" % (self.starts, " ".join(self.argv())))
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._drain,
                                        args=(self.proc,), daemon=True)
        self._reader.start()
        self.port = None
        port = self.wait_log(LISTENING, timeout or scale(10), first_line)
        self.port = int(port.group(1))
        return self

    def _drain(self, proc):
        for raw in iter(proc.stdout.readline, b""):
            self._log.write(raw)
            self._log.flush()
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip())
                self._cond.notify_all()
        proc.stdout.close()
        with self._cond:
            self._cond.notify_all()

    def _note(self, text):
        with self._cond:
            self._lines.append(text)
        self._log.write(text.encode() + b"\n")
        self._log.flush()

    def wait_log(self, pattern, timeout, first_line=0):
        """Waits for a log line matching pattern (a compiled regex) at or
        after line index first_line; returns the match."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[first_line:]:
                    m = pattern.search(line)
                    if m:
                        return m
                first_line = len(self._lines)
                left = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if left <= 0 or exited:
                    why = "exited with %s" % self.proc.returncode \
                        if exited else "timed out"
                    raise DaemonError("%s: %s waiting for log /%s/\n%s"
                                      % (self.label, why, pattern.pattern,
                                         self.log_tail()))
                self._cond.wait(min(left, 0.1))

    def log_lines(self):
        with self._cond:
            return list(self._lines)

    def log_tail(self, n=60):
        lines = self.log_lines()[-n:]
        return "\n".join("    " + line for line in lines)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _reap(self, timeout):
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                self._reader.join(5)
        return code

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def wait_exit(self, timeout=None):
        """Waits for the process to end by itself; returns its exit code
        (negative: the signal that ended it). Kills it and raises
        DaemonError if it is still running after `timeout` seconds."""
        assert self.proc is not None, "not running"
        try:
            code = self._reap(timeout or scale(20))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._reap(10)
            self.proc = None
            raise DaemonError("%s did not exit within the time limit\n%s"
                              % (self.label, self.log_tail()))
        self.proc = None
        self._note("--- exited with %d" % code)
        return code

    def stop(self, timeout=None, sig=signal.SIGTERM):
        """Stops gracefully and checks the exit code is 0."""
        assert self.proc is not None, "not running"
        self.proc.send_signal(sig)
        code = self.wait_exit(timeout)
        if code != 0:
            raise DaemonError("%s exited with %d, want 0\n%s"
                              % (self.label, code, self.log_tail()))
        return code

    def kill(self):
        """SIGKILL: no chance to clean up or commit."""
        assert self.proc is not None, "not running"
        self.proc.kill()
        code = self._reap(10)
        self.proc = None
        self._note("--- killed (%d)" % code)

    def restart(self):
        if self.proc is not None:
            self.stop()
        return self.start()

    def close(self):
        """Kills the daemon if it still runs and removes the directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reap(10)
            self.proc = None
        self._log.close()
        if not KEEP_TMP:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- talking to it -------------------------------------------------

    def connect(self, timeout=None):
        """A keep-alive http.client connection to the daemon."""
        return http.client.HTTPConnection(HOST, self.port,
                                          timeout=timeout or scale(10))

    def raw(self, timeout=None):
        """A connected raw TCP socket."""
        return socket.create_connection((HOST, self.port),
                                        timeout=timeout or scale(10))

    def request(self, method, path, body=b"", headers=None, timeout=None):
        conn = self.connect(timeout)
        try:
            return exchange(conn, method, path, body, headers)
        finally:
            conn.close()

    def post(self, tenant, source, body, headers=None, conn=None):
        """POSTs a webhook; on `conn` when given (keep-alive)."""
        if isinstance(body, str):
            body = body.encode()
        if conn is not None:
            return exchange(conn, "POST", hook_path(tenant, source), body,
                            headers)
        return self.request("POST", hook_path(tenant, source), body, headers)

    def post_signed(self, tenant, source, body, msg_id=None, timestamp=None,
                    extra=None, conn=None):
        if isinstance(body, str):
            body = body.encode()
        headers = signed_headers(SECRETS[(tenant, source)], body, msg_id,
                                 timestamp, extra)
        return self.post(tenant, source, body, headers, conn)

    def refuses_connections(self):
        """Whether a new TCP connection to the daemon's port is refused.
        A connection reset during the handshake counts as refused: that is
        what the kernel answers when the listening socket closes while the
        connection is being set up (it was never accepted)."""
        try:
            socket.create_connection((HOST, self.port), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        return False

    # -- the command line ----------------------------------------------

    def events_list(self, tenant, since=None):
        """`referee events list` as a list of dicts, oldest first."""
        return events_list(self.data_dir, tenant, since)


def free_port():
    """A port on 127.0.0.1 that nothing listens on right now, for a daemon
    whose address must be known before it starts (Zoho's notify_url)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def run_cli(*args, timeout=None):
    """Runs the binary with args; returns the CompletedProcess (bytes)."""
    return subprocess.run([BIN] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout or scale(30))


def events_list(data_dir, tenant, since=None):
    args = ["events", "list", "--data", data_dir, "--tenant", tenant]
    if since is not None:
        args += ["--since", since]
    res = run_cli(*args)
    if res.returncode != 0:
        raise AssertionError("events list exited %d: %s"
                             % (res.returncode, res.stderr.decode("replace")))
    try:
        text = res.stdout.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AssertionError("events list printed bytes that are not UTF-8"
                             " (%s) near %r"
                             % (e, res.stdout[max(0, e.start - 40):e.end]))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def event_body(event):
    """An event's body as bytes, whichever field carries it."""
    if "body_base64" in event:
        return base64.b64decode(event["body_base64"])
    return event["body"].encode()


# --- test case base -----------------------------------------------------

class DaemonTestCase(unittest.TestCase):
    """Tracks the daemons a test (or its class) starts, stops them, and
    prints their log tails when the test fails."""

    class_daemons = ()

    @classmethod
    def start_class_daemon(cls, **kwargs):
        d = Daemon(**kwargs)
        cls.class_daemons = list(cls.class_daemons) + [d]
        try:
            d.start()
        except BaseException:
            sys.stderr.write("\n%s\n" % d.log_tail())
            d.close()
            raise
        return d

    @classmethod
    def tearDownClass(cls):
        daemons, cls.class_daemons = cls.class_daemons, ()
        errors = []
        for d in daemons:
            try:
                if d.running():
                    d.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                d.close()
        if errors:
            raise AssertionError("\n".join(errors))

    def daemon(self, start=True, **kwargs):
        """A daemon for this test (started unless start=False). When the
        test ends it is stopped gracefully if it still runs, which must
        exit 0 (under ASan that includes the leak check), and its
        directory is removed."""
        d = Daemon(**kwargs)
        self._daemons.append(d)
        self.addCleanup(self._finish, d)
        if start:
            d.start()
        return d

    @staticmethod
    def _finish(d):
        try:
            if d.running():
                d.stop()
        finally:
            d.close()

    def run(self, result=None):
        self._daemons = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        outcome = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for d in self._daemons + list(type(self).class_daemons):
                sys.stderr.write("\n--- log tail of %s (%s) ---\n%s\n"
                                 % (d.label, d.root, d.log_tail()))
        return outcome
