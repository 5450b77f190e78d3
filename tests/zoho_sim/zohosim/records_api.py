"""REST handlers for records: list, get, insert, update, upsert, delete,
search, count, deleted records, and the settings/users listings.

Each handler takes the simulator and a :class:`~zohosim.messages.Call` and
returns a :class:`~zohosim.messages.Reply`, with the simulator's lock held.
"""
import math
import secrets

from . import criteria
from . import errors
from . import fields as fieldmeta
from . import store as storemod
from . import ztime
from .errors import ApiError, error_item
from .messages import Reply

SORTABLE = ("id", "Created_Time", "Modified_Time")


class RecordError(Exception):
    """One record of a batch failed; ``item`` is its error element."""

    def __init__(self, code, message, details):
        super().__init__(code)
        self.item = error_item(code, message, details)


# Parameters ------------------------------------------------------------


def int_param(call, name, default, low, high):
    """An integer query parameter within [low, high], else a 400."""
    raw = call.param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_param(name) from None
    if value < low or (high is not None and value > high):
        extra = {"maximum": high} if high is not None else {}
        raise errors.invalid_param(name, extra=extra)
    return value


def fields_param(sim, call, module, required):
    """Parse ``fields``; None means every field (v2 without ``fields``)."""
    raw = call.param("fields")
    if raw is None or not raw.strip():
        if required and call.version >= sim.config.fields_required_from:
            raise errors.required_param("fields")
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > sim.config.max_fields:
        raise errors.limit_exceeded(sim.config.max_fields,
                                    message="too many fields requested")
    return names


def time_header(call, name):
    """Parse a date-time header in Zoho's format; None when absent."""
    raw = call.header(name)
    if raw is None:
        return None
    value = ztime.parse_dt(raw.strip())
    if value is None:
        raise ApiError(400, "INVALID_DATA", "invalid data",
                       {"header_name": name,
                        "expected_data_type": "datetime"})
    return value


def converted_param(call):
    """``converted``: false (default), true or both."""
    value = (call.param("converted") or "false").lower()
    if value not in ("true", "false", "both"):
        raise errors.invalid_param("converted")
    return value


def project(module, record, names):
    """The record as returned: every field, or id plus ``names``."""
    if names is None:
        return dict(record)
    out = {"id": record["id"]}
    for name in names:
        if name in record:
            out[name] = record[name]
        elif name in module.fields:
            out[name] = None
    return out


# Reads -----------------------------------------------------------------


def list_records(sim, call, module):
    """GET /{module}: page or page_token paging, sorting, IMS."""
    names = fields_param(sim, call, module, required=True)
    per_page = int_param(call, "per_page", sim.config.max_per_page, 1,
                         sim.config.max_per_page)
    spec, offset = list_start(sim, call, module, per_page)
    view = sim.store.select(module, spec)
    ids = view.ids(offset, per_page)
    if not ids:
        return Reply(304 if spec.since is not None and not len(view)
                     else 204)
    data = [project(module, module.records[i], names) for i in ids]
    more = offset + len(ids) < len(view)
    info = list_info(sim, call, module, spec, offset, per_page, len(ids),
                     more)
    return Reply(200, {"data": data, "info": info})


def list_start(sim, call, module, per_page):
    """(spec, offset) from ``page`` or ``page_token``, never both."""
    token = call.param("page_token")
    if token is not None and call.param("page") is not None:
        raise ApiError(400, "AMBIGUITY_DURING_PROCESSING",
                       "page and page_token cannot be given together",
                       {"ambiguity_due_to": ["page", "page_token"]})
    if token is not None:
        return resolve_page_token(sim, call, module, token)
    page = int_param(call, "page", 1, 1, None)
    limit = sim.config.discrete_limit
    if page * per_page > limit:
        raise ApiError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                       "You can only get the first %d records without "
                       "using page_token param" % limit, {"limit": limit})
    return list_spec(sim, call), (page - 1) * per_page


def list_spec(sim, call):
    """The QuerySpec of a list call's parameters and headers."""
    sort_by = call.param("sort_by") or "id"
    if sort_by not in SORTABLE:
        raise errors.invalid_param("sort_by", extra={"supported": SORTABLE})
    order = (call.param("sort_order") or "asc").lower()
    if order not in ("asc", "desc"):
        raise errors.invalid_param("sort_order")
    ids = call.param("ids")
    if ids is not None:
        ids = tuple(i.strip() for i in ids.split(",") if i.strip())
        if len(ids) > 100:
            raise errors.limit_exceeded(100, message="too many ids")
    return storemod.QuerySpec(sort_by, order == "desc",
                              time_header(call, "If-Modified-Since"),
                              sim.config.ims_inclusive, converted_param(call),
                              ids)


def list_info(sim, call, module, spec, offset, per_page, count, more):
    """The ``info`` object of a list answer, with page tokens."""
    next_token = previous = expiry = None
    if more and offset + count < sim.config.page_token_cap:
        next_token, expiry = mint_page_token(sim, call, module, spec,
                                             offset + count)
    if offset > 0:
        previous, expiry_prev = mint_page_token(
            sim, call, module, spec, max(0, offset - per_page))
        expiry = expiry or expiry_prev
    return {"per_page": per_page, "count": count,
            "page": offset // per_page + 1,
            "sort_by": spec.sort_by,
            "sort_order": "desc" if spec.desc else "asc",
            "more_records": more, "next_page_token": next_token,
            "previous_page_token": previous, "page_token_expiry": expiry}


def mint_page_token(sim, call, module, spec, offset):
    """Store a continuation; return (token, expiry text)."""
    now = sim.clock.now()
    expires = now + sim.config.page_token_ttl
    tokens = sim.page_tokens
    if len(tokens) >= 20000:
        for key in [k for k, v in tokens.items() if v[4] <= now] or \
                list(tokens)[:5000]:
            tokens.pop(key, None)
    token = secrets.token_hex(24)
    owner = call.access.client.client_id if call.access else None
    tokens[token] = (module.name, spec, offset, owner, expires)
    return token, sim.store.fmt(expires)


def resolve_page_token(sim, call, module, token):
    """Return (spec, offset) of a page_token or raise a 400."""
    entry = sim.page_tokens.get(token)
    owner = call.access.client.client_id if call.access else None
    if entry is None or entry[0] != module.name or entry[3] != owner or \
            entry[4] <= sim.clock.now():
        raise errors.invalid_param("page_token",
                                   "the given page_token is invalid")
    if entry[2] >= sim.config.page_token_cap:
        raise errors.limit_exceeded(sim.config.page_token_cap,
                                    message="page_token limit reached")
    return entry[1], entry[2]


def get_record(sim, call, module, rid):
    """GET /{module}/{id}."""
    names = fields_param(sim, call, module, required=False)
    record = module.records.get(rid)
    if record is None:
        if sim.config.missing_id_status == 204:
            return Reply(204)
        raise ApiError(400, "INVALID_DATA", "the id given seems to be "
                       "invalid", {"resource_path_index": 1})
    since = time_header(call, "If-Modified-Since")
    if since is not None and not _modified_since(sim, module, rid, since):
        return Reply(304)
    return Reply(200, {"data": [project(module, record, names)]})


def _modified_since(sim, module, rid, since):
    modified = module.meta[int(rid)].modified
    if sim.config.ims_inclusive:
        return modified >= since
    return modified > since


# Writes ----------------------------------------------------------------


def body_records(sim, call, need_data=True):
    """The ``data`` array of a write body, checked for size and shape."""
    body = call.json()
    data = body.get("data")
    if need_data and (not isinstance(data, list) or not data):
        raise errors.mandatory_missing("data")
    if len(data) > sim.config.max_write_records:
        raise errors.limit_exceeded(sim.config.max_write_records, "data",
                                    "the number of records exceeds the "
                                    "limit")
    trigger = body.get("trigger")
    if trigger is not None and (not isinstance(trigger, list) or not all(
            isinstance(t, str) for t in trigger)):
        raise ApiError(400, "INVALID_DATA", "invalid data",
                       {"api_name": "trigger", "expected_data_type":
                        "jsonarray"})
    return data


def mandatory_names(sim, module):
    """Fields a new record must carry."""
    names = [f.api_name for f in module.fields.values() if f.mandatory]
    if module.name == "Leads" and sim.config.lead_company_mandatory:
        names.append("Company")
    if module.name == "Deals" and sim.config.deal_closing_date_mandatory:
        names.append("Closing_Date")
    return names


def clean_values(sim, module, raw, path, creating, self_id=None):
    """Check one input record; return the values to store.

    Unknown and read-only fields are ignored, as Zoho ignores them.
    Raises RecordError with Zoho's per-record error element.
    """
    if not isinstance(raw, dict):
        raise RecordError("INVALID_DATA", "invalid data",
                          {"json_path": path})
    clean = {}
    for name, value in raw.items():
        field = module.fields.get(name)
        if field is None or field.read_only:
            continue
        try:
            clean[name] = fieldmeta.check_value(field, value,
                                                sim.store.resolve)
        except fieldmeta.FieldError as exc:
            details = dict(exc.details)
            details["json_path"] = "%s.%s" % (path, name)
            raise RecordError(exc.code, exc.message, details) from None
    for name in mandatory_names(sim, module):
        if (creating or name in clean) and clean.get(name) in (None, ""):
            raise RecordError("MANDATORY_NOT_FOUND", "required field not "
                              "found", {"api_name": name,
                                        "json_path": "%s.%s" % (path, name)})
    check_unique(module, clean, path, self_id)
    return clean


def check_unique(module, clean, path, self_id):
    """DUPLICATE_DATA when a unique field's value is already taken."""
    for name, value in clean.items():
        field = module.fields[name]
        if not field.unique or value in (None, ""):
            continue
        for other in module.find(name, value):
            if other != self_id:
                raise RecordError("DUPLICATE_DATA", "duplicate data", {
                    "api_name": name, "json_path": "%s.%s" % (path, name),
                    "duplicate_record": duplicate_ref(module, other)})


def duplicate_ref(module, rid):
    """The ``duplicate_record`` object of a DUPLICATE_DATA error."""
    owner = module.records[rid].get("Owner") or {}
    return {"id": rid, "module": {"api_name": module.name,
                                  "id": module.id},
            "Owner": {"name": owner.get("name"), "id": owner.get("id"),
                      "email": owner.get("email")}}


def success(message, record, extra=None):
    """A per-record SUCCESS element with Zoho's metadata."""
    details = {"Modified_Time": record["Modified_Time"],
               "Modified_By": _short(record.get("Modified_By")),
               "Created_Time": record["Created_Time"], "id": record["id"],
               "Created_By": _short(record.get("Created_By"))}
    item = {"code": "SUCCESS", "details": details, "message": message,
            "status": "success"}
    if extra:
        item.update(extra)
    return item


def _short(user):
    user = user or {}
    return {"name": user.get("name"), "id": user.get("id")}


def batch_status(sim, results, ok_status):
    """201/200 all ok, 207 mixed, configurable (400) all failed."""
    failed = sum(1 for r in results if r.get("status") != "success")
    if not failed:
        return ok_status
    if failed == len(results):
        return sim.config.all_failed_status
    return 207


def acting_user(sim, call):
    """The CRM user a call acts as."""
    uid = call.access.client.user_id if call.access else None
    return sim.store.user(uid) or sim.store.user()


def insert_records(sim, call, module):
    """POST /{module}."""
    data = body_records(sim, call)
    now, user = sim.clock.now(), acting_user(sim, call)
    results = []
    for i, raw in enumerate(data):
        try:
            clean = clean_values(sim, module, raw, "$.data[%d]" % i, True)
        except RecordError as exc:
            results.append(exc.item)
            continue
        rid = sim.store.create(module, clean, now, user, api_created=True)
        results.append(success("record added", module.records[rid]))
    return Reply(batch_status(sim, results, 201), {"data": results})


def check_unmodified(sim, call, module, ids):
    """412 ALREADY_MODIFIED if a target changed after If-Unmodified-Since."""
    since = time_header(call, "If-Unmodified-Since")
    if since is None:
        return
    for rid in ids:
        if rid in module.records and \
                module.meta[int(rid)].modified > since:
            raise ApiError(412, "ALREADY_MODIFIED", "the record has been "
                           "modified since the specified time",
                           {"id": rid})


def update_records(sim, call, module, path_id=None):
    """PUT /{module} (ids in the records) or PUT /{module}/{id}."""
    data = body_records(sim, call)
    if path_id is not None:
        first = data[0] if isinstance(data[0], dict) else {}
        data = [dict(first, id=path_id)]
    ids = [str(r.get("id")) for r in data if isinstance(r, dict)]
    check_unmodified(sim, call, module, ids)
    now, user = sim.clock.now(), acting_user(sim, call)
    results = []
    for i, raw in enumerate(data):
        try:
            rid = target_id(module, raw, "$.data[%d]" % i)
            clean = clean_values(sim, module, raw, "$.data[%d]" % i, False,
                                 rid)
        except RecordError as exc:
            results.append(exc.item)
            continue
        sim.store.modify(module, rid, clean, now, user)
        results.append(success("record updated", module.records[rid]))
    return Reply(batch_status(sim, results, 200), {"data": results})


def target_id(module, raw, path):
    """The existing record an update names, or RecordError."""
    if not isinstance(raw, dict):
        raise RecordError("INVALID_DATA", "invalid data", {"json_path": path})
    rid = raw.get("id")
    if rid is None:
        raise RecordError("MANDATORY_NOT_FOUND", "required field not found",
                          {"api_name": "id", "json_path": path + ".id"})
    rid = str(rid)
    if rid not in module.records:
        raise RecordError("INVALID_DATA", "the id given seems to be invalid",
                          {"api_name": "id", "json_path": path + ".id"})
    return rid


def duplicate_fields(sim, call, module):
    """The fields an upsert matches on, in order."""
    given = call.json().get("duplicate_check_fields")
    if given is None:
        system = fieldmeta.SYSTEM_DUPLICATE_FIELD.get(module.name, "Name")
        names = [system] if system in module.fields else []
        names += [f.api_name for f in module.fields.values()
                  if f.unique and f.api_name not in names]
        return names
    if not isinstance(given, list) or not all(
            isinstance(n, str) and n in module.fields for n in given):
        raise ApiError(400, "INVALID_DATA", "invalid data",
                       {"api_name": "duplicate_check_fields"})
    return given


def upsert_records(sim, call, module):
    """POST /{module}/upsert."""
    data = body_records(sim, call)
    checks = duplicate_fields(sim, call, module)
    matches = [find_match(module, raw, checks) for raw in data]
    check_unmodified(sim, call, module, [m[0] for m in matches if m[0]])
    now, user = sim.clock.now(), acting_user(sim, call)
    results, inserted = [], False
    for i, raw in enumerate(data):
        path = "$.data[%d]" % i
        rid, field = find_match(module, raw, checks)
        try:
            clean = clean_values(sim, module, raw, path, rid is None, rid)
        except RecordError as exc:
            results.append(exc.item)
            continue
        if rid is None:
            rid = sim.store.create(module, clean, now, user, api_created=True)
            inserted = True
            results.append(success("record added", module.records[rid],
                                   {"action": "insert",
                                    "duplicate_field": None}))
        else:
            sim.store.modify(module, rid, clean, now, user)
            results.append(success("record updated", module.records[rid],
                                   {"action": "update",
                                    "duplicate_field": field}))
    ok_status = 201 if inserted else 200
    return Reply(batch_status(sim, results, ok_status), {"data": results})


def find_match(module, raw, checks):
    """(id, field) of the oldest record matching an upsert input."""
    if not isinstance(raw, dict):
        return None, None
    for name in checks:
        value = raw.get(name)
        if value in (None, "") or isinstance(value, list):
            continue
        found = module.find(name, value)
        if found:
            return found[0], name
    return None, None


def delete_records(sim, call, module, path_id=None):
    """DELETE /{module}?ids=... or DELETE /{module}/{id}."""
    if path_id is not None:
        ids = [path_id]
    else:
        raw = call.param("ids")
        if not raw:
            raise errors.required_param("ids")
        ids = [i.strip() for i in raw.split(",") if i.strip()]
        if len(ids) > sim.config.max_write_records:
            raise errors.limit_exceeded(sim.config.max_write_records, "ids")
    now, user = sim.clock.now(), acting_user(sim, call)
    results = []
    for rid in ids:
        if rid not in module.records:
            results.append(error_item("INVALID_DATA", "the id given seems "
                                      "to be invalid", {"id": rid}))
            continue
        sim.store.delete(module, rid, now, user)
        results.append({"code": "SUCCESS", "details": {"id": rid},
                        "message": "record deleted", "status": "success"})
    return Reply(batch_status(sim, results, 200), {"data": results})


def write_cost(sim, call):
    """Credits of a write: one per ``cost_write_per`` records."""
    try:
        count = len(call.json().get("data") or [])
    except ApiError:
        count = 1
    return max(1, math.ceil(count / max(1, sim.config.cost_write_per)))


def is_heavy(call):
    """Writes of more than ten records count against the sub-limit."""
    try:
        return len(call.json().get("data") or []) > 10
    except ApiError:
        return False


# Search ----------------------------------------------------------------


def search_predicate(sim, call, module):
    """(predicate, candidate ids or None) for a search or count call."""
    text = call.param("criteria")
    if text is not None:
        node = criteria.parse(text, module, call.version,
                              sim.config.search_max_criteria)
        hint = criteria.index_hint(node)
        candidates = None
        if hint is not None:
            found = set()
            for value in hint[1]:
                found.update(module.find(hint[0], value))
            candidates = sorted(found, key=int)
        return node, candidates
    for kind in ("email", "phone", "word"):
        value = call.param(kind)
        if value is not None:
            predicate = criteria.simple_search(module, kind, value)
            candidates = None
            if kind == "email":
                candidates = sorted({i for f in module.fields.values()
                                     if f.data_type == "email"
                                     for i in module.find(f.api_name, value)},
                                    key=int)
            return predicate, candidates
    raise errors.required_param("criteria")


def search_matches(sim, call, module):
    """Ids of every record a search selects, ascending."""
    predicate, candidates = search_predicate(sim, call, module)
    converted = converted_param(call)
    lag_edge = sim.clock.now() - sim.config.search_lag
    ids = candidates if candidates is not None else \
        [str(n) for n in module.by_id]
    out = []
    for rid in ids:
        if not sim.store.visible(module, rid, converted):
            continue
        if sim.config.search_lag and \
                module.meta[int(rid)].modified > lag_edge:
            continue
        if predicate(module.records[rid]):
            out.append(rid)
    return out


def search_records(sim, call, module):
    """GET /{module}/search."""
    names = fields_param(sim, call, module, required=False)
    per_page = int_param(call, "per_page", sim.config.max_per_page, 1,
                         sim.config.max_per_page)
    page = int_param(call, "page", 1, 1, None)
    cap = sim.config.search_cap
    if page * per_page > cap:
        raise ApiError(400, "LIMIT_REACHED", "maximum limit reached",
                       {"limit": cap})
    matches = search_matches(sim, call, module)
    offset = (page - 1) * per_page
    ids = matches[offset:offset + per_page]
    if not ids:
        return Reply(204)
    data = [project(module, module.records[i], names) for i in ids]
    info = {"per_page": per_page, "count": len(ids), "page": page,
            "more_records": offset + len(ids) < len(matches)}
    return Reply(200, {"data": data, "info": info})


def count_records(sim, call, module):
    """GET /{module}/actions/count."""
    if any(call.param(k) is not None
           for k in ("criteria", "email", "phone", "word")):
        return Reply(200, {"count": len(search_matches(sim, call, module))})
    spec = storemod.QuerySpec("id", False, None, True,
                              converted_param(call), None)
    return Reply(200, {"count": len(sim.store.select(module, spec))})


def deleted_records(sim, call, module):
    """GET /{module}/deleted."""
    kind = (call.param("type") or "all").lower()
    if kind not in ("all", "recycle", "permanent"):
        raise errors.invalid_param("type")
    per_page = int_param(call, "per_page", sim.config.max_per_page, 1,
                         sim.config.max_per_page)
    page = int_param(call, "page", 1, 1, None)
    since = time_header(call, "If-Modified-Since")
    rows = [d for d in sim.store.deleted if d["module"] == module.name
            and kind in ("all", d["type"])
            and (since is None or d["epoch"] >= since)]
    offset = (page - 1) * per_page
    chosen = rows[offset:offset + per_page]
    if not chosen:
        return Reply(304 if since is not None and not rows else 204)
    data = [{k: v for k, v in d.items() if k not in ("module", "epoch")}
            for d in chosen]
    info = {"per_page": per_page, "count": len(data), "page": page,
            "more_records": offset + len(data) < len(rows)}
    return Reply(200, {"data": data, "info": info})


# Metadata --------------------------------------------------------------


def settings_fields(sim, call):
    """GET /settings/fields?module=X."""
    name = call.param("module")
    if not name:
        raise errors.required_param("module")
    module = sim.store.module(name)
    if module is None:
        raise errors.invalid_module(name)
    out = []
    for i, field in enumerate(module.fields.values()):
        item = field.describe(module.id, i)
        if field.api_name in mandatory_names(sim, module):
            item["system_mandatory"] = True
        out.append(item)
    return Reply(200, {"fields": out})


def settings_modules(sim, call):
    """GET /settings/modules."""
    out = [{"api_name": m.name, "module_name": m.name, "id": m.id,
            "plural_label": m.name, "singular_label": m.name.rstrip("s"),
            "api_supported": True}
           for m in sim.store.modules.values()]
    return Reply(200, {"modules": out})


def list_users(sim, call):
    """GET /users."""
    users = [dict(u, status="active") for u in sim.store.users]
    if not users:
        return Reply(204)
    return Reply(200, {"users": users, "info": {
        "per_page": 200, "count": len(users), "page": 1,
        "more_records": False}})
