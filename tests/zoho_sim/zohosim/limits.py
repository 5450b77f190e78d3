"""API credits and concurrency, per organisation and per app.

Credits are counted in a rolling 24-hour window per org; the budget follows
the org's edition and user count unless overridden. Concurrency counts calls
in flight per app (client id) within an org, with a smaller sub-limit for
heavy calls. A breach raises a 429 whose body code is configurable.
Callers hold the simulator's lock.
"""
import collections

from . import config as cfg
from . import errors

DAY = 86400


class Org:
    """Usage of one organisation."""

    def __init__(self, name, edition):
        self.name = name
        self.edition = edition
        self.window = collections.deque()
        self.used = 0
        self.credits = None
        self.concurrency = None
        self.heavy_concurrency = None
        self.inflight = collections.Counter()
        self.heavy_inflight = collections.Counter()
        self.rejected = collections.Counter()

    def prune(self, now):
        """Drop credits spent more than 24 hours ago."""
        while self.window and self.window[0][0] <= now - DAY:
            self.used -= self.window.popleft()[1]


class Ticket:
    """Proof of admission; give it back with :meth:`Limits.release`."""

    def __init__(self, org, app, heavy):
        self.org = org
        self.app = app
        self.heavy = heavy


class Limits:
    """Credit and concurrency accounting for every org."""

    def __init__(self, config, user_count):
        self.config = config
        self.user_count = user_count
        self.orgs = {}

    def org(self, name, edition=None):
        """Return (creating on first use) the usage record of an org."""
        found = self.orgs.get(name)
        if found is None:
            found = Org(name, cfg.edition_name(edition or
                                               self.config.edition))
            self.orgs[name] = found
        return found

    def budget(self, org):
        """The org's credit budget for 24 hours."""
        if org.credits is not None:
            return org.credits
        if self.config.credits is not None:
            return int(self.config.credits)
        return cfg.edition_budget(org.edition, self.user_count)

    def concurrency(self, org):
        """Calls one app may have in flight."""
        if org.concurrency is not None:
            return org.concurrency
        if self.config.concurrency is not None:
            return int(self.config.concurrency)
        return cfg.edition_concurrency(org.edition)

    def heavy_limit(self, org):
        """Heavy calls one app may have in flight."""
        if org.heavy_concurrency is not None:
            return org.heavy_concurrency
        return int(self.config.heavy_concurrency)

    def admit(self, org, app, cost, heavy, now):
        """Take a concurrency slot and spend credits, or raise a 429."""
        if org.inflight[app] >= self.concurrency(org):
            org.rejected["concurrency"] += 1
            raise self.too_many("concurrency", self.concurrency(org))
        if heavy and org.heavy_inflight[app] >= self.heavy_limit(org):
            org.rejected["concurrency"] += 1
            raise self.too_many("concurrency", self.heavy_limit(org))
        org.prune(now)
        if org.used + cost > self.budget(org):
            org.rejected["credits"] += 1
            raise self.too_many("credits", self.budget(org))
        org.window.append((now, cost))
        org.used += cost
        org.inflight[app] += 1
        if heavy:
            org.heavy_inflight[app] += 1
        return Ticket(org, app, heavy)

    @staticmethod
    def release(ticket):
        """Give back the slot a call held."""
        ticket.org.inflight[ticket.app] -= 1
        if ticket.heavy:
            ticket.org.heavy_inflight[ticket.app] -= 1

    def remaining(self, org, now):
        """Credits left in the current window."""
        org.prune(now)
        return self.budget(org) - org.used

    def too_many(self, reason, limit):
        """The 429 error for a breached limit."""
        headers = {}
        if self.config.retry_after is not None:
            headers["Retry-After"] = str(int(self.config.retry_after))
        if reason == "credits":
            message = "The API credit limit of the organization is exceeded"
        else:
            message = "The number of concurrent requests exceeded the limit"
        return errors.ApiError(429, self.config.rate_limit_code, message,
                               {"limit_type": reason, "limit": limit},
                               headers=headers)

    def describe(self, now):
        """Usage of every org, for GET /_sim/limits."""
        out = {}
        for org in self.orgs.values():
            org.prune(now)
            out[org.name] = {
                "edition": org.edition, "credits_budget": self.budget(org),
                "credits_used": org.used,
                "concurrency": self.concurrency(org),
                "heavy_concurrency": self.heavy_limit(org),
                "in_flight": sum(org.inflight.values()),
                "rejected": dict(org.rejected)}
        return out
