"""Small request/response types shared by the API handlers.

:class:`Call` is what a handler sees of a request; :class:`Reply` is what it
returns. Both are independent of the HTTP server so handlers can be called
directly from tests.
"""
import json
import urllib.parse

from . import errors


class Reply:
    """An answer: status, JSON-able body (None for an empty body), headers."""

    def __init__(self, status, body=None, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class Call:
    """One REST call after routing: where it came from and what it carries."""

    def __init__(self, method, path, query_string, headers, body):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.query = {}
        for key, values in urllib.parse.parse_qs(
                query_string, keep_blank_values=True).items():
            self.query[key] = values[0]
        self.headers = headers
        self.body = body
        self.dc = None
        self.version = None
        self.version_text = None
        self.segments = []
        self.access = None
        self.log_extra = None
        self.shutdown = False
        self._json = None

    def param(self, name, default=None):
        """The first value of a query parameter."""
        return self.query.get(name, default)

    def header(self, name):
        """A request header (case-insensitive) or None."""
        return self.headers.get(name)

    def json(self):
        """The body parsed as a JSON object; raise a 400 if it is not."""
        if self._json is None:
            if not self.body:
                raise errors.bad_body("the request body is empty")
            try:
                parsed = json.loads(self.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise errors.bad_body("the request body is not valid JSON") \
                    from None
            if not isinstance(parsed, dict):
                raise errors.bad_body("the request body must be an object")
            self._json = parsed
        return self._json

    def form(self):
        """Query parameters merged with a form-encoded body (body wins)."""
        merged = dict(self.query)
        text = self.body.decode("utf-8", "replace") if self.body else ""
        if text and not text.lstrip().startswith("{"):
            for key, values in urllib.parse.parse_qs(
                    text, keep_blank_values=True).items():
                merged[key] = values[0]
        return merged
