"""Field metadata per module and the checks Zoho applies to written values.

Standard fields of the four core modules are listed here; any other field
found in the loaded data is added with a type guessed from its values (and
flagged ``custom_field``). A data folder may carry ``fields.json``
(``{"Contacts": [{"api_name": ..., "data_type": ..., ...}]}``) to override
or add metadata, and ``POST /_sim/fields/{module}`` changes it at run time.
"""
import re

from . import ztime

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^[0-9+()\-. ]{1,30}$")
ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")

# Types whose stored value is a string.
TEXT_TYPES = ("text", "textarea", "picklist", "website", "email", "phone",
              "autonumber")

READ_ONLY = {"id", "Created_Time", "Modified_Time", "Created_By",
             "Modified_By", "Full_Name", "Converted__s", "Converted_Contact",
             "Converted_Account", "Converted_Deal", "Converted_Date_Time",
             "$converted"}

_COMMON = [
    ("Owner", "ownerlookup", None), ("Created_Time", "datetime", None),
    ("Modified_Time", "datetime", None), ("Created_By", "ownerlookup", None),
    ("Modified_By", "ownerlookup", None), ("Tag", "tag", None),
    ("Description", "textarea", 32000),
]
_PERSON = [
    ("First_Name", "text", 40), ("Last_Name", "text", 80),
    ("Full_Name", "text", 255), ("Email", "email", 100),
    ("Secondary_Email", "email", 100), ("Phone", "phone", 30),
    ("Mobile", "phone", 30), ("Lead_Source", "picklist", 120),
    ("Email_Opt_Out", "boolean", None), ("Salutation", "picklist", 120),
]
STANDARD = {
    "Leads": _PERSON + [
        ("Company", "text", 200), ("Lead_Status", "picklist", 120),
        ("Industry", "picklist", 120), ("Website", "website", 255),
        ("Designation", "text", 100), ("City", "text", 100),
        ("Country", "text", 100), ("Street", "text", 250),
        ("State", "text", 100), ("Zip_Code", "text", 30),
        ("Annual_Revenue", "currency", None),
        ("No_of_Employees", "integer", None), ("Rating", "picklist", 120),
        ("Converted__s", "boolean", None),
        ("Converted_Date_Time", "datetime", None),
        ("Converted_Contact", "lookup:Contacts", None),
        ("Converted_Account", "lookup:Accounts", None),
        ("Converted_Deal", "lookup:Deals", None),
    ],
    "Contacts": _PERSON + [
        ("Account_Name", "lookup:Accounts", None), ("Title", "text", 100),
        ("Department", "text", 100), ("Date_of_Birth", "date", None),
        ("Mailing_Street", "text", 250), ("Mailing_City", "text", 100),
        ("Mailing_State", "text", 100), ("Mailing_Zip", "text", 30),
        ("Mailing_Country", "text", 100),
    ],
    "Accounts": [
        ("Account_Name", "text", 200), ("Phone", "phone", 30),
        ("Website", "website", 255), ("Industry", "picklist", 120),
        ("Billing_City", "text", 100), ("Billing_Country", "text", 100),
        ("Billing_Street", "text", 250), ("Annual_Revenue", "currency", None),
        ("Employees", "integer", None), ("Account_Type", "picklist", 120),
    ],
    "Deals": [
        ("Deal_Name", "text", 120), ("Stage", "picklist", 120),
        ("Pipeline", "picklist", 120), ("Amount", "currency", None),
        ("Closing_Date", "date", None), ("Probability", "integer", None),
        ("Contact_Name", "lookup:Contacts", None),
        ("Account_Name", "lookup:Accounts", None),
        ("Lead_Source", "picklist", 120), ("Type", "picklist", 120),
        ("Next_Step", "text", 100),
    ],
}
MANDATORY = {"Leads": ["Last_Name"], "Contacts": ["Last_Name"],
             "Accounts": ["Account_Name"], "Deals": ["Deal_Name", "Stage"]}

# Field upsert checks first for each module (Zoho's "system" duplicate field).
SYSTEM_DUPLICATE_FIELD = {"Leads": "Email", "Contacts": "Email",
                          "Accounts": "Account_Name", "Deals": "Deal_Name"}

JSON_TYPES = {"text": "string", "textarea": "string", "picklist": "string",
              "website": "string", "email": "string", "phone": "string",
              "autonumber": "string", "integer": "integer",
              "bigint": "string", "double": "double", "currency": "double",
              "boolean": "boolean", "date": "string", "datetime": "string",
              "lookup": "jsonobject", "ownerlookup": "jsonobject",
              "multiselectpicklist": "jsonarray", "tag": "jsonarray"}


class Field:
    """Metadata of one field, in the terms of Zoho's fields API."""

    def __init__(self, api_name, data_type, length=None, lookup=None,
                 custom=False):
        self.api_name = api_name
        self.data_type = data_type
        self.length = length
        self.lookup = lookup
        self.custom = custom
        self.mandatory = False
        self.unique = False
        self.read_only = api_name in READ_ONLY

    def describe(self, module_id, index):
        """Return the field as ``GET /settings/fields`` lists it."""
        out = {"api_name": self.api_name, "data_type": self.data_type,
               "json_type": JSON_TYPES.get(self.data_type, "string"),
               "length": self.length, "system_mandatory": self.mandatory,
               "custom_field": self.custom, "read_only": self.read_only,
               "unique": {"casesensitive": False} if self.unique else None,
               "field_label": self.api_name.replace("_", " "),
               "id": str(int(module_id) + 100 + index)}
        if self.lookup:
            out["lookup"] = {"module": {"api_name": self.lookup}}
        return out

    def update(self, spec):
        """Apply a metadata dict (from fields.json or the control API)."""
        if "data_type" in spec:
            self.data_type = str(spec["data_type"])
        if "length" in spec:
            self.length = spec["length"]
        if "lookup" in spec:
            self.lookup = spec["lookup"]
        for key, attr in (("system_mandatory", "mandatory"),
                          ("mandatory", "mandatory"), ("unique", "unique"),
                          ("read_only", "read_only"),
                          ("custom_field", "custom")):
            if key in spec:
                setattr(self, attr, bool(spec[key]))


def standard_fields(module):
    """Return {api_name: Field} for the built-in fields of a module."""
    out = {}
    for name, kind, length in _COMMON + STANDARD.get(module, []):
        lookup = None
        if kind.startswith("lookup:"):
            kind, lookup = "lookup", kind.split(":", 1)[1]
        out[name] = Field(name, kind, length, lookup)
    for name in MANDATORY.get(module, []):
        out[name].mandatory = True
    if module not in STANDARD and "Name" not in out:
        out["Name"] = Field("Name", "text", 120)
        out["Name"].mandatory = True
    return out


def infer_type(value):
    """Guess a Zoho data type from a sample value."""
    if isinstance(value, bool):
        return "boolean", None
    if isinstance(value, int):
        return "integer", None
    if isinstance(value, float):
        return "double", None
    if isinstance(value, dict):
        return ("ownerlookup" if "email" in value else "lookup"), None
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return "tag", None
        return "multiselectpicklist", None
    if isinstance(value, str):
        if ztime.parse_dt(value) is not None:
            return "datetime", None
        if ztime.parse_date(value) is not None:
            return "date", None
        if EMAIL_RE.match(value):
            return "email", 100
    return "text", 255


def infer_fields(fields, records, sample=500):
    """Add Fields for keys of ``records`` that ``fields`` lacks."""
    pending = {}
    for record in records[:sample]:
        for key, value in record.items():
            if key in fields or key == "id" or key.startswith("$"):
                continue
            if value is not None and value != []:
                pending[key] = pending.get(key) or infer_type(value)
            else:
                pending.setdefault(key, None)
    for key, guess in pending.items():
        kind, length = guess or ("text", 255)
        fields[key] = Field(key, kind, length, custom=True)


class FieldError(Exception):
    """A written value failed a check; ``details`` go in the error body."""

    def __init__(self, code, message, details):
        super().__init__(code)
        self.code = code
        self.message = message
        self.details = details


def invalid(field, extra=None):
    """Build the INVALID_DATA failure for a field."""
    details = {"expected_data_type": field.data_type,
               "api_name": field.api_name}
    details.update(extra or {})
    return FieldError("INVALID_DATA", "invalid data", details)


def check_value(field, value, resolve):
    """Check and normalise one written value; return the value to store.

    ``resolve(module, id)`` returns the {name, id, ...} lookup object for an
    existing record or user, or None. Raises FieldError on bad input.
    """
    if value is None:
        return None
    kind = field.data_type
    if kind in TEXT_TYPES:
        return _check_text(field, value)
    if kind in ("integer", "bigint"):
        return _check_integer(field, value)
    if kind in ("double", "currency", "decimal", "percent"):
        return _check_number(field, value)
    if kind in ("lookup", "ownerlookup"):
        return _check_lookup(field, value, resolve)
    accept = SIMPLE_CHECKS.get(kind)
    if accept is not None and not accept(value):
        raise invalid(field)
    return value


SIMPLE_CHECKS = {
    "boolean": lambda v: isinstance(v, bool),
    "date": lambda v: ztime.parse_date(v) is not None,
    "datetime": lambda v: ztime.parse_dt(v) is not None,
    "multiselectpicklist": lambda v: isinstance(v, list),
    "tag": lambda v: isinstance(v, list),
}


def _check_text(field, value):
    if not isinstance(value, str):
        raise invalid(field)
    limit = field.length
    if limit and len(value) > limit:
        raise invalid(field, {"maximum_length": limit})
    if field.data_type == "email" and not EMAIL_RE.match(value):
        raise invalid(field)
    if field.data_type == "phone" and not PHONE_RE.match(value):
        raise invalid(field)
    return value


def _check_integer(field, value):
    if isinstance(value, str) and re.match(r"^-?[0-9]{1,18}$", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field)
    if field.data_type == "integer" and not -2**31 <= value < 2**31:
        raise invalid(field)
    return value


def _check_number(field, value):
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise invalid(field) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(field)
    return value


def _check_lookup(field, value, resolve):
    if isinstance(value, dict):
        ref = value.get("id")
    else:
        ref = value
    if isinstance(ref, int) and not isinstance(ref, bool):
        ref = str(ref)
    if not isinstance(ref, str) or not ID_RE.match(ref):
        raise invalid(field)
    target = "users" if field.data_type == "ownerlookup" else field.lookup
    if target is None:
        return {"id": ref, "name": value.get("name")
                if isinstance(value, dict) else None}
    found = resolve(target, ref)
    if found is None:
        raise FieldError("INVALID_DATA", "the related id given seems to be "
                          "invalid", {"api_name": field.api_name,
                                      "expected_data_type": field.data_type})
    return found
