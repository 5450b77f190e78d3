"""Zoho-shaped API errors.

Every error the REST API returns has the body
``{"code": ..., "details": {...}, "message": ..., "status": "error"}``.
:class:`ApiError` carries one such body plus the HTTP status, and the helpers
below build the common ones with Zoho's wording.
"""


class ApiError(Exception):
    """A request-level failure answered with a Zoho error body."""

    def __init__(self, status, code, message, details=None, headers=None,
                 wrap=None):
        super().__init__("%s %s" % (status, code))
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else {}
        self.headers = headers or {}
        self.wrap = wrap

    def body(self):
        """Return the JSON body; wrapped in a list when ``wrap`` is set."""
        item = error_item(self.code, self.message, self.details)
        if self.wrap:
            return {self.wrap: [item]}
        return item


def error_item(code, message, details=None):
    """Return one error object, as used top-level and inside ``data[i]``."""
    return {"code": code, "details": details if details is not None else {},
            "message": message, "status": "error"}


def invalid_token():
    """401 for an unknown, expired, evicted or wrong-DC access token."""
    return ApiError(401, "INVALID_TOKEN", "invalid oauth token")


def authentication_failure():
    """401 for a request without a usable Authorization header."""
    return ApiError(401, "AUTHENTICATION_FAILURE", "Authentication failed")


def scope_mismatch():
    """401 when the token's scopes do not cover the URL."""
    return ApiError(401, "OAUTH_SCOPE_MISMATCH",
                    "invalid oauth scope to access this URL")


def invalid_url():
    """404 for a path the API does not have."""
    return ApiError(404, "INVALID_URL_PATTERN", "Please check if the URL "
                    "trying to access is a correct one")


def invalid_module(name=None):
    """400 for an unknown module API name."""
    details = {"resource_path_index": 0} if name is not None else {}
    return ApiError(400, "INVALID_MODULE",
                    "The module name given seems to be invalid", details)


def invalid_method():
    """400 for a known path called with the wrong HTTP verb."""
    return ApiError(400, "INVALID_REQUEST_METHOD",
                    "The http request method type is not a valid one")


def required_param(name):
    """400 for a missing query parameter such as ``fields``."""
    return ApiError(400, "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param_name": name})


def invalid_param(name, message="invalid data", extra=None):
    """400 INVALID_DATA naming a bad query parameter."""
    details = {"param_name": name}
    details.update(extra or {})
    return ApiError(400, "INVALID_DATA", message, details)


def mandatory_missing(api_name, wrap=None):
    """400 MANDATORY_NOT_FOUND for a missing body key."""
    return ApiError(400, "MANDATORY_NOT_FOUND", "required field not found",
                    {"api_name": api_name}, wrap=wrap)


def bad_body(message="invalid data"):
    """400 for a body that is not the JSON object the call expects."""
    return ApiError(400, "INVALID_DATA", message, {})


def limit_exceeded(limit, api_name=None, message=None):
    """400 LIMIT_EXCEEDED with the limit in the details."""
    details = {"limit": limit}
    if api_name is not None:
        details["api_name"] = api_name
    return ApiError(400, "LIMIT_EXCEEDED",
                    message or "the limit has been exceeded", details)


def internal_error():
    """500 INTERNAL_ERROR, Zoho's generic server failure."""
    return ApiError(500, "INTERNAL_ERROR", "Internal server error occurred.")
