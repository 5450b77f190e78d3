"""The HTTP front door: a threading server that hands requests to a Sim.

Every answer is JSON in Zoho's shapes (or empty for 204/304); malformed
requests and internal failures get a Zoho-style error body, never an HTML
page or a traceback. Connections are kept alive (HTTP/1.1).
"""
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import errors
from .messages import Call, Reply

EMPTY_STATUSES = (204, 304)


class BodyError(Exception):
    """The request body could not be read."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into Calls and Replies into HTTP answers."""

    protocol_version = "HTTP/1.1"
    server_version = "ZohoSim/1.0"
    wbufsize = 256 * 1024

    def setup(self):
        """Disable Nagle so small answers are not held back by delayed
        ACKs on the client (40 ms per call otherwise)."""
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,
                                       1)
        except OSError:
            pass

    def version_string(self):
        """The Server header."""
        return self.server_version

    def handle_expect_100(self):
        """Send '100 Continue' at once; the buffered writer would hold it."""
        answer = super().handle_expect_100()
        self.wfile.flush()
        return answer

    def do_GET(self):
        """Every verb goes through the same path; the API decides."""
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self):
        sim = self.server.sim
        try:
            body = self._read_body(sim.config.max_body_bytes)
        except BodyError as exc:
            self.close_connection = True
            self._send(Reply(exc.status, errors.error_item(
                "INVALID_DATA" if exc.status == 400 else "LIMIT_EXCEEDED",
                str(exc))))
            return
        path, _, query = self.path.partition("?")
        call = Call(self.command, path, query, self.headers, body)
        reply = sim.handle(call)
        self._send(reply)
        if call.shutdown:
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def _read_body(self, limit):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if not raw:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise BodyError(400, "invalid Content-Length") from None
        if length < 0:
            raise BodyError(400, "invalid Content-Length")
        if length > limit:
            raise BodyError(413, "the request body is too large")
        return self.rfile.read(length)

    def _read_chunked(self, limit):
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise BodyError(400, "invalid chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise BodyError(413, "the request body is too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, reply):
        status = reply.status
        empty = status in EMPTY_STATUSES or reply.body is None
        data = b"" if empty else json.dumps(
            reply.body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if not empty:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if status not in EMPTY_STATUSES:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_error(self, code, message=None, explain=None):
        """Answer protocol-level failures with a Zoho-style JSON body."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # Always send a status line.
        body = errors.error_item("INVALID_REQUEST",
                                 message or "the request is malformed")
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and \
                    code not in EMPTY_STATUSES:
                self.wfile.write(data)
        except OSError:
            pass

    def log_message(self, format, *args):
        """Log requests to stderr only with --verbose."""
        if self.server.sim.verbose:
            sys.stderr.write("zoho_sim: %s - %s\n" % (
                self.address_string(), format % args))


class SimServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying its Sim; threads are daemons."""

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address, sim):
        self.sim = sim
        super().__init__(address, Handler)
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        sim.base_url = "http://%s:%d" % (shown, port)

    def handle_error(self, request, client_address):
        """Log a connection-level failure briefly instead of a traceback."""
        exc = sys.exc_info()[1]
        if self.sim.verbose:
            sys.stderr.write("zoho_sim: connection error: %r\n" % (exc,))


def start(sim, host="127.0.0.1", port=0):
    """Start serving in a background thread; return the SimServer.

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    server = SimServer((host, port), sim)
    thread = threading.Thread(target=server.serve_forever, name="zoho-sim",
                              daemon=True)
    thread.start()
    server.thread = thread
    return server
