"""The organisation's records: modules, orderings, indexes and writes.

Each module keeps its records in a dict by id plus three sorted key lists (by
id, by Modified_Time and by Created_Time) that writes update in place, so a
list call on 100,000 records does not sort anything. Writes append a
:class:`Change` to ``pending``; the simulator hands those to the watch
dispatcher when the request ends. Callers hold the simulator's lock.
"""
import bisect
import collections
import json
import os

from . import fields as fieldmeta
from . import ztime

Change = collections.namedtuple(
    "Change", "module operation id fields values time")

MODULE_FILES = {"leads": "Leads", "contacts": "Contacts",
                "accounts": "Accounts", "deals": "Deals"}
NOT_MODULES = ("users", "referrals", "progress", "fields")
FIRST_ID = 4876000000100000000


class Meta:
    """Facts about a record that are not fields of it."""

    __slots__ = ("created", "modified", "api_created", "converted")

    def __init__(self, created, modified, api_created=False, converted=False):
        self.created = created
        self.modified = modified
        self.api_created = api_created
        self.converted = converted


class View:
    """A window on an ordered key list, read forwards or backwards."""

    def __init__(self, keys, start=0, end=None, desc=False, tuples=False):
        self.keys = keys
        self.start = start
        self.end = len(keys) if end is None else end
        self.desc = desc
        self.tuples = tuples

    def __len__(self):
        return max(0, self.end - self.start)

    def ids(self, offset, count):
        """Return up to ``count`` record ids (strings) from ``offset``."""
        total = len(self)
        first, last = offset, min(total, offset + count)
        out = []
        for i in range(first, last):
            pos = self.end - 1 - i if self.desc else self.start + i
            key = self.keys[pos]
            out.append(str(key[1] if self.tuples else key))
        return out


class Module:
    """One CRM module: records, per-record metadata, orderings, indexes."""

    def __init__(self, name, module_id, fields):
        self.name = name
        self.id = module_id
        self.fields = fields
        self.records = {}
        self.meta = {}
        self.by_id = []
        self.by_modified = []
        self.by_created = []
        self.indexes = {}
        self.version = 0
        self.converted_count = 0
        self.cache = collections.OrderedDict()

    def __len__(self):
        return len(self.records)

    def add(self, rid, record, meta):
        """Put a new record into every structure."""
        num = int(rid)
        self.records[rid] = record
        self.meta[num] = meta
        _insort(self.by_id, num)
        _insort(self.by_modified, (meta.modified, num))
        _insort(self.by_created, (meta.created, num))
        if meta.converted:
            self.converted_count += 1
        for name, index in self.indexes.items():
            _index_add(index, record.get(name), rid)
        self.version += 1

    def remove(self, rid):
        """Take a record out of every structure; return it."""
        num = int(rid)
        record = self.records.pop(rid)
        meta = self.meta.pop(num)
        _remove(self.by_id, num)
        _remove(self.by_modified, (meta.modified, num))
        _remove(self.by_created, (meta.created, num))
        if meta.converted:
            self.converted_count -= 1
        for name, index in self.indexes.items():
            _index_drop(index, record.get(name), rid)
        self.version += 1
        return record

    def set_value(self, rid, name, value):
        """Change one field, keeping any index on it current."""
        record = self.records[rid]
        index = self.indexes.get(name)
        if index is not None:
            _index_drop(index, record.get(name), rid)
            _index_add(index, value, rid)
        record[name] = value

    def touch(self, rid, epoch):
        """Move a record's Modified_Time to ``epoch`` in the ordering."""
        num = int(rid)
        meta = self.meta[num]
        _remove(self.by_modified, (meta.modified, num))
        meta.modified = epoch
        _insort(self.by_modified, (epoch, num))
        self.version += 1

    def mark_converted(self, rid):
        """Flag a lead as converted."""
        meta = self.meta[int(rid)]
        if not meta.converted:
            meta.converted = True
            self.converted_count += 1
            self.version += 1

    def find(self, name, value):
        """Return ids (ascending) whose field ``name`` equals ``value``,
        case-insensitively for text."""
        index = self.indexes.get(name)
        if index is None:
            index = {}
            for rid, record in self.records.items():
                _index_add(index, record.get(name), rid)
            self.indexes[name] = index
        found = index.get(_norm(value), ())
        return sorted(found, key=int)

    def ordering(self, sort_by):
        """Return (keys, tuples?) for id, Created_Time or Modified_Time."""
        if sort_by == "Modified_Time":
            return self.by_modified, True
        if sort_by == "Created_Time":
            return self.by_created, True
        return self.by_id, False


def _insort(keys, key):
    if not keys or keys[-1] < key:
        keys.append(key)
    else:
        bisect.insort(keys, key)


def _remove(keys, key):
    pos = bisect.bisect_left(keys, key)
    if pos < len(keys) and keys[pos] == key:
        del keys[pos]


def _norm(value):
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, dict):
        return value.get("id")
    if isinstance(value, list):
        return None
    return value


def _index_add(index, value, rid):
    key = _norm(value)
    if key is not None and key != "":
        index.setdefault(key, set()).add(rid)


def _index_drop(index, value, rid):
    key = _norm(value)
    ids = index.get(key)
    if ids is not None:
        ids.discard(rid)
        if not ids:
            del index[key]


class QuerySpec(collections.namedtuple(
        "QuerySpec", "sort_by desc since inclusive converted ids")):
    """What a list call selects: order, If-Modified-Since, converted, ids."""


class Store:
    """All modules of the organisation plus its users."""

    def __init__(self, offset_seconds):
        self.offset = offset_seconds
        self.modules = {}
        self.users = []
        self.deleted = []
        self.pending = []
        self.next_id = FIRST_ID
        self.extra_fields = {}

    # Loading ---------------------------------------------------------

    def load(self, data_dir, now):
        """Read a data folder; ``now`` stamps records without times."""
        self.users = _read_json(os.path.join(data_dir, "users.json"), [])
        extra = _read_json(os.path.join(data_dir, "fields.json"), {})
        names = dict(MODULE_FILES)
        for entry in sorted(os.listdir(data_dir)):
            stem, ext = os.path.splitext(entry)
            if ext == ".json" and stem not in NOT_MODULES:
                names.setdefault(stem, stem[:1].upper() + stem[1:])
        for position, (stem, name) in enumerate(sorted(names.items())):
            path = os.path.join(data_dir, stem + ".json")
            rows = _read_json(path, [])
            self._load_module(name, rows, position, extra.get(name, []), now)

    def _load_module(self, name, rows, position, extra, now):
        fields = fieldmeta.standard_fields(name)
        fieldmeta.infer_fields(fields, rows)
        for spec in extra:
            api_name = spec.get("api_name")
            if api_name:
                field = fields.setdefault(api_name, fieldmeta.Field(
                    api_name, spec.get("data_type", "text"), custom=True))
                field.update(spec)
        module = Module(name, str(4876000000000000100 + position), fields)
        self.modules[name] = module
        for row in rows:
            self._load_row(module, row, now)
        module.by_id.sort()
        module.by_modified.sort()
        module.by_created.sort()

    def _load_row(self, module, row, now):
        """Add a loaded record; the key lists are sorted once at the end."""
        rid = str(row.get("id") or self.new_id())
        if not fieldmeta.ID_RE.match(rid) or rid in module.records:
            raise ValueError("%s: bad or repeated id %r" % (module.name, rid))
        row["id"] = rid
        created = ztime.parse_dt(row.get("Created_Time")) or now
        modified = ztime.parse_dt(row.get("Modified_Time")) or created
        converted = bool(row.get("$converted") or row.get("Converted__s"))
        num = int(rid)
        module.records[rid] = row
        module.meta[num] = Meta(created, modified, False, converted)
        module.by_id.append(num)
        module.by_modified.append((modified, num))
        module.by_created.append((created, num))
        module.converted_count += converted
        if num >= self.next_id:
            self.next_id = num + 1

    # Lookups ---------------------------------------------------------

    def module(self, name):
        """Return a module by API name (any letter case) or None."""
        found = self.modules.get(name)
        if found is not None:
            return found
        lowered = (name or "").lower()
        for key, module in self.modules.items():
            if key.lower() == lowered:
                return module
        return None

    def new_id(self):
        """Return a fresh 19-digit record id."""
        self.next_id += 1000 + self.next_id % 7
        return str(self.next_id)

    def user(self, uid=None):
        """Return a user lookup {name, id, email}; the first by default."""
        for user in self.users:
            if uid is None or user.get("id") == uid:
                return dict(user)
        if uid is None:
            return {"name": "Simulator", "id": "4876000000000000001",
                    "email": "sim@org.example"}
        return None

    def resolve(self, target, ref):
        """Return the lookup object for a user or record id, or None."""
        if target == "users":
            return self.user(ref) if self.users else None
        module = self.module(target)
        if module is None or ref not in module.records:
            return None
        return {"name": display_name(module.name, module.records[ref]),
                "id": ref}

    def fmt(self, epoch):
        """Format POSIX seconds in the org's offset."""
        return ztime.format_dt(epoch, self.offset)

    # Writes ------------------------------------------------------------

    def create(self, module, values, now, user, api_created=False,
               rid=None, created=None, modified=None):
        """Insert a record built from checked ``values``; return its id."""
        rid = rid or self.new_id()
        created = _whole(now if created is None else created)
        modified = created if modified is None else _whole(modified)
        record = {"id": rid}
        record.update(values)
        record.setdefault("Owner", user)
        stamp = {"name": user.get("name"), "id": user.get("id"),
                 "email": user.get("email")}
        record["Created_By"] = dict(stamp)
        record["Modified_By"] = dict(stamp)
        record["Created_Time"] = self.fmt(created)
        record["Modified_Time"] = self.fmt(modified)
        if module.name in ("Leads", "Contacts"):
            record["Full_Name"] = full_name(record)
        module.add(rid, record, Meta(created, modified, api_created))
        self.pending.append(Change(module.name, "insert", rid,
                                   sorted(values), dict(values), now))
        return rid

    def modify(self, module, rid, values, now, user, modified=None):
        """Apply checked ``values`` to a record; return changed names.

        Modified_Time moves to ``modified`` (default: now) on every call,
        even when no value changed, as Zoho bumps it on every write.
        """
        record = module.records[rid]
        changed = [name for name, value in values.items()
                   if record.get(name) != value]
        for name in changed:
            module.set_value(rid, name, values[name])
        if module.name in ("Leads", "Contacts"):
            module.set_value(rid, "Full_Name", full_name(record))
        stamp = _whole(now if modified is None else modified)
        record["Modified_Time"] = self.fmt(stamp)
        record["Modified_By"] = {"name": user.get("name"),
                                 "id": user.get("id"),
                                 "email": user.get("email")}
        module.touch(rid, stamp)
        self.pending.append(Change(
            module.name, "update", rid, changed,
            {name: values[name] for name in changed}, now))
        return changed

    def delete(self, module, rid, now, user):
        """Move a record to the deleted list."""
        record = module.remove(rid)
        self.deleted.append({
            "module": module.name, "id": rid,
            "display_name": display_name(module.name, record),
            "type": "recycle",
            "deleted_by": {"name": user.get("name"), "id": user.get("id")},
            "created_by": _short(record.get("Created_By") or user),
            "deleted_time": self.fmt(now), "epoch": now})
        self.pending.append(Change(module.name, "delete", rid, [], {}, now))

    def take_changes(self):
        """Return and forget the changes made since the last call."""
        out, self.pending = self.pending, []
        return out

    # Reads -------------------------------------------------------------

    def select(self, module, spec):
        """Return a View of the records a list call selects, in order."""
        keys, tuples = module.ordering(spec.sort_by)
        hide = self._converted_filter(module, spec.converted)
        if spec.ids is None and hide is None:
            if spec.since is None:
                return View(keys, desc=spec.desc, tuples=tuples)
            if spec.sort_by == "Modified_Time":
                probe = (spec.since, -1) if spec.inclusive else \
                        (spec.since, 10 ** 20)
                start = bisect.bisect_left(keys, probe)
                return View(keys, start, desc=spec.desc, tuples=True)
        return self._filtered(module, spec, keys, tuples, hide)

    def _filtered(self, module, spec, keys, tuples, hide):
        cache_key = (module.version, spec)
        cached = module.cache.get(cache_key)
        if cached is not None:
            module.cache.move_to_end(cache_key)
            return View(cached, desc=spec.desc)
        wanted = None
        if spec.ids is not None:
            wanted = {int(i) for i in spec.ids if i in module.records}
        meta = module.meta
        since, inclusive = spec.since, spec.inclusive
        out = []
        for key in keys:
            num = key[1] if tuples else key
            if wanted is not None and num not in wanted:
                continue
            info = meta[num]
            if hide is not None and info.converted == hide:
                continue
            if since is not None and (info.modified < since or (
                    not inclusive and info.modified == since)):
                continue
            out.append(num)
        module.cache[cache_key] = out
        while len(module.cache) > 16:
            module.cache.popitem(last=False)
        return View(out, desc=spec.desc)

    @staticmethod
    def _converted_filter(module, converted):
        """Return which converted flag to hide, or None to hide nothing."""
        if module.name != "Leads" or converted == "both":
            return None
        if converted == "true":
            return False
        return True if module.converted_count else None

    def visible(self, module, rid, converted):
        """True if a list or search with ``converted`` shows the record."""
        hide = self._converted_filter(module, converted)
        return hide is None or module.meta[int(rid)].converted != hide


def display_name(module_name, record):
    """The name Zoho shows for a record in lookups."""
    for key in ("Account_Name", "Deal_Name", "Full_Name", "Name", "Subject"):
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    parts = [record.get("First_Name"), record.get("Last_Name")]
    return " ".join(p for p in parts if isinstance(p, str) and p) or None


def full_name(record):
    """First and last name joined, as Zoho fills Full_Name."""
    parts = [record.get("First_Name"), record.get("Last_Name")]
    return " ".join(p for p in parts if isinstance(p, str) and p)


def _whole(epoch):
    """Drop fractions: Zoho's times have whole seconds."""
    return float(int(epoch // 1))


def _short(user):
    return {"name": user.get("name"), "id": user.get("id")}


def _read_json(path, default):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
