"""The Notifications (Watch) API and delivery of its callbacks.

Channels subscribe to ``{Module}.{create|edit|delete|all}`` events. When a
request changes records, :meth:`Watch.notify` turns the changes into one
callback per (channel, module, operation) and queues it; a background thread
POSTs each callback as JSON to the channel's ``notify_url`` and records the
outcome. Channels past ``channel_expiry`` are dropped and deliver nothing.
"""
import collections
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from . import errors
from . import ztime
from .errors import error_item
from .messages import Reply

OPERATION_OF_EVENT = {"create": "insert", "edit": "update",
                      "delete": "delete"}
SUBSCRIBED = "Successfully subscribed for actions-watch of the given module"
UPDATED = "Successfully updated the subscribe details"
UNSUBSCRIBED = ("Successfully unsubscribed from actions-watch of the given "
                "module")
NOT_SUBSCRIBED = "Not subscribed for actions-watch of the given module"


class EntryError(Exception):
    """One element of a ``watch`` array failed validation."""

    def __init__(self, code, message, details):
        super().__init__(code)
        self.item = error_item(code, message, details)


class Channel:
    """One subscription."""

    def __init__(self, channel_id):
        self.channel_id = channel_id
        self.events = []
        self.notify_url = None
        self.token = None
        self.expiry = 0.0
        self.return_values = False
        self.related = True
        self.conditions = {}
        self.api_domain = ""
        self.version_text = "2"

    def operations(self, module):
        """The callback operations this channel wants for a module."""
        out = set()
        for event in self.events:
            name, _, action = event.partition(".")
            if name == module:
                if action == "all":
                    out.update(OPERATION_OF_EVENT.values())
                elif action in OPERATION_OF_EVENT:
                    out.add(OPERATION_OF_EVENT[action])
        return out

    def modules(self):
        """Modules named in the events, in order."""
        seen = []
        for event in self.events:
            name = event.partition(".")[0]
            if name not in seen:
                seen.append(name)
        return seen

    def resource_uri(self, module):
        """The resource_uri Zoho reports for a module."""
        return "%s/crm/v%s/%s" % (self.api_domain, self.version_text, module)


class Watch:
    """Channels plus the delivery queue and its worker thread."""

    def __init__(self, sim):
        self.sim = sim
        self.channels = {}
        self.deliveries = []
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._stop = False
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}))
        self._thread = threading.Thread(target=self._run, name="watch",
                                        daemon=True)
        self._thread.start()

    def reset(self):
        """Drop channels, queued callbacks and the delivery log."""
        self.channels.clear()
        with self._cond:
            self._queue.clear()
            self.deliveries = []

    def stop(self):
        """Stop the worker thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    # Subscriptions --------------------------------------------------------

    def live(self, now):
        """Channels not yet expired (expired ones are forgotten)."""
        for cid in [c for c, ch in self.channels.items() if ch.expiry <= now]:
            del self.channels[cid]
        return list(self.channels.values())

    def _entries(self, call):
        body = call.json()
        entries = body.get("watch")
        if not isinstance(entries, list) or not entries:
            raise errors.mandatory_missing("watch")
        return entries

    def subscribe(self, call, replace=False):
        """POST (subscribe) or PUT (replace) /actions/watch."""
        now = self.sim.clock.now()
        results = []
        self.live(now)
        for i, entry in enumerate(self._entries(call)):
            try:
                results.append(self._subscribe_one(call, entry, i, now,
                                                   replace))
            except EntryError as exc:
                results.append(exc.item)
        ok = 200 if replace else 201
        return Reply(_status(self.sim, results, ok), {"watch": results})

    def _subscribe_one(self, call, entry, i, now, replace):
        if not isinstance(entry, dict):
            raise EntryError("INVALID_DATA", "invalid data",
                             {"json_path": "$.watch[%d]" % i})
        cid = _channel_id(entry, i)
        existing = self.channels.get(cid)
        if replace and existing is None:
            raise EntryError("NOT_SUBSCRIBED", NOT_SUBSCRIBED,
                             {"channel_id": cid})
        events = self._events(entry, i, required=True)
        url = entry.get("notify_url")
        if not isinstance(url, str) or not url.startswith(("http://",
                                                           "https://")):
            raise _missing_or_invalid("notify_url", url, i)
        channel = Channel(cid)
        if existing is not None and not replace:
            channel = existing
            events = channel.events + [e for e in events
                                       if e not in channel.events]
        channel.events = events
        channel.notify_url = url
        self._apply_options(channel, entry, i, now, call)
        self.channels[cid] = channel
        message = UPDATED if replace else SUBSCRIBED
        return _ok(channel, message, self.sim)

    def _events(self, entry, i, required):
        events = entry.get("events")
        if events is None and not required:
            return None
        if not isinstance(events, list) or not events:
            raise _missing_or_invalid("events", events, i)
        for event in events:
            name, _, action = str(event).partition(".")
            if self.sim.store.module(name) is None or action not in (
                    "create", "edit", "delete", "all"):
                raise EntryError("INVALID_DATA", "invalid data", {
                    "api_name": "events",
                    "json_path": "$.watch[%d].events" % i})
        return [_canonical_event(self.sim, e) for e in events]

    def _apply_options(self, channel, entry, i, now, call):
        token = entry.get("token", channel.token)
        if token is not None and (not isinstance(token, str) or
                                  len(token) > 50):
            raise EntryError("INVALID_DATA", "invalid data", {
                "api_name": "token", "json_path": "$.watch[%d].token" % i,
                "maximum_length": 50})
        channel.token = token
        channel.expiry = self._expiry(entry, i, now, channel)
        for key, attr in (("return_affected_field_values", "return_values"),
                          ("notify_on_related_action", "related")):
            if key in entry:
                setattr(channel, attr, bool(entry[key]))
        if "notification_condition" in entry:
            channel.conditions = _conditions(entry["notification_condition"])
        channel.api_domain = self.sim.api_domain(call.dc)
        channel.version_text = call.version_text

    def _expiry(self, entry, i, now, channel):
        default = now + self.sim.config.watch_default_expiry
        if "channel_expiry" not in entry:
            return channel.expiry if channel.expiry > now else default
        raw = entry["channel_expiry"]
        value = ztime.parse_dt(raw) if isinstance(raw, str) else None
        if value is None or value <= now:
            raise EntryError("INVALID_DATA", "invalid data", {
                "api_name": "channel_expiry",
                "json_path": "$.watch[%d].channel_expiry" % i})
        if value > now + self.sim.config.watch_max_expiry:
            return default
        return value

    def patch(self, call):
        """PATCH /actions/watch: change given keys or drop events."""
        now = self.sim.clock.now()
        self.live(now)
        results = []
        for i, entry in enumerate(self._entries(call)):
            try:
                results.append(self._patch_one(call, entry, i, now))
            except EntryError as exc:
                results.append(exc.item)
        return Reply(_status(self.sim, results, 200), {"watch": results})

    def _patch_one(self, call, entry, i, now):
        if not isinstance(entry, dict):
            raise EntryError("INVALID_DATA", "invalid data",
                             {"json_path": "$.watch[%d]" % i})
        cid = _channel_id(entry, i)
        channel = self.channels.get(cid)
        if channel is None:
            raise EntryError("NOT_SUBSCRIBED", NOT_SUBSCRIBED,
                             {"channel_id": cid})
        events = self._events(entry, i, required=False)
        if entry.get("_delete_events"):
            channel.events = [e for e in channel.events
                              if e not in (events or [])]
            if not channel.events:
                del self.channels[cid]
            return _ok(channel, UNSUBSCRIBED, self.sim)
        if events is not None:
            channel.events = events
        if "notify_url" in entry:
            url = entry["notify_url"]
            if not isinstance(url, str) or not url.startswith(
                    ("http://", "https://")):
                raise _missing_or_invalid("notify_url", url, i)
            channel.notify_url = url
        self._apply_options(channel, entry, i, now, call)
        return _ok(channel, UPDATED, self.sim)

    def list(self, call):
        """GET /actions/watch."""
        now = self.sim.clock.now()
        wanted_id = call.param("channel_id")
        wanted_module = call.param("module")
        rows = []
        for channel in sorted(self.live(now), key=lambda c: c.channel_id):
            if wanted_id and channel.channel_id != wanted_id:
                continue
            for module in channel.modules():
                if wanted_module and module.lower() != wanted_module.lower():
                    continue
                rows.append(_describe(channel, module, self.sim))
        per_page = _int(call.param("per_page"), 200)
        page = _int(call.param("page"), 1)
        chosen = rows[(page - 1) * per_page:page * per_page]
        if not chosen:
            return Reply(204)
        return Reply(200, {"watch": chosen, "info": {
            "per_page": per_page, "count": len(chosen), "page": page,
            "more_records": page * per_page < len(rows)}})

    def delete(self, call):
        """DELETE /actions/watch?channel_ids=1,2."""
        raw = call.param("channel_ids") or call.param("channel_id")
        if not raw:
            raise errors.required_param("channel_ids")
        self.live(self.sim.clock.now())
        results = []
        for cid in [c.strip() for c in raw.split(",") if c.strip()]:
            channel = self.channels.pop(cid, None)
            if channel is None:
                results.append(error_item("NOT_SUBSCRIBED", NOT_SUBSCRIBED,
                                          {"channel_id": cid}))
            else:
                results.append(_ok(channel, UNSUBSCRIBED, self.sim))
        return Reply(_status(self.sim, results, 200), {"watch": results})

    # Delivery ---------------------------------------------------------

    def notify(self, changes):
        """Queue callbacks for a request's changes (lock held)."""
        if not changes or not self.channels:
            return
        now = self.sim.clock.now()
        groups = collections.OrderedDict()
        for channel in self.live(now):
            for change in changes:
                if change.operation not in channel.operations(change.module):
                    continue
                if not _condition_met(channel, change):
                    continue
                key = (channel.channel_id, change.module, change.operation)
                if key not in groups:
                    groups[key] = (channel, [])
                groups[key][1].append(change)
        for (cid, module, operation), (channel, items) in groups.items():
            self._enqueue(_payload(channel, module, operation, items, now),
                          channel.notify_url)

    def _enqueue(self, payload, url):
        with self._cond:
            self._queue.append((payload, url, time.monotonic()))
            self._cond.notify_all()

    def _run(self):
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                payload, url, queued = self._queue.popleft()
                self._busy += 1
            try:
                self._deliver(self._merge(payload, url, queued), url)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _merge(self, payload, url, queued):
        """Within watch_batch_ms, fold later callbacks of the same channel,
        module and operation into this one."""
        window = self.sim.config.watch_batch_ms / 1000.0
        if window <= 0:
            return payload
        delay = queued + window - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        key = (payload["channel_id"], payload["module"],
               payload["operation"])
        with self._cond:
            keep = collections.deque()
            for other, other_url, other_queued in self._queue:
                okey = (other["channel_id"], other["module"],
                        other["operation"])
                if okey == key and other_url == url:
                    _fold(payload, other)
                else:
                    keep.append((other, other_url, other_queued))
            self._queue = keep
        return payload

    def _deliver(self, payload, url):
        record = {"channel_id": payload["channel_id"], "url": url,
                  "module": payload["module"],
                  "operation": payload["operation"],
                  "ids": list(payload["ids"]), "status": None,
                  "error": None, "body": payload,
                  "time": self.sim.store.fmt(self.sim.clock.now())}
        if self.sim.faults.take("watch_fail", "watch") is not None:
            record["error"] = "dropped by the watch_fail fault"
        else:
            record["status"], record["error"] = self._post(payload, url)
        with self._cond:
            record["n"] = len(self.deliveries)
            self.deliveries.append(record)

    def _post(self, payload, url):
        data = json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(request,
                                   timeout=self.sim.config.watch_timeout) \
                    as answer:
                answer.read()
                return answer.status, None
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code, None
        except (OSError, ValueError) as exc:
            return None, str(exc)

    def drain(self, timeout):
        """Wait until every queued callback was attempted; True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def deliveries_since(self, since):
        """Delivery records numbered ``since`` and later."""
        with self._cond:
            return self.deliveries[since:]


def _status(sim, results, ok):
    failed = sum(1 for r in results if r.get("status") != "success")
    if not failed:
        return ok
    return sim.config.all_failed_status if failed == len(results) else 207


def _int(raw, default):
    try:
        return max(1, int(raw)) if raw else default
    except ValueError:
        return default


def _channel_id(entry, i):
    raw = entry.get("channel_id")
    if isinstance(raw, bool) or raw is None or not str(raw).isdigit():
        raise _missing_or_invalid("channel_id", raw, i)
    return str(raw)


def _missing_or_invalid(name, value, i):
    path = "$.watch[%d].%s" % (i, name)
    if value is None:
        return EntryError("MANDATORY_NOT_FOUND", "required field not found",
                          {"api_name": name, "json_path": path})
    return EntryError("INVALID_DATA", "invalid data",
                      {"api_name": name, "json_path": path})


def _canonical_event(sim, event):
    name, _, action = str(event).partition(".")
    return "%s.%s" % (sim.store.module(name).name, action)


def _conditions(spec):
    """{module: set of field names} from notification_condition."""
    out = {}
    for item in spec if isinstance(spec, list) else []:
        if not isinstance(item, dict):
            continue
        module = (item.get("module") or {}).get("api_name")
        group = (item.get("field_selection") or {}).get("group") or []
        names = {(g.get("field") or {}).get("api_name") for g in group
                 if isinstance(g, dict)}
        if module and names:
            out[module] = {n for n in names if n}
    return out


def _condition_met(channel, change):
    wanted = channel.conditions.get(change.module)
    if not wanted or change.operation != "update":
        return True
    return bool(wanted.intersection(change.fields))


def _ok(channel, message, sim):
    events = [{"channel_expiry": sim.store.fmt(channel.expiry),
               "resource_uri": channel.resource_uri(m),
               "resource_id": sim.store.module(m).id,
               "resource_name": m, "channel_id": channel.channel_id}
              for m in channel.modules()]
    return {"code": "SUCCESS", "details": {"events": events},
            "message": message, "status": "success"}


def _describe(channel, module, sim):
    actions = [e.partition(".")[2] for e in channel.events
               if e.partition(".")[0] == module]
    return {"notify_on_related_action": channel.related,
            "channel_expiry": sim.store.fmt(channel.expiry),
            "resource_uri": channel.resource_uri(module),
            "resource_id": sim.store.module(module).id,
            "resource_name": module, "channel_id": channel.channel_id,
            "events": actions, "notify_url": channel.notify_url,
            "token": channel.token,
            "return_affected_field_values": channel.return_values}


def _payload(channel, module, operation, changes, now):
    ids, fields, values = [], [], []
    for change in changes:
        if change.id not in ids:
            ids.append(change.id)
        if operation == "update":
            fields.append({change.id: list(change.fields)})
            if channel.return_values:
                values.append({"record_id": change.id,
                               "values": dict(change.values)})
    query = urllib.parse.urlsplit(channel.notify_url).query
    payload = {"server_time": int(now * 1000),
               "query_params": dict(urllib.parse.parse_qsl(
                   query, keep_blank_values=True)),
               "module": module, "resource_uri": channel.resource_uri(module),
               "ids": ids, "operation": operation,
               "channel_id": channel.channel_id, "token": channel.token}
    if operation == "update":
        payload["affected_fields"] = fields
        if channel.return_values:
            payload["affected_values"] = values
    return payload


def _fold(payload, other):
    for rid in other["ids"]:
        if rid not in payload["ids"]:
            payload["ids"].append(rid)
    for key in ("affected_fields", "affected_values"):
        if key in other:
            payload.setdefault(key, []).extend(other[key])
    payload["server_time"] = other["server_time"]
