"""Date-time helpers in the formats Zoho CRM uses on the wire.

Zoho writes date-times as ``YYYY-MM-DDTHH:MM:SS+05:30``: a numeric offset and
no fractional seconds. Dates are ``YYYY-MM-DD``. Times are kept internally as
POSIX seconds (floats) so that comparisons are cheap.
"""
import datetime as dt
import re

DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):(\d{2})$")
DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
OFFSET_RE = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def parse_offset(text):
    """Return the offset ``+hh:mm`` in seconds, or raise ValueError."""
    m = OFFSET_RE.match(text or "")
    if not m:
        raise ValueError("offset must look like +05:30")
    seconds = int(m.group(2)) * 3600 + int(m.group(3)) * 60
    return seconds if m.group(1) == "+" else -seconds


def format_offset(seconds):
    """Return ``+hh:mm`` for an offset in seconds."""
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(int(seconds))
    return "%s%02d:%02d" % (sign, seconds // 3600, seconds % 3600 // 60)


def format_dt(epoch, offset_seconds):
    """Format POSIX seconds in the given offset, dropping fractions."""
    tz = dt.timezone(dt.timedelta(seconds=offset_seconds))
    local = dt.datetime.fromtimestamp(int(epoch // 1), tz)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + format_offset(offset_seconds)


def parse_dt(text):
    """Parse a strict Zoho date-time; return POSIX seconds or None.

    Only the exact wire format is accepted: no fractions, no ``Z``, no
    missing offset. Out-of-range fields also give None.
    """
    if not isinstance(text, str) or not DATETIME_RE.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def parse_date(text):
    """Parse ``YYYY-MM-DD``; return a datetime.date or None."""
    if not isinstance(text, str) or not DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def parse_loose(text):
    """Parse an ISO 8601 date-time for the control API; return POSIX seconds.

    Unlike :func:`parse_dt` this accepts ``Z``, fractions and a missing
    offset (taken as UTC), because test code should not have to be exact.
    Raises ValueError on anything else.
    """
    if not isinstance(text, str):
        raise ValueError("expected an ISO 8601 string")
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def detect_offset(text):
    """Return the offset in seconds carried by a Zoho date-time, or None."""
    if isinstance(text, str) and DATETIME_RE.match(text):
        return parse_offset(text[-6:])
    return None
