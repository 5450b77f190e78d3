"""Settings of the simulator, their defaults, and the fixed tables it uses.

Every behaviour that the API notes mark as unconfirmed is a setting here, so
a test can pick the variant it wants. Settings come from ``--config FILE``,
``--set key=value`` on the command line, and ``POST /_sim/config`` at run
time; ``POST /_sim/reset`` restores the values the process started with.
"""
import copy

# Data centre code -> top-level domain of its real hosts, for reference in
# answers that mention real Zoho hosts.
DATA_CENTRES = {
    "us": "com", "eu": "eu", "in": "in", "au": "com.au",
    "jp": "jp", "ca": "ca", "cn": "com.cn", "sa": "sa",
}

# Edition -> (base credits, credits per user, cap or None, concurrency).
EDITIONS = {
    "free": (5000, 0, 5000, 5),
    "standard": (50000, 250, 100000, 10),
    "professional": (50000, 500, 3000000, 15),
    "enterprise": (50000, 1000, 5000000, 20),
    "ultimate": (50000, 2000, None, 25),
}
EDITION_ALIASES = {"starter": "standard", "zoho_one": "enterprise",
                   "zohoone": "enterprise", "crm_plus": "ultimate",
                   "crmplus": "ultimate"}

API_VERSIONS = ("2", "2.1", "3", "4", "5", "6", "7", "8")

DEFAULT_SCOPE = ("ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.ALL,"
                 "ZohoCRM.org.ALL,ZohoCRM.notifications.ALL,ZohoCRM.coql.READ,"
                 "ZohoSearch.securesearch.READ")

# Name -> (default, one-line meaning). Types are taken from the defaults;
# a default of None accepts a number or null.
SETTINGS = {
    "token_ttl": (3600, "access token lifetime in seconds"),
    "code_ttl": (180, "grant code lifetime in seconds"),
    "codes_per_window": (10, "grant codes per client per 10 minutes"),
    "refresh_limit": (10, "refreshes per refresh token per window"),
    "refresh_window": (600, "the refresh-limit window in seconds"),
    "max_live_tokens": (15, "live access tokens per refresh token"),
    "max_refresh_tokens": (20, "refresh tokens per user per client"),
    "accept_bearer": (False, "also accept 'Authorization: Bearer <tok>'"),
    "check_scopes": (True, "answer OAUTH_SCOPE_MISMATCH on missing scopes"),
    "ims_inclusive": (True,
                      "If-Modified-Since also returns records modified at "
                      "exactly that second (false: strictly after)"),
    "max_per_page": (200, "largest per_page"),
    "max_fields": (50, "most API names in 'fields'"),
    "fields_required_from": (3, "first API version that requires 'fields'"),
    "discrete_limit": (2000, "page*per_page wall for page-based paging"),
    "page_token_ttl": (86400, "page_token lifetime in seconds"),
    "page_token_cap": (100000, "records reachable with page_token"),
    "max_write_records": (100, "records per insert/update/upsert/delete"),
    "all_failed_status": (400, "HTTP status when every record failed"),
    "missing_id_status": (204,
                          "GET /{module}/{id} for an unknown id: 204, or 400 "
                          "for INVALID_DATA"),
    "search_cap": (2000, "search results reachable before LIMIT_REACHED"),
    "search_max_criteria": (10, "criteria per search"),
    "search_lag": (0, "seconds a written record stays invisible to search"),
    "coql_max_limit": (2000, "largest COQL LIMIT (v3: 200)"),
    "coql_max_offset": (10000, "largest COQL OFFSET+LIMIT"),
    "coql_require_where": (False, "COQL without WHERE is a syntax error"),
    "watch_default_expiry": (3600, "channel lifetime when none or too long"),
    "watch_max_expiry": (86400, "longest channel_expiry accepted"),
    "watch_batch_ms": (0, "merge callbacks of one channel for this long"),
    "watch_timeout": (5.0, "seconds to wait for a notify_url answer"),
    "edition": ("enterprise", "edition of orgs whose clients name none"),
    "credits": (None, "credit budget override for every org"),
    "concurrency": (None, "concurrency override for every app"),
    "heavy_concurrency": (10, "sub-concurrency of heavy calls"),
    "rate_limit_code": ("TOO_MANY_REQUESTS", "body code of a 429"),
    "retry_after": (None, "seconds to send in Retry-After on 429, or none"),
    "credits_header": (False,
                       "send X-API-CREDITS-REMAINING once half is used"),
    "cost_default": (1, "credits per ordinary call"),
    "cost_convert": (5, "credits per lead conversion"),
    "cost_write_per": (10, "a write costs one credit per this many records"),
    "lead_company_mandatory": (False, "Leads need Company"),
    "deal_closing_date_mandatory": (True, "Deals need Closing_Date"),
    "max_body_bytes": (16 * 1024 * 1024, "largest request body"),
    "log_bodies": (2000, "characters of API request bodies kept in calls"),
    "max_calls_kept": (100000, "calls kept for GET /_sim/calls"),
}


class Config:
    """Current settings plus the startup values that reset restores."""

    def __init__(self, overrides=None):
        self._startup = {k: v[0] for k, v in SETTINGS.items()}
        self.values = {}
        if overrides:
            self._startup.update(self._checked(overrides))
        self.reset()

    def reset(self):
        """Go back to the startup values."""
        self.values = copy.deepcopy(self._startup)

    def update(self, changes):
        """Apply ``changes`` (a dict); raise ValueError on a bad key/type."""
        self.values.update(self._checked(changes))

    def __getattr__(self, name):
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    @staticmethod
    def _checked(changes):
        out = {}
        for key, value in changes.items():
            if key not in SETTINGS:
                raise ValueError("unknown setting %r" % key)
            out[key] = coerce(key, value)
        return out


def coerce(key, value):
    """Convert ``value`` (maybe a command-line string) to the key's type."""
    default = SETTINGS[key][0]
    if isinstance(value, str) and not isinstance(default, str):
        value = _from_text(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError("%s must be true or false" % key)
        return value
    if isinstance(default, (int, float)) or default is None:
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("%s must be a number" % key)
        return type(default)(value) if default is not None else value
    if not isinstance(value, str):
        raise ValueError("%s must be a string" % key)
    return value


def _from_text(text):
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "none", ""):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def edition_name(name):
    """Return the canonical edition name or raise ValueError."""
    key = (name or "").strip().lower().replace(" ", "_")
    key = EDITION_ALIASES.get(key, key)
    if key not in EDITIONS:
        raise ValueError("unknown edition %r" % name)
    return key


def edition_budget(edition, users):
    """Daily credits for an edition with ``users`` users."""
    base, per_user, cap, _ = EDITIONS[edition_name(edition)]
    total = base + per_user * users
    return total if cap is None else min(total, cap)


def edition_concurrency(edition):
    """Simultaneous calls allowed per app for an edition."""
    return EDITIONS[edition_name(edition)][3]
