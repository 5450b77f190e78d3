"""The test-only control API under ``/_sim/``.

It needs no token and costs no credits. Bodies are JSON objects; answers are
JSON, with ``{"error": "..."}`` and HTTP 400/404 on misuse. README.md lists
every route. Handlers take the simulator's lock themselves, except where
they wait (draining watch deliveries), which must not hold it.
"""
import json

from . import config as cfg
from . import fields as fieldmeta
from . import ztime
from .messages import Reply
from .store import QuerySpec


SYSTEM_KEYS = ("id", "Created_Time", "Modified_Time", "Created_By",
               "Modified_By")


class ControlError(Exception):
    """Misuse of the control API."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def handle(sim, call, parts):
    """Serve ``/_sim/<parts>``."""
    parts = [p for p in parts if p]
    try:
        body = _body(call)
        return _route(sim, call, parts, body)
    except (ControlError, ValueError, KeyError, TypeError) as exc:
        status = getattr(exc, "status", 400)
        return Reply(status, {"error": str(exc)})


def _body(call):
    if not call.body:
        return {}
    try:
        body = json.loads(call.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def _route(sim, call, parts, body):
    name = parts[0] if parts else ""
    table = {
        "health": _health, "state": _state, "clock": _clock,
        "config": _config, "reset": _reset, "clients": _clients,
        "tokens": _tokens, "grant": _grant, "faults": _faults,
        "calls": _calls, "counters": _counters, "limits": _limits,
        "progress": _progress, "records": _records, "fields": _fields,
        "watch": _watch, "deliveries": _deliveries,
        "shutdown": _shutdown,
    }
    handler = table.get(name)
    if handler is None:
        raise ControlError("no such control route: /_sim/%s" % name, 404)
    return handler(sim, call, parts[1:], body)


def _need(call, *methods):
    if call.method not in methods:
        raise ControlError("use %s here" % " or ".join(methods), 405)


def _ok(body=None):
    return Reply(200, body if body is not None else {"ok": True})


# Simple state ----------------------------------------------------------


def _health(sim, call, rest, body):
    return _ok({"status": "ok"})


def _state(sim, call, rest, body):
    with sim.lock:
        return _ok({
            "clock": sim.store.fmt(sim.clock.now()),
            "epoch": sim.clock.now(), "frozen": sim.clock.frozen,
            "data_dir": sim.data_dir, "base_url": sim.base_url,
            "modules": {m.name: len(m) for m in sim.store.modules.values()},
            "progress": sim.progress.describe(),
            "channels": len(sim.watch.channels),
            "calls": len(sim.calls) + sim.calls_dropped})


def _clock(sim, call, rest, body):
    if call.method == "POST":
        with sim.lock:
            if "set" in body:
                sim.clock.set(ztime.parse_loose(body["set"]))
            if "advance" in body:
                sim.clock.advance(float(body["advance"]))
            if "freeze" in body:
                sim.clock.freeze(bool(body["freeze"]))
    now = sim.clock.now()
    return _ok({"now": sim.store.fmt(now), "epoch": now,
                "frozen": sim.clock.frozen})


def _config(sim, call, rest, body):
    if call.method == "POST":
        with sim.lock:
            sim.config.update(body)
    return _ok(dict(sim.config.values))


def _reset(sim, call, rest, body):
    _need(call, "POST")
    sim.reset(body.get("data"), bool(body.get("keep_auth")))
    return _state(sim, call, rest, body)


# OAuth -----------------------------------------------------------------


def _clients(sim, call, rest, body):
    with sim.lock:
        if call.method == "POST":
            specs = body.get("clients", [body] if "client_id" in body else [])
            sim.auth.seed(specs)
            sim.client_specs = list(sim.client_specs) + list(specs)
        clients = [c.describe() for c in sim.auth.clients.values()]
        for item in clients:
            item["refresh_tokens"] = [
                r.token for r in sim.auth.refresh_tokens.values()
                if r.client.client_id == item["client_id"]]
            item["accounts_server"] = sim.accounts_url(item["dc"])
            item["api_domain"] = sim.api_domain(item["dc"])
        return _ok({"clients": clients})


def _tokens(sim, call, rest, body):
    with sim.lock:
        return _ok({"refresh_tokens": sim.auth.describe_tokens(
            sim.clock.now()), "access_tokens": len(sim.auth.access_tokens)})


def _grant(sim, call, rest, body):
    _need(call, "POST")
    with sim.lock:
        client = sim.auth.clients.get(body.get("client_id", ""))
        if client is None:
            raise ControlError("unknown client_id", 404)
        offline = body.get("access_type", "offline") == "offline"
        code = sim.auth.mint_code(client, body.get("scope"), offline,
                                  body.get("redirect_uri"), sim.clock.now(),
                                  limited=bool(body.get("limited", False)))
        if code is None:
            raise ControlError("access_denied: too many codes", 429)
        return _ok({"code": code.code, "expires_in": sim.config.code_ttl,
                    "location": client.dc,
                    "accounts-server": sim.accounts_url(client.dc)})


# Faults, calls, counters, limits ---------------------------------------


def _faults(sim, call, rest, body):
    invalidated = None
    if call.method == "DELETE" or body.get("clear"):
        sim.faults.clear()
    elif call.method == "POST":
        if body.get("invalidate_tokens"):
            with sim.lock:
                invalidated = sim.auth.invalidate_all()
        sim.faults.set(body)
    answer = sim.faults.describe()
    if invalidated is not None:
        answer["invalidated"] = invalidated
    return _ok(answer)


def _calls(sim, call, rest, body):
    if call.method == "DELETE":
        with sim.lock:
            sim.calls_dropped += len(sim.calls)
            sim.calls = []
        return _ok()
    since = int(call.param("since", "0") or 0)
    calls = sim.calls_since(since)
    kind = call.param("kind")
    if kind:
        calls = [c for c in calls if c["kind"] == kind]
    with sim.lock:
        following = len(sim.calls) + sim.calls_dropped
    return _ok({"calls": calls, "next": following})


def _counters(sim, call, rest, body):
    with sim.lock:
        by_status = {}
        by_kind = {}
        for entry in sim.calls:
            key = str(entry["status"])
            by_status[key] = by_status.get(key, 0) + 1
            by_kind[entry["kind"]] = by_kind.get(entry["kind"], 0) + 1
        out = dict(sim.auth.counters)
        out.update({"calls": by_kind, "status": by_status,
                    "faults_fired": sim.faults.describe()["fired"],
                    "deliveries": len(sim.watch.deliveries),
                    "limits": sim.limits.describe(sim.clock.now())})
        return _ok(out)


def _limits(sim, call, rest, body):
    with sim.lock:
        if call.method == "POST":
            org = sim.limits.org(body.get("org", "default"))
            if "edition" in body:
                org.edition = cfg.edition_name(body["edition"])
            for key in ("credits", "concurrency", "heavy_concurrency"):
                if key in body:
                    value = body[key]
                    setattr(org, key, None if value is None else int(value))
            if body.get("reset_usage"):
                org.window.clear()
                org.used = 0
        return _ok(sim.limits.describe(sim.clock.now()))


# Progress ----------------------------------------------------------------


def _progress(sim, call, rest, body):
    with sim.lock:
        if call.method == "POST":
            return _ok(sim.progress.apply(sim, body))
        return _ok(sim.progress.describe())


# Records and fields ------------------------------------------------------


def _module(sim, rest):
    if not rest:
        raise ControlError("name a module: /_sim/records/{module}", 404)
    module = sim.store.module(rest[0])
    if module is None:
        raise ControlError("unknown module %r" % rest[0], 404)
    return module


def _records(sim, call, rest, body):
    with sim.lock:
        module = _module(sim, rest)
        if len(rest) >= 2:
            return _one_record(sim, call, module, rest[1])
        if call.method == "POST":
            return _ok(_write_records(sim, module, body))
        return _ok(_find_records(sim, call, module))


def _one_record(sim, call, module, rid):
    if rid not in module.records:
        raise ControlError("no record %s in %s" % (rid, module.name), 404)
    if call.method == "DELETE":
        sim.store.delete(module, rid, sim.clock.now(), sim.store.user())
        sim.store.take_changes()
        return _ok()
    meta = module.meta[int(rid)]
    return _ok({"data": module.records[rid], "meta": {
        "api_created": meta.api_created, "converted": meta.converted,
        "created": sim.store.fmt(meta.created),
        "modified": sim.store.fmt(meta.modified)}})


def _find_records(sim, call, module):
    filters = {k: v for k, v in call.query.items()
               if k not in ("limit", "api_created", "converted")}
    limit = int(call.param("limit", "100"))
    if filters:
        name, value = next(iter(filters.items()))
        ids = module.find(name, value)
        for other, wanted in list(filters.items())[1:]:
            ids = [i for i in ids if str(module.records[i].get(other))
                   .lower() == wanted.lower()]
    else:
        spec = QuerySpec("id", False, None, True, "both", None)
        view = sim.store.select(module, spec)
        ids = view.ids(0, len(view))
    if call.param("api_created") is not None:
        wanted = call.param("api_created").lower() == "true"
        ids = [i for i in ids if module.meta[int(i)].api_created == wanted]
    return {"count": len(ids),
            "data": [module.records[i] for i in ids[:limit]]}


def _write_records(sim, module, body):
    """Create or modify records without checks, auth or credits."""
    rows = list(body.get("data") or [])
    rows += _generated(body.get("generate"))
    user = sim.store.user()
    now = sim.clock.now()
    stamp = body.get("modified_time")
    stamp = ztime.parse_loose(stamp) if stamp else None
    created_at = body.get("created_time")
    created_at = ztime.parse_loose(created_at) if created_at else None
    fieldmeta.infer_fields(module.fields, rows)
    ids, made = [], 0
    for row in rows:
        rid, created = _write_row(sim, module, row, now, user, stamp,
                                  created_at, bool(body.get("api_created")))
        ids.append(rid)
        made += created
    if body.get("notify"):
        sim.flush_changes()
    else:
        sim.store.take_changes()
    return {"ids": ids, "created": made, "modified": len(ids) - made}


def _write_row(sim, module, row, now, user, stamp, created_at, api_created):
    """Create or modify one record; return (id, 1 if created else 0)."""
    values = {k: v for k, v in row.items() if k not in SYSTEM_KEYS}
    modified = stamp or _loose(row.get("Modified_Time"))
    rid = str(row["id"]) if row.get("id") is not None else None
    if rid is not None and rid in module.records:
        sim.store.modify(module, rid, values, now, user, modified)
        return rid, 0
    if rid is not None and not fieldmeta.ID_RE.match(rid):
        raise ControlError("ids must be up to 19 digits")
    rid = sim.store.create(module, values, now, user, api_created, rid,
                           created_at or _loose(row.get("Created_Time")),
                           modified)
    return rid, 1


def _generated(spec):
    if not spec:
        return []
    count = int(spec.get("count", 0))
    first = int(spec.get("start", 1))
    template = spec.get("template") or {"Last_Name": "Generated {n}"}
    rows = []
    for n in range(first, first + count):
        rows.append({k: v.replace("{n}", str(n)) if isinstance(v, str) else v
                     for k, v in template.items()})
    return rows


def _loose(text):
    return ztime.parse_loose(text) if isinstance(text, str) else None


def _fields(sim, call, rest, body):
    with sim.lock:
        module = _module(sim, rest)
        if call.method == "POST":
            for spec in body.get("fields", []):
                name = spec["api_name"]
                field = module.fields.get(name)
                if field is None:
                    field = fieldmeta.Field(name, spec.get("data_type",
                                                           "text"),
                                            custom=True)
                    module.fields[name] = field
                field.update(spec)
        return _ok({"fields": [f.describe(module.id, i) for i, f in
                               enumerate(module.fields.values())]})


# Watch ---------------------------------------------------------------


def _watch(sim, call, rest, body):
    if rest == ["drain"]:
        done = sim.watch.drain(float(body.get("timeout", 5)))
        return _ok({"drained": done})
    with sim.lock:
        channels = []
        for channel in sim.watch.live(sim.clock.now()):
            channels.append({"channel_id": channel.channel_id,
                             "events": channel.events,
                             "notify_url": channel.notify_url,
                             "token": channel.token,
                             "channel_expiry": sim.store.fmt(channel.expiry)})
        return _ok({"channels": channels})


def _deliveries(sim, call, rest, body):
    since = int(call.param("since", "0") or 0)
    items = sim.watch.deliveries_since(since)
    return _ok({"deliveries": items, "next": since + len(items)})


def _shutdown(sim, call, rest, body):
    _need(call, "POST")
    call.shutdown = True
    return _ok()
