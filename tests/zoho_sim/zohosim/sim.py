"""The simulator object: every part wired together behind one lock.

:class:`Sim` owns the clock, the records, OAuth state, limits, faults, watch
channels, progress replay and the log of calls. :meth:`Sim.handle` serves a
parsed request by its first path segment: ``_sim`` (control), a data centre
code followed by ``accounts`` or ``api``.
"""
import os
import sys
import threading
import time
import traceback
import urllib.parse

from . import accounts
from . import api
from . import auth as authmod
from . import config as cfg
from . import control
from . import errors
from . import ztime
from .clock import SimClock
from .faults import Faults
from .messages import Reply
from .limits import Limits
from .progress import Progress
from .store import Store
from .watch import Watch

SECRET_PARAMS = ("client_secret", "refresh_token", "code", "token")
LOGGED_HEADERS = ("If-Modified-Since", "If-Unmodified-Since", "X-EXTERNAL")


class Sim:
    """One simulated Zoho CRM organisation with its accounts servers."""

    def __init__(self, data_dir, config=None, clients=None, start=None,
                 frozen=False, offset=None, verbose=False):
        self.lock = threading.RLock()
        self.data_dir = data_dir
        self.config = config or cfg.Config()
        self.client_specs = clients or authmod.default_clients()
        self.start = start
        self.frozen = frozen
        self.offset_text = offset
        self.verbose = verbose
        self.base_url = "http://127.0.0.1:0"
        self.clock = SimClock(start, frozen)
        self.faults = Faults()
        self.watch = Watch(self)
        self.calls = []
        self.calls_dropped = 0
        self.page_tokens = {}
        self.reset()

    def reset(self, data_dir=None, keep_auth=False):
        """Reload the data and forget every change, token and fault."""
        with self.lock:
            if data_dir:
                self.data_dir = data_dir
            self.config.reset()
            self.clock.reset(self.start, self.frozen)
            self.faults.clear()
            self.watch.reset()
            self.calls, self.calls_dropped = [], 0
            self.page_tokens = {}
            self._load_store()
            if not keep_auth or not hasattr(self, "auth"):
                self.auth = authmod.Auth(self.config, self.faults)
                self.auth.seed(self.client_specs)
            self.limits = Limits(self.config, len(self.store.users))
            self.progress = Progress()
            self.progress.load(self.data_dir)

    def _load_store(self):
        offset = _offset_of(self.offset_text, self.data_dir)
        self.store = Store(offset)
        self.store.load(self.data_dir, self.clock.now())
        self.store.take_changes()

    # URLs --------------------------------------------------------------

    def api_domain(self, dc):
        """The api_domain token answers carry for a data centre."""
        return "%s/%s/api" % (self.base_url, dc)

    def accounts_url(self, dc):
        """The accounts server URL of a data centre."""
        return "%s/%s/accounts" % (self.base_url, dc)

    # Serving -----------------------------------------------------------

    def flush_changes(self):
        """Hand the changes of the current request to the watch API."""
        self.watch.notify(self.store.take_changes())

    def handle(self, call):
        """Serve one request; never raises."""
        parts = call.path.split("/")[1:]
        if parts and parts[0] == "_sim":
            return self._guarded(call, lambda: control.handle(self, call,
                                                              parts[1:]))
        started = time.monotonic()
        dc = parts[0].lower() if parts else ""
        if dc not in cfg.DATA_CENTRES or len(parts) < 2 or \
                parts[1] not in ("api", "accounts"):
            reply = _error_reply(errors.invalid_url())
            self._log(call, reply, "other", started)
            return reply
        call.dc = dc
        if parts[1] == "accounts":
            reply = self._guarded(call, lambda: accounts.handle(
                self, call, parts[2:]))
            self._log(call, reply, "accounts", started)
        else:
            reply = self._guarded(call, lambda: api.pipeline(
                self, call, parts[2:]))
            self._log(call, reply, "api", started)
        return reply

    def _guarded(self, call, serve):
        try:
            return serve()
        except errors.ApiError as exc:
            return _error_reply(exc)
        except Exception:  # Any bug must still answer in Zoho's shape.
            traceback.print_exc(file=sys.stderr)
            return _error_reply(errors.internal_error())

    def _log(self, call, reply, kind, started):
        entry = {"method": call.method, "path": call.path,
                 "query": _redact(call.query_string), "status": reply.status,
                 "dc": call.dc, "kind": kind,
                 "time": self.store.fmt(self.clock.now()),
                 "duration_ms": round((time.monotonic() - started) * 1000, 1)}
        if call.access is not None:
            entry["client_id"] = call.access.client.client_id
        if isinstance(reply.body, dict) and reply.status >= 400:
            entry["code"] = reply.body.get("code")
        entry.update(call.log_extra or {})
        headers = {h: call.header(h) for h in LOGGED_HEADERS
                   if call.header(h) is not None}
        if headers:
            entry["headers"] = headers
        if kind == "api" and call.body and self.config.log_bodies:
            entry["body"] = call.body[:self.config.log_bodies].decode(
                "utf-8", "replace")
        with self.lock:
            entry["n"] = len(self.calls) + self.calls_dropped
            self.calls.append(entry)
            excess = len(self.calls) - self.config.max_calls_kept
            if excess > 0:
                del self.calls[:excess]
                self.calls_dropped += excess

    def calls_since(self, since):
        """Logged calls numbered ``since`` and later."""
        with self.lock:
            start = max(0, since - self.calls_dropped)
            return self.calls[start:]


def _error_reply(exc):
    return Reply(exc.status, exc.body(), dict(exc.headers))


def _redact(query_string):
    if not query_string:
        return ""
    pairs = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    return urllib.parse.urlencode(
        [(k, "***" if k in SECRET_PARAMS else v) for k, v in pairs])


def _offset_of(text, data_dir):
    """The org's UTC offset: given, else from the data, else +05:30."""
    if text:
        return ztime.parse_offset(text)
    for name in ("contacts.json", "leads.json", "accounts.json",
                 "deals.json"):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096)
        marker = head.find('"Created_Time": "')
        if marker >= 0:
            found = ztime.detect_offset(head[marker + 17:marker + 42])
            if found is not None:
                return found
    return ztime.parse_offset("+05:30")
