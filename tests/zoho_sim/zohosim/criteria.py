"""The search API's criteria language and the email/phone/word variants.

Criteria look like
``((Last_Name:equals:Burns\\,B)and(First_Name:starts_with:M))``: conditions
``field:operator:value`` in parentheses joined by ``and``/``or``. A backslash makes the next character literal, so ``\\(``, ``\\)``, ``\\,``
and ``\\\\`` can appear in values; an unescaped comma separates the values of
``in``, ``between`` and multi-value ``equals``. Text ``equals`` matches as a
case-insensitive "contains", as Zoho's does.
"""
from . import fields as fieldmeta
from . import ztime
from .errors import ApiError

OPERATORS = {"equals", "not_equal", "starts_with", "in", "greater_than",
             "greater_equal", "less_than", "less_equal", "between"}
OLD_OPERATORS = {"equals", "starts_with"}
ORDERED = {"greater_than", "greater_equal", "less_than", "less_equal",
           "between"}
NUMERIC = ("integer", "bigint", "double", "currency", "decimal", "percent")
EMPTY = "${EMPTY}"


def invalid_query(reason, **extra):
    """400 INVALID_QUERY with a reason in the details."""
    details = {"reason": reason}
    details.update(extra)
    return ApiError(400, "INVALID_QUERY", "invalid query formed", details)


class Cond:
    """One ``field:operator:value`` condition, ready to evaluate."""

    def __init__(self, field, op, values):
        self.field = field
        self.op = op
        self.values = values
        self.kind = field.data_type
        self.parsed = [_parse_operand(field, v) for v in values]

    def __call__(self, record):
        value = record.get(self.field.api_name)
        if self.op == "not_equal":
            return not self._equals(value)
        if self.op in ("equals", "in"):
            return self._equals(value)
        if self.op == "starts_with":
            text = _text_of(value)
            return text is not None and any(
                text.startswith(v.lower()) for v in self.values)
        return self._ordered(value)

    def _equals(self, value):
        for raw, operand in zip(self.values, self.parsed):
            if raw == EMPTY:
                if value in (None, "", []):
                    return True
                continue
            if _equal(self.kind, value, raw, operand):
                return True
        return False

    def _ordered(self, value):
        have = _parse_operand(self.field, value, stored=True)
        if have is None:
            return False
        low = self.parsed[0]
        if self.op == "between":
            return low <= have <= self.parsed[1]
        if self.op == "greater_than":
            return have > low
        if self.op == "greater_equal":
            return have >= low
        if self.op == "less_than":
            return have < low
        return have <= low


class Group:
    """Conditions joined by one operator, ``and`` or ``or``."""

    def __init__(self, op, parts):
        self.op = op
        self.parts = parts

    def __call__(self, record):
        if self.op == "and":
            return all(part(record) for part in self.parts)
        return any(part(record) for part in self.parts)


def _text_of(value):
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, dict):
        name = value.get("name")
        return name.lower() if isinstance(name, str) else None
    if isinstance(value, list):
        return ",".join(str(v.get("name") if isinstance(v, dict) else v)
                        for v in value).lower()
    if value is None:
        return None
    return str(value).lower()


def _equal(kind, value, raw, operand):
    if value is None:
        return False
    if kind in ("email", "picklist"):
        return isinstance(value, str) and value.lower() == raw.lower()
    if kind in NUMERIC or kind in ("date", "datetime", "boolean"):
        stored = _parse_stored(kind, value)
        return stored is not None and stored == operand
    if kind in ("lookup", "ownerlookup"):
        if isinstance(value, dict) and value.get("id") == raw:
            return True
    if kind in ("multiselectpicklist", "tag"):
        names = [str(v.get("name") if isinstance(v, dict) else v).lower()
                 for v in value]
        return raw.lower() in names
    text = _text_of(value)
    return text is not None and raw.lower() in text


def _parse_stored(kind, value):
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "datetime":
        return ztime.parse_dt(value)
    if kind == "date":
        return ztime.parse_date(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _parse_operand(field, raw, stored=False):
    """Convert a criteria value to the field's type (None when n/a)."""
    kind = field.data_type
    if stored:
        return _parse_stored(kind, raw)
    if raw == EMPTY:
        return None
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise invalid_query("invalid boolean", api_name=field.api_name)
        return raw.lower() == "true"
    if kind == "datetime":
        value = ztime.parse_dt(raw)
    elif kind == "date":
        value = ztime.parse_date(raw)
    elif kind in NUMERIC:
        try:
            value = float(raw)
        except ValueError:
            value = None
    else:
        return raw
    if value is None:
        raise invalid_query("invalid value for the field's data type",
                            api_name=field.api_name,
                            expected_data_type=kind)
    return value


class Parser:
    """Recursive-descent parser over the criteria string."""

    def __init__(self, text, module, version, max_criteria):
        self.text = text
        self.pos = 0
        self.module = module
        self.version = version
        self.max_criteria = max_criteria
        self.count = 0

    def parse(self):
        """Return the root node or raise INVALID_QUERY."""
        self.text = self.text.strip()
        if not self.text:
            raise invalid_query("empty criteria")
        if not self.text.startswith("("):
            self.text = "(" + self.text + ")"
        node = self._expression()
        if self.pos != len(self.text):
            raise invalid_query("unexpected text in criteria",
                                near=self.text[self.pos:self.pos + 20])
        return node

    def _expression(self):
        parts, ops = [self._group()], []
        while self.pos < len(self.text):
            rest = self.text[self.pos:self.pos + 4].lower()
            if rest.startswith("and("):
                ops.append("and")
                self.pos += 3
            elif rest.startswith("or("):
                ops.append("or")
                self.pos += 2
            else:
                break
            parts.append(self._group())
        return _combine(parts, ops)

    def _group(self):
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise invalid_query("expected '('", position=self.pos)
        self.pos += 1
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            node = self._expression()
        else:
            node = self._condition()
        if self.pos >= len(self.text) or self.text[self.pos] != ")":
            raise invalid_query("expected ')'", position=self.pos)
        self.pos += 1
        return node

    def _condition(self):
        self.count += 1
        if self.count > self.max_criteria:
            raise invalid_query("too many criteria",
                                limit=self.max_criteria)
        name = self._until(":")
        op = self._until(":").strip().lower()
        values = self._values()
        field = self.module.fields.get(name.strip())
        if field is None:
            raise invalid_query("invalid field", api_name=name.strip())
        allowed = OPERATORS if self.version >= 4 else OLD_OPERATORS
        if op not in allowed:
            raise invalid_query("invalid operator", operator=op)
        if op in ORDERED and field.data_type not in NUMERIC + (
                "date", "datetime"):
            raise invalid_query("operator not supported for the field",
                                api_name=field.api_name, operator=op)
        if op == "between" and len(values) != 2:
            raise invalid_query("between needs two values")
        if op == "in" and len(values) > 100:
            raise invalid_query("too many values for in", limit=100)
        return Cond(field, op, values)

    def _until(self, stop):
        start = self.pos
        end = self.text.find(stop, start)
        close = self.text.find(")", start)
        if end < 0 or (0 <= close < end):
            raise invalid_query("a condition needs field:operator:value")
        self.pos = end + 1
        return self.text[start:end]

    def _values(self):
        values, current = [], []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                current.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == ")":
                break
            if char == ",":
                values.append("".join(current))
                current = []
            else:
                current.append(char)
            self.pos += 1
        values.append("".join(current))
        return values


def _combine(parts, ops):
    """Join parts with and-before-or precedence."""
    if not ops:
        return parts[0]
    ors, current = [], [parts[0]]
    for op, part in zip(ops, parts[1:]):
        if op == "and":
            current.append(part)
        else:
            ors.append(current)
            current = [part]
    ors.append(current)
    groups = [c[0] if len(c) == 1 else Group("and", c) for c in ors]
    return groups[0] if len(groups) == 1 else Group("or", groups)


def parse(text, module, version, max_criteria=10):
    """Parse criteria for ``module``; return a callable predicate."""
    return Parser(text, module, version, max_criteria).parse()


def index_hint(node):
    """Return (field name, values) of an email ``equals`` that every match
    must satisfy, so the caller can start from an index; else None."""
    candidates = [node]
    if isinstance(node, Group) and node.op == "and":
        candidates = node.parts
    for part in candidates:
        if isinstance(part, Cond) and part.op in ("equals", "in") and \
                part.kind == "email" and EMPTY not in part.values:
            return part.field.api_name, part.values
    return None


def simple_search(module, kind, value):
    """Build the predicate of ``email=``, ``phone=`` or ``word=``."""
    if kind == "email":
        if not fieldmeta.EMAIL_RE.match(value or ""):
            raise invalid_query("invalid email", param_name="email")
        names = [f.api_name for f in module.fields.values()
                 if f.data_type == "email"]
        wanted = value.lower()
        return lambda r: any(isinstance(r.get(n), str) and
                             r[n].lower() == wanted for n in names)
    if kind == "phone":
        digits = "".join(c for c in value if c.isdigit())
        if len(value.strip()) < 3 or not digits:
            raise invalid_query("phone needs at least 3 characters",
                                param_name="phone")
        names = [f.api_name for f in module.fields.values()
                 if f.data_type == "phone"]
        return lambda r: any(isinstance(r.get(n), str) and digits in "".join(
            c for c in r[n] if c.isdigit()) for n in names)
    if len(value.strip()) < 2:
        raise invalid_query("word needs at least 2 characters",
                            param_name="word")
    names = [f.api_name for f in module.fields.values()
             if f.data_type in fieldmeta.TEXT_TYPES]
    wanted = value.lower()
    return lambda r: any(isinstance(r.get(n), str) and
                         wanted in r[n].lower() for n in names)
