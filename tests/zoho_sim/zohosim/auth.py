"""OAuth 2.0 as Zoho's accounts servers do it, bound to data centres.

Clients are registered in one data centre; their grant codes, refresh tokens
and access tokens work only there. The token endpoint always answers HTTP 200
and reports failures in an ``error`` key. Callers hold the simulator's lock
and pass the simulator's time in.
"""
import collections
import hashlib
import secrets

from . import config as cfg
from . import errors

ACCESS_DENIED = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. "
                         "Please try again after some time.",
    "status": "failure",
}


def new_token():
    """Return a fresh token shaped like Zoho's: 1000.<32 hex>.<32 hex>."""
    return "1000.%s.%s" % (secrets.token_hex(16), secrets.token_hex(16))


def seeded_token(label):
    """Return a stable token derived from ``label`` (for default clients)."""
    digest = hashlib.sha256(label.encode()).hexdigest()
    return "1000.%s.%s" % (digest[:32], digest[32:])


def default_clients():
    """The clients known when no --clients file is given.

    One demo client in the EU and one client per data centre, each with one
    refresh token and the default edition; README.md lists the values.
    """
    out = [{"client_id": "1000.DEMO", "client_secret": "demo-secret",
            "refresh_token": seeded_token("referee-demo-eu"), "dc": "eu"}]
    for dc in cfg.DATA_CENTRES:
        out.append({"client_id": "1000.SIM" + dc.upper(),
                    "client_secret": "sim-secret-" + dc,
                    "refresh_token": seeded_token("referee-sim-" + dc),
                    "dc": dc})
    return out


class Client:
    """A registered OAuth client (an app in Zoho's API console)."""

    def __init__(self, spec, default_edition):
        self.client_id = str(spec["client_id"])
        self.secret = str(spec.get("client_secret", ""))
        self.dc = str(spec.get("dc", "us")).lower()
        if self.dc not in cfg.DATA_CENTRES:
            raise ValueError("unknown dc %r" % self.dc)
        self.edition = cfg.edition_name(spec.get("edition") or
                                        default_edition)
        self.org = str(spec.get("org", "default"))
        self.scope = _scope_list(spec.get("scope") or cfg.DEFAULT_SCOPE)
        self.user_id = spec.get("user_id")

    def describe(self):
        """Return the registry entry for the control API."""
        return {"client_id": self.client_id, "client_secret": self.secret,
                "dc": self.dc, "edition": self.edition, "org": self.org,
                "scope": ",".join(self.scope)}


class RefreshToken:
    """A refresh token with its refresh history and live access tokens."""

    def __init__(self, token, client, scope, created, user_id):
        self.token = token
        self.client = client
        self.scope = scope
        self.created = created
        self.user_id = user_id
        self.refreshes = collections.deque()
        self.live = collections.deque()


class AccessToken:
    """An access token and what it may do until when."""

    def __init__(self, token, client, scope, expires, refresh):
        self.token = token
        self.client = client
        self.scope = scope
        self.expires = expires
        self.refresh = refresh


class GrantCode:
    """A one-time authorization code."""

    def __init__(self, code, client, scope, offline, redirect_uri, expires):
        self.code = code
        self.client = client
        self.scope = scope
        self.offline = offline
        self.redirect_uri = redirect_uri
        self.expires = expires


def _scope_list(value):
    if isinstance(value, (list, tuple)):
        return [str(s) for s in value]
    return [s for s in str(value).replace(" ", ",").split(",") if s]


class Auth:
    """Clients, codes and tokens of every data centre."""

    def __init__(self, config, faults):
        self.config = config
        self.faults = faults
        self.clients = {}
        self.refresh_tokens = {}
        self.access_tokens = {}
        self.codes = {}
        self.code_times = collections.defaultdict(collections.deque)
        self.counters = collections.Counter()

    def seed(self, specs):
        """Register clients and their refresh tokens from dicts."""
        for spec in specs:
            client = Client(spec, self.config.edition)
            self.clients[client.client_id] = client
            tokens = list(spec.get("refresh_tokens") or [])
            if spec.get("refresh_token"):
                tokens.append(spec["refresh_token"])
            for token in tokens:
                self.refresh_tokens[token] = RefreshToken(
                    token, client, list(client.scope), 0.0, client.user_id)

    # Token endpoint ------------------------------------------------------

    def token_endpoint(self, dc, params, now, api_domain):
        """Answer POST {accounts}/oauth/v2/token; the body for HTTP 200."""
        self.counters["token_requests"] += 1
        grant = params.get("grant_type")
        client = self.clients.get(params.get("client_id", ""))
        if client is None or client.dc != dc:
            return self._fail("invalid_client")
        if params.get("client_secret") != client.secret:
            return self._fail("invalid_client_secret")
        if grant == "refresh_token":
            return self._refresh(client, params, now, api_domain)
        if grant == "authorization_code":
            return self._exchange(client, params, now, api_domain)
        return self._fail("unsupported_grant_type")

    def _fail(self, error):
        self.counters["token_errors"] += 1
        return {"error": error}

    def _refresh(self, client, params, now, api_domain):
        refresh = self.refresh_tokens.get(params.get("refresh_token", ""))
        if refresh is None or refresh.client is not client:
            return self._fail("invalid_code")
        window = self.config.refresh_window
        while refresh.refreshes and refresh.refreshes[0] <= now - window:
            refresh.refreshes.popleft()
        if len(refresh.refreshes) >= self.config.refresh_limit:
            self.counters["access_denied"] += 1
            return dict(ACCESS_DENIED)
        forced = self.faults.take("token_error", "token")
        if forced is not None:
            return self._fail(forced.get("error", "invalid_code"))
        refresh.refreshes.append(now)
        self.counters["refreshes"] += 1
        access = self._mint(client, refresh.scope, now, refresh)
        return self._grant_body(access, api_domain)

    def _exchange(self, client, params, now, api_domain):
        grant = self.codes.pop(params.get("code", ""), None)
        if grant is None or grant.client is not client or grant.expires <= now:
            return self._fail("invalid_code")
        redirect = params.get("redirect_uri")
        if grant.redirect_uri and redirect and redirect != grant.redirect_uri:
            return self._fail("invalid_redirect_uri")
        refresh = None
        if grant.offline:
            refresh = self._new_refresh(client, grant.scope, now)
        self.counters["code_exchanges"] += 1
        access = self._mint(client, grant.scope, now, refresh)
        body = self._grant_body(access, api_domain)
        if refresh is not None:
            body["refresh_token"] = refresh.token
        return body

    def _new_refresh(self, client, scope, now):
        """Issue a refresh token, dropping the oldest past the cap."""
        mine = [r for r in self.refresh_tokens.values()
                if r.client is client and r.user_id == client.user_id]
        mine.sort(key=lambda r: r.created)
        while len(mine) >= self.config.max_refresh_tokens:
            self.revoke_refresh(mine.pop(0).token)
        refresh = RefreshToken(new_token(), client, scope, now,
                               client.user_id)
        self.refresh_tokens[refresh.token] = refresh
        return refresh

    def _mint(self, client, scope, now, refresh):
        """Issue an access token, evicting the oldest live one past 15."""
        access = AccessToken(new_token(), client, scope,
                             now + self.config.token_ttl, refresh)
        if refresh is not None:
            live = refresh.live
            while live and (live[0].expires <= now or
                            live[0].token not in self.access_tokens):
                live.popleft()
            while len(live) >= self.config.max_live_tokens:
                evicted = live.popleft()
                self.access_tokens.pop(evicted.token, None)
                self.counters["evictions"] += 1
            live.append(access)
        self.access_tokens[access.token] = access
        self.counters["access_tokens_issued"] += 1
        return access

    def _grant_body(self, access, api_domain):
        body = {"access_token": access.token,
                "scope": " ".join(access.scope),
                "api_domain": api_domain, "token_type": "Bearer",
                "expires_in": self.config.token_ttl}
        if self.faults.take("refresh_missing_expires_in", "token") is not None:
            del body["expires_in"]
        return body

    def revoke(self, dc, params):
        """Answer POST {accounts}/oauth/v2/token/revoke."""
        refresh = self.refresh_tokens.get(params.get("token", ""))
        if refresh is None or refresh.client.dc != dc:
            return {"error": "invalid_token"}
        self.revoke_refresh(refresh.token)
        return {"status": "success"}

    def revoke_refresh(self, token):
        """Delete a refresh token and every access token it issued."""
        refresh = self.refresh_tokens.pop(token, None)
        if refresh is not None:
            for access in refresh.live:
                self.access_tokens.pop(access.token, None)

    # Grant codes -------------------------------------------------------

    def mint_code(self, client, scope, offline, redirect_uri, now,
                  limited=True):
        """Issue a grant code; None when the client asked too often."""
        times = self.code_times[client.client_id]
        while times and times[0] <= now - 600:
            times.popleft()
        if limited and len(times) >= self.config.codes_per_window:
            return None
        times.append(now)
        code = GrantCode(new_token(), client,
                         _scope_list(scope) if scope else list(client.scope),
                         offline, redirect_uri, now + self.config.code_ttl)
        self.codes[code.code] = code
        return code

    # Checking API calls ----------------------------------------------------

    def authenticate(self, dc, header, now):
        """Return the AccessToken of an Authorization header or raise."""
        if not header:
            raise errors.authentication_failure()
        scheme, _, token = header.strip().partition(" ")
        allowed = ("Zoho-oauthtoken", "Bearer") if \
            self.config.accept_bearer else ("Zoho-oauthtoken",)
        if scheme not in allowed or not token.strip():
            raise errors.authentication_failure()
        access = self.access_tokens.get(token.strip())
        if access is None or access.client.dc != dc:
            self.counters["invalid_token"] += 1
            raise errors.invalid_token()
        if access.expires <= now:
            self.access_tokens.pop(access.token, None)
            self.counters["invalid_token"] += 1
            raise errors.invalid_token()
        return access

    def check_scope(self, access, needs):
        """Raise OAUTH_SCOPE_MISMATCH unless a scope covers ``needs``.

        ``needs`` is (service, resource, operation, sub-resource), e.g.
        ("ZohoCRM", "modules", "READ", "leads").
        """
        if not self.config.check_scopes:
            return
        for scope in access.scope:
            if scope_covers(scope, needs):
                return
        raise errors.scope_mismatch()

    def invalidate_all(self):
        """Forget every access token (refresh tokens stay valid)."""
        count = len(self.access_tokens)
        self.access_tokens.clear()
        for refresh in self.refresh_tokens.values():
            refresh.live.clear()
        return count

    def describe_tokens(self, now):
        """Per refresh token: live access tokens and recent refreshes."""
        out = []
        for refresh in self.refresh_tokens.values():
            live = [a for a in refresh.live
                    if a.expires > now and a.token in self.access_tokens]
            recent = [t for t in refresh.refreshes
                      if t > now - self.config.refresh_window]
            out.append({"client_id": refresh.client.client_id,
                        "dc": refresh.client.dc,
                        "refresh_token": refresh.token,
                        "live_access_tokens": len(live),
                        "refreshes_in_window": len(recent)})
        return out


OPERATIONS = {"ALL", "READ", "CREATE", "UPDATE", "DELETE", "WRITE"}


def scope_covers(scope, needs):
    """True if one scope string grants the needed access.

    Accepted forms: ``Service.resource.OP`` and
    ``Service.resource.subresource.OP``, where OP is ALL, READ, CREATE,
    UPDATE, DELETE or WRITE (WRITE covers CREATE, UPDATE and DELETE).
    """
    service, resource, operation, sub = needs
    parts = scope.split(".")
    if len(parts) < 3 or parts[0].lower() != service.lower():
        return False
    if parts[1].lower() != resource.lower():
        return False
    op = parts[-1].upper()
    if len(parts) == 4 and (sub is None or parts[2].lower() != sub.lower()):
        return False
    if len(parts) > 4 or op not in OPERATIONS:
        return False
    if op == "ALL" or op == operation:
        return True
    return op == "WRITE" and operation in ("CREATE", "UPDATE", "DELETE")
