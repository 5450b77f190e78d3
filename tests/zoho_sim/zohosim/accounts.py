"""The accounts server of each data centre: token, revoke, authorize.

Token answers are HTTP 200 whether they succeed or not, as Zoho's are.
``GET /oauth/v2/auth`` approves at once (there is no user to ask) and
redirects to ``redirect_uri`` with a grant code, ``location`` and
``accounts-server``, or answers the same as JSON without a redirect_uri.
"""
import urllib.parse

from . import config as cfg
from . import errors
from .api import inject_delay, inject_faults
from .messages import Reply


def handle(sim, call, parts):
    """Serve ``/<dc>/accounts/...``; ``parts`` follow ``accounts``."""
    path = "/".join(p for p in parts if p)
    if path == "oauth/v2/token":
        return _token(sim, call)
    if path == "oauth/v2/token/revoke":
        with sim.lock:
            return Reply(200, sim.auth.revoke(call.dc, call.form()))
    if path == "oauth/v2/auth" and call.method == "GET":
        return _authorize(sim, call)
    if path == "oauth/serverinfo" and call.method == "GET":
        return Reply(200, {"result": "success", "locations": {
            dc: sim.accounts_url(dc) for dc in cfg.DATA_CENTRES}})
    raise errors.invalid_url()


def _token(sim, call):
    if call.method != "POST":
        return Reply(200, {"error": "invalid_request"})
    inject_faults(sim, "token")
    inject_delay(sim, "token")
    params = call.form()
    with sim.lock:
        body = sim.auth.token_endpoint(call.dc, params, sim.clock.now(),
                                       sim.api_domain(call.dc))
    call.log_extra = {"grant_type": params.get("grant_type"),
                      "client_id": params.get("client_id"),
                      "error": body.get("error")}
    return Reply(200, body)


def _authorize(sim, call):
    params = call.query
    with sim.lock:
        client = sim.auth.clients.get(params.get("client_id", ""))
        if client is None:
            return Reply(200, {"error": "invalid_client"})
        offline = params.get("access_type", "online") == "offline"
        code = sim.auth.mint_code(client, params.get("scope"), offline,
                                  params.get("redirect_uri"),
                                  sim.clock.now())
    answer = {"location": client.dc,
              "accounts-server": sim.accounts_url(client.dc)}
    if code is None:
        answer["error"] = "access_denied"
    else:
        answer["code"] = code.code
    if params.get("state") is not None:
        answer["state"] = params["state"]
    redirect = params.get("redirect_uri")
    if not redirect:
        return Reply(200, answer)
    joiner = "&" if "?" in redirect else "?"
    location = redirect + joiner + urllib.parse.urlencode(answer)
    return Reply(302, None, {"Location": location})
