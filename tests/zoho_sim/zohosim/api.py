"""Routing and the request pipeline of the REST API host.

A call to ``/<dc>/api/crm/v<N>/...`` goes through: injected faults, the
Authorization header, routing (404/400 for bad paths, modules or verbs),
scopes, credits and concurrency, an optional injected delay (holding the
concurrency slot), and finally the handler. Record changes made by the
handler are passed to the watch dispatcher before the lock is released.
"""
import re
import time

from . import coql
from . import convert
from . import errors
from . import records_api as rec
from .config import API_VERSIONS

VERSION_RE = re.compile(r"^v(\d+(?:\.\d+)?)$")
ID_RE = re.compile(r"^[0-9]{1,19}$")
KEYWORDS = {"upsert", "search", "deleted", "actions"}


class Route:
    """What serves a call: handler, scopes, credits, heavy or not."""

    def __init__(self, handler, needs, cost=None, heavy=False):
        self.handler = handler
        self.needs = needs
        self.cost = cost
        self.heavy = heavy

    def credits(self, sim, call):
        """Credits this call costs."""
        if callable(self.cost):
            return self.cost(sim, call)
        return sim.config.cost_default if self.cost is None else self.cost

    def is_heavy(self, call):
        """True if the call counts against the heavy sub-limit."""
        return self.heavy(call) if callable(self.heavy) else self.heavy


def parse_version(call, parts):
    """Check ``crm/v<N>`` at the start of ``parts``; set call.version."""
    if len(parts) < 2 or parts[0] != "crm":
        raise errors.invalid_url()
    m = VERSION_RE.match(parts[1])
    if not m or m.group(1) not in API_VERSIONS:
        raise errors.invalid_url()
    call.version_text = m.group(1)
    call.version = float(m.group(1))
    call.segments = [p for p in parts[2:] if p]


def _pick(call, table):
    if call.method not in table:
        raise errors.invalid_method()
    return table[call.method]


def _module_scope(module, op):
    return ("ZohoCRM", "modules", op, module.name.lower())


def resolve(sim, call):
    """Return the Route for a call or raise the error Zoho gives."""
    seg = call.segments
    if not seg:
        raise errors.invalid_url()
    fixed = _fixed_route(call, seg)
    if fixed is not None:
        return fixed
    shape = _shape(seg)
    if shape is None:
        raise errors.invalid_url()
    module = sim.store.module(seg[0])
    if module is None:
        raise errors.invalid_module(seg[0])
    return _module_route(call, module, shape, seg)


def _fixed_route(call, seg):
    """Routes that are not under a module name."""
    if seg == ["coql"]:
        return _pick(call, {"POST": Route(coql.handle, [
            ("ZohoCRM", "coql", "READ", None)], cost=coql.cost)})
    if seg == ["actions", "watch"]:
        needs = {"GET": "READ", "POST": "CREATE", "PUT": "UPDATE",
                 "PATCH": "UPDATE", "DELETE": "DELETE"}
        if call.method not in needs:
            raise errors.invalid_method()
        scope = [("ZohoCRM", "notifications", needs[call.method], None)]
        handler = {"GET": lambda s, c: s.watch.list(c),
                   "POST": lambda s, c: s.watch.subscribe(c),
                   "PUT": lambda s, c: s.watch.subscribe(c, replace=True),
                   "PATCH": lambda s, c: s.watch.patch(c),
                   "DELETE": lambda s, c: s.watch.delete(c)}[call.method]
        return Route(handler, scope)
    if seg == ["settings", "fields"] or seg == ["settings", "modules"]:
        handler = rec.settings_fields if seg[1] == "fields" else \
            rec.settings_modules
        return _pick(call, {"GET": Route(handler, [
            ("ZohoCRM", "settings", "READ", seg[1])])})
    if seg == ["users"]:
        return _pick(call, {"GET": Route(rec.list_users, [
            ("ZohoCRM", "users", "READ", None)])})
    return None


def _shape(seg):
    """Name the shape of a module path, or None if it has none."""
    rest = seg[1:]
    if not rest:
        return "module"
    if rest == ["upsert"] or rest == ["search"] or rest == ["deleted"]:
        return rest[0]
    if rest == ["actions", "count"]:
        return "count"
    if ID_RE.match(rest[0]) and len(rest) == 1:
        return "record"
    if ID_RE.match(rest[0]) and rest[1:] == ["actions", "convert"]:
        return "convert"
    return None


def _module_route(call, module, shape, seg):
    if shape == "module":
        return _collection_route(call, module)
    if shape == "record":
        return _record_route(call, module, seg[1])
    if shape == "upsert":
        route = _write(lambda s, c: rec.upsert_records(s, c, module), module,
                       "CREATE")
        route.needs.append(_module_scope(module, "UPDATE"))
        return _pick(call, {"POST": route})
    if shape == "convert":
        if module.name != "Leads":
            raise errors.invalid_url()
        rid = seg[1]
        return _pick(call, {"POST": Route(
            lambda s, c: convert.convert_call(s, c, rid),
            [_module_scope(module, "CREATE")],
            cost=lambda s, c: s.config.cost_convert, heavy=True)})
    handler = {"search": rec.search_records, "count": rec.count_records,
               "deleted": rec.deleted_records}[shape]
    return _pick(call, {"GET": Route(lambda s, c: handler(s, c, module),
                                     [_module_scope(module, "READ")])})


def _collection_route(call, module):
    """GET, POST, PUT and DELETE on /{module}."""
    return _pick(call, {
        "GET": Route(lambda s, c: rec.list_records(s, c, module),
                     [_module_scope(module, "READ")]),
        "POST": _write(lambda s, c: rec.insert_records(s, c, module),
                       module, "CREATE"),
        "PUT": _write(lambda s, c: rec.update_records(s, c, module),
                      module, "UPDATE"),
        "DELETE": Route(lambda s, c: rec.delete_records(s, c, module),
                        [_module_scope(module, "DELETE")])})


def _record_route(call, module, rid):
    """GET, PUT and DELETE on /{module}/{id}."""
    return _pick(call, {
        "GET": Route(lambda s, c: rec.get_record(s, c, module, rid),
                     [_module_scope(module, "READ")]),
        "PUT": _write(lambda s, c: rec.update_records(s, c, module, rid),
                      module, "UPDATE"),
        "DELETE": Route(lambda s, c: rec.delete_records(s, c, module, rid),
                        [_module_scope(module, "DELETE")])})


def _write(handler, module, op):
    return Route(handler, [_module_scope(module, op)], cost=rec.write_cost,
                 heavy=rec.is_heavy)


def pipeline(sim, call, parts):
    """Serve one REST call; return a Reply. Raises ApiError."""
    inject_faults(sim, "api")
    with sim.lock:
        now = sim.clock.now()
        call.access = sim.auth.authenticate(call.dc, call.header(
            "Authorization"), now)
        parse_version(call, parts)
        route = resolve(sim, call)
        for needs in route.needs:
            sim.auth.check_scope(call.access, needs)
        client = call.access.client
        org = sim.limits.org(client.org, client.edition)
        ticket = sim.limits.admit(org, client.client_id,
                                  route.credits(sim, call),
                                  route.is_heavy(call), now)
    try:
        inject_delay(sim, "api")
        with sim.lock:
            try:
                reply = route.handler(sim, call)
            finally:
                sim.flush_changes()
            _credit_header(sim, org, reply)
            return reply
    finally:
        with sim.lock:
            sim.limits.release(ticket)


def inject_faults(sim, target):
    """Answer with an injected 500 or 429 when such a fault is due."""
    if sim.faults.take("http_500", target) is not None:
        raise errors.internal_error()
    if sim.faults.take("http_429", target) is not None:
        raise sim.limits.too_many("injected", 0)


def inject_delay(sim, target):
    """Sleep (without the lock) when a slow-response fault is due."""
    rule = sim.faults.take("slow", target)
    if rule is not None:
        time.sleep(rule.get("ms", 0) / 1000.0)


def _credit_header(sim, org, reply):
    if not sim.config.credits_header:
        return
    budget = sim.limits.budget(org)
    left = sim.limits.remaining(org, sim.clock.now())
    if budget and left <= budget / 2:
        reply.headers["X-API-CREDITS-REMAINING"] = str(left)
