"""A subset of COQL, Zoho's SQL-like query language.

Supported: ``SELECT f1, f2, Lookup.Field FROM Module [WHERE cond] [ORDER BY f
[ASC|DESC], ...] [LIMIT n [OFFSET m] | LIMIT m, n]``. Conditions use ``=``,
``!=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``, ``[NOT] LIKE``,
``[NOT] IN (...)``, ``[NOT] BETWEEN a AND b``, ``IS [NOT] NULL`` joined by
AND/OR with parentheses. Strings are single-quoted (``\\'`` or ``''`` for a
quote). Aggregates and joins deeper than one lookup are not supported.
"""
import re

from . import ztime
from .errors import ApiError, limit_exceeded, mandatory_missing
from .messages import Reply

KEYWORDS = {"select", "from", "where", "order", "by", "asc", "desc", "limit",
            "offset", "and", "or", "not", "like", "in", "between", "is",
            "null", "true", "false"}
TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[(),;*])
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)
""", re.VERBOSE)
NUMERIC = ("integer", "bigint", "double", "currency", "decimal", "percent")


def syntax_error(text, pos, near):
    """400 SYNTAX_ERROR pointing at ``pos`` in the query."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return ApiError(400, "SYNTAX_ERROR", "error occurred while parsing the "
                    "query", {"near": near, "line": line, "column": column})


def invalid_column(name, clause):
    """400 INVALID_QUERY for an unknown column."""
    return ApiError(400, "INVALID_QUERY", "invalid query formed",
                    {"column_name": name, "clause": clause,
                     "reason": "invalid column given"})


def tokenize(text):
    """Return a list of (kind, value, position); raise SYNTAX_ERROR."""
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise syntax_error(text, pos, text[pos:pos + 10])
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
            value = re.sub(r"\\(.)", r"\1", value)
        elif kind == "quoted":
            kind, value = "name", value[1:-1]
        elif kind == "name" and value.lower() in KEYWORDS:
            kind, value = "kw", value.lower()
        if kind != "space":
            tokens.append((kind, value, pos))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class Query:
    """A parsed SELECT."""

    def __init__(self):
        self.columns = []
        self.module = None
        self.where = None
        self.order = []
        self.limit = None
        self.offset = 0
        self.criteria = 0


class Parser:
    """Recursive-descent parser producing a :class:`Query`."""

    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.query = Query()

    def peek(self):
        """The current token."""
        return self.tokens[self.i]

    def take(self, kind=None, value=None):
        """Consume a token that must match; raise SYNTAX_ERROR otherwise."""
        token = self.tokens[self.i]
        if (kind and token[0] != kind) or (value and token[1] != value):
            raise syntax_error(self.text, token[2], token[1] or "<end>")
        self.i += 1
        return token

    def accept(self, kind, value=None):
        """Consume a token if it matches; return it or None."""
        token = self.tokens[self.i]
        if token[0] == kind and (value is None or token[1] == value):
            self.i += 1
            return token
        return None

    def parse(self, require_where):
        """Parse the whole statement."""
        q = self.query
        self.take("kw", "select")
        q.columns.append(self.take("name")[1])
        while self.accept("punct", ","):
            q.columns.append(self.take("name")[1])
        self.take("kw", "from")
        q.module = self.take("name")[1]
        if self.accept("kw", "where"):
            q.where = self.or_expr()
        elif require_where:
            token = self.peek()
            raise syntax_error(self.text, token[2], token[1] or "<end>")
        if self.accept("kw", "order"):
            self.take("kw", "by")
            self.order_list()
        if self.accept("kw", "limit"):
            self.limit_clause()
        self.accept("punct", ";")
        self.take("end")
        return q

    def order_list(self):
        """ORDER BY f [ASC|DESC], ..."""
        while True:
            name = self.take("name")[1]
            desc = False
            if self.accept("kw", "desc"):
                desc = True
            else:
                self.accept("kw", "asc")
            self.query.order.append((name, desc))
            if not self.accept("punct", ","):
                return

    def limit_clause(self):
        """LIMIT n [OFFSET m] or LIMIT m, n."""
        first = int(float(self.take("number")[1]))
        if self.accept("punct", ","):
            self.query.offset = first
            self.query.limit = int(float(self.take("number")[1]))
            return
        self.query.limit = first
        if self.accept("kw", "offset"):
            self.query.offset = int(float(self.take("number")[1]))

    def or_expr(self):
        """a OR b OR ..."""
        parts = [self.and_expr()]
        while self.accept("kw", "or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_expr(self):
        """a AND b AND ..."""
        parts = [self.factor()]
        while self.accept("kw", "and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def factor(self):
        """( expr ) or one comparison."""
        if self.accept("punct", "("):
            node = self.or_expr()
            self.take("punct", ")")
            return node
        return self.comparison()

    def comparison(self):
        """column <operator> value(s)."""
        self.query.criteria += 1
        column = self.take("name")[1]
        if self.accept("kw", "is"):
            negate = bool(self.accept("kw", "not"))
            self.take("kw", "null")
            return ("cmp", column, "is not null" if negate else "is null", [])
        negate = bool(self.accept("kw", "not"))
        if self.accept("kw", "like"):
            op = "not like" if negate else "like"
            return ("cmp", column, op, [self.value()])
        if self.accept("kw", "in"):
            return ("cmp", column, "not in" if negate else "in",
                    self.value_list())
        if self.accept("kw", "between"):
            low = self.value()
            self.take("kw", "and")
            op = "not between" if negate else "between"
            return ("cmp", column, op, [low, self.value()])
        if negate:
            token = self.peek()
            raise syntax_error(self.text, token[2], token[1] or "<end>")
        op = self.take("op")[1]
        return ("cmp", column, "!=" if op == "<>" else op, [self.value()])

    def value_list(self):
        """( v1, v2, ... )"""
        self.take("punct", "(")
        values = [self.value()]
        while self.accept("punct", ","):
            values.append(self.value())
        self.take("punct", ")")
        return values

    def value(self):
        """A literal: string, number, true, false or null."""
        token = self.peek()
        if token[0] == "string":
            self.i += 1
            return token[1]
        if token[0] == "number":
            self.i += 1
            return float(token[1])
        if token[0] == "kw" and token[1] in ("true", "false", "null"):
            self.i += 1
            return {"true": True, "false": False, "null": None}[token[1]]
        raise syntax_error(self.text, token[2], token[1] or "<end>")


def parse(text, require_where=False):
    """Parse a select_query string into a :class:`Query`."""
    return Parser(text).parse(require_where)


class Executor:
    """Runs a parsed query against the store."""

    def __init__(self, store, module, query):
        self.store = store
        self.module = module
        self.query = query

    def field(self, column, clause):
        """Return (field, lookup field or None) for a column name."""
        name, _, sub = column.partition(".")
        field = self.module.fields.get(name)
        if field is None and name != "id":
            raise invalid_column(column, clause)
        if not sub:
            return field, None
        target = self.store.module(field.lookup) if field and \
            field.lookup else None
        if target is None or sub not in target.fields and sub != "id":
            raise invalid_column(column, clause)
        return field, (target, target.fields.get(sub))

    def value_of(self, record, column):
        """The raw stored value of a column (following one lookup)."""
        name, _, sub = column.partition(".")
        value = record.get(name)
        if not sub:
            return value
        ref = value.get("id") if isinstance(value, dict) else None
        field, (target, _) = self.field(column, "select")
        linked = target.records.get(ref) if ref else None
        return linked.get(sub) if linked else None

    def check(self):
        """Validate every column before running."""
        for column in self.query.columns:
            self.field(column, "select")
        for column, _ in self.query.order:
            self.field(column, "order by")
        self._check_where(self.query.where)

    def _check_where(self, node):
        if node is None:
            return
        if node[0] == "cmp":
            self.field(node[1], "where")
        else:
            for part in node[1]:
                self._check_where(part)

    def matches(self, record, node):
        """Evaluate a WHERE tree on a record."""
        if node is None:
            return True
        if node[0] == "and":
            return all(self.matches(record, p) for p in node[1])
        if node[0] == "or":
            return any(self.matches(record, p) for p in node[1])
        _, column, op, values = node
        field, linked = self.field(column, "where")
        if linked is not None:
            field = linked[1]
        kind = field.data_type if field is not None else "bigint"
        return compare(kind, self.value_of(record, column), op, values)

    def project(self, record):
        """The output row: selected columns plus id, lookups as {id}."""
        row = {}
        for column in self.query.columns:
            value = self.value_of(record, column)
            if isinstance(value, dict) and "id" in value:
                value = {"id": value["id"]}
            row[column] = value
        row["id"] = record["id"]
        return row

    def sort_key(self, record):
        """A tuple for ORDER BY (nulls last)."""
        key = []
        for column, desc in self.query.order:
            value = _comparable(self.value_of(record, column))
            key.append(_Desc(value) if desc else _Asc(value))
        return key


class _Asc:
    """Ascending sort wrapper tolerant of None and mixed types."""

    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        a, b = self.value, other.value
        if a is None or b is None:
            return a is not None and b is None
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)

    def __eq__(self, other):
        return self.value == other.value


class _Desc(_Asc):
    """Descending sort wrapper (nulls still last)."""

    def __lt__(self, other):
        a, b = self.value, other.value
        if a is None or b is None:
            return a is not None and b is None
        try:
            return a > b
        except TypeError:
            return str(a) > str(b)


def _comparable(value):
    if isinstance(value, dict):
        return value.get("name") or value.get("id")
    if isinstance(value, str):
        stamp = ztime.parse_dt(value)
        return stamp if stamp is not None else value.lower()
    return value


def _typed(kind, value):
    """Convert a stored or literal value for comparing under ``kind``."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("id")
    if kind == "datetime":
        return ztime.parse_dt(value) if isinstance(value, str) else None
    if kind in NUMERIC:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if kind == "bigint" or kind in ("lookup", "ownerlookup"):
        return str(value).split(".")[0] if isinstance(value, float) \
            else str(value)
    if isinstance(value, str):
        return value.lower()
    return value


def compare(kind, stored, op, values):
    """Apply a COQL operator to a stored value."""
    if op == "is null":
        return stored in (None, "", [])
    if op == "is not null":
        return stored not in (None, "", [])
    have = _typed(kind, stored)
    wanted = [_typed(kind, v) for v in values]
    if op in ("like", "not like"):
        pattern = re.escape(str(values[0]).lower()).replace("%", ".*")
        hit = have is not None and re.fullmatch(pattern, str(have)) is not None
        return hit if op == "like" else not hit
    if op in ("in", "not in"):
        hit = have in wanted
        return hit if op == "in" else not hit
    if have is None:
        return op == "!=" and wanted[0] is not None
    if op in ("between", "not between"):
        try:
            hit = wanted[0] <= have <= wanted[1]
        except TypeError:
            hit = False
        return hit if op == "between" else not hit
    return _ordered(have, op, wanted[0])


def _ordered(have, op, want):
    try:
        if op == "=":
            return have == want
        if op == "!=":
            return have != want
        if op == "<":
            return have < want
        if op == "<=":
            return have <= want
        if op == ">":
            return have > want
        return have >= want
    except TypeError:
        return False


def cost(sim, call):
    """Credits of a COQL call: more for bigger LIMITs."""
    try:
        query = parse(call.json().get("select_query") or "")
        limit = query.limit or 200
    except ApiError:
        return 1
    if limit <= 200:
        return 1
    return 2 if limit <= 1000 else 3


def handle(sim, call):
    """POST /coql."""
    text = call.json().get("select_query")
    if not isinstance(text, str) or not text.strip():
        raise mandatory_missing("select_query")
    query = parse(text, sim.config.coql_require_where)
    module = sim.store.module(query.module)
    if module is None:
        raise ApiError(400, "INVALID_QUERY", "invalid query formed",
                       {"clause": "from", "reason": "invalid module given"})
    _check_limits(sim, call, query)
    executor = Executor(sim.store, module, query)
    executor.check()
    rows = [module.records[str(n)] for n in module.by_id
            if sim.store.visible(module, str(n), "false")]
    rows = [r for r in rows if executor.matches(r, query.where)]
    if query.order:
        rows.sort(key=executor.sort_key)
    limit = query.limit or 200
    chosen = rows[query.offset:query.offset + limit]
    if not chosen:
        return Reply(204)
    return Reply(200, {"data": [executor.project(r) for r in chosen],
                       "info": {"count": len(chosen), "more_records":
                                query.offset + len(chosen) < len(rows)}})


def _check_limits(sim, call, query):
    columns = 500 if call.version >= 7 else 50
    if len(query.columns) > columns:
        raise _clause(limit_exceeded(columns), "select")
    if query.criteria > 25:
        raise _clause(limit_exceeded(25), "where")
    largest = 200 if call.version <= 3 else sim.config.coql_max_limit
    limit = query.limit or 200
    if limit < 1 or limit > largest:
        raise _clause(limit_exceeded(largest), "limit")
    if query.offset + limit > sim.config.coql_max_offset:
        raise _clause(limit_exceeded(sim.config.coql_max_offset), "offset")


def _clause(error, clause):
    error.details["clause"] = clause
    return error
