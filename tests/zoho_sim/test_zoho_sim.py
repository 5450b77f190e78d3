"""Tests of the Zoho CRM simulator, run as ``python3 -m unittest -v
test_zoho_sim`` from this folder. They start the simulator in-process on a
free 127.0.0.1 port (plus one run of the command-line entry point) and talk
to it over HTTP with the standard library only.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from zohosim import config as cfg  # noqa: E402
from zohosim import server as simserver  # noqa: E402
from zohosim import ztime  # noqa: E402
from zohosim.sim import Sim  # noqa: E402

DATA = os.environ.get("ZOHO_SIM_DATA") or os.path.normpath(
    os.path.join(HERE, "..", "..", "data", "zoho-sample"))
START = "2027-03-01T09:00:00+00:00"
TOKEN_RE = re.compile(r"^1000\.[0-9a-f]{32}\.[0-9a-f]{32}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
INFO_KEYS = {"per_page", "count", "page", "sort_by", "sort_order",
             "more_records", "next_page_token", "previous_page_token",
             "page_token_expiry"}

SERVER = None


def setUpModule():
    global SERVER
    if not os.path.isdir(DATA):
        raise RuntimeError("sample data not found at %s (set ZOHO_SIM_DATA)"
                           % DATA)
    sim = Sim(DATA, cfg.Config(), start=ztime.parse_loose(START),
              frozen=True)
    SERVER = simserver.start(sim)


def tearDownModule():
    SERVER.shutdown()
    SERVER.server_close()
    SERVER.sim.watch.stop()


class Answer:
    """Status, headers, raw body and parsed JSON of one response."""

    def __init__(self, response, raw):
        self.status = response.status
        self.headers = response.headers
        self.raw = raw
        self.json = json.loads(raw) if raw else None


def request(method, path, body=None, headers=None, form=None):
    """One HTTP request to the simulator; returns an Answer."""
    conn = http.client.HTTPConnection("127.0.0.1", SERVER.server_address[1],
                                      timeout=30)
    sent = dict(headers or {})
    if form is not None:
        body = urllib.parse.urlencode(form)
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
        sent["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Answer(response, response.read())
    finally:
        conn.close()


def control(method, route, body=None):
    """Call the control API and return its JSON."""
    answer = request(method, "/_sim/" + route, body)
    if answer.status != 200:
        raise AssertionError("control %s %s: %s %s" % (
            method, route, answer.status, answer.raw))
    return answer.json


class SimTestCase(unittest.TestCase):
    """Resets the simulator before each test and offers shortcuts."""

    def setUp(self):
        control("POST", "reset")
        clients = control("GET", "clients")["clients"]
        self.clients = {c["client_id"]: c for c in clients}
        self.demo = self.clients["1000.DEMO"]

    def refresh(self, client=None, dc=None, in_query=False):
        """Run the refresh_token grant; return the answer."""
        client = client or self.demo
        params = {"grant_type": "refresh_token",
                  "client_id": client["client_id"],
                  "client_secret": client["client_secret"],
                  "refresh_token": client["refresh_tokens"][0]}
        path = "/%s/accounts/oauth/v2/token" % (dc or client["dc"])
        if in_query:
            return request("POST", path + "?" + urllib.parse.urlencode(
                params))
        return request("POST", path, form=params)

    def token(self, client=None):
        """A fresh access token of the demo client."""
        answer = self.refresh(client)
        self.assertEqual(answer.status, 200)
        return answer.json["access_token"]

    def api(self, method, path, token=None, body=None, headers=None,
            dc="eu", version="v8"):
        """Call the REST API of a data centre with a token."""
        sent = dict(headers or {})
        sent["Authorization"] = "Zoho-oauthtoken " + (token or self.tok)
        url = "/%s/api/crm/%s/%s" % (dc, version, path)
        return request(method, url, body, sent)

    @property
    def tok(self):
        """A token cached per test."""
        if not hasattr(self, "_tok"):
            self._tok = self.token()
        return self._tok

    def assertError(self, answer, status, code):
        """The answer is a Zoho error with this status and code."""
        self.assertEqual(answer.status, status, answer.raw)
        self.assertEqual(answer.json["code"], code, answer.raw)
        self.assertEqual(answer.json["status"], "error")
        self.assertEqual(set(answer.json),
                         {"code", "details", "message", "status"})


class TestTokens(SimTestCase):

    def test_refresh_grant_success_shape(self):
        answer = self.refresh()
        self.assertEqual(answer.status, 200)
        body = answer.json
        self.assertRegex(body["access_token"], TOKEN_RE)
        self.assertEqual(body["api_domain"],
                         SERVER.sim.base_url + "/eu/api")
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3600)
        self.assertNotIn("refresh_token", body)
        self.assertTrue(answer.headers["Content-Type"].startswith(
            "application/json"))

    def test_refresh_grant_params_in_query(self):
        answer = self.refresh(in_query=True)
        self.assertEqual(answer.status, 200)
        self.assertRegex(answer.json["access_token"], TOKEN_RE)

    def test_token_errors_are_http_200(self):
        base = {"grant_type": "refresh_token", "client_id": "1000.DEMO",
                "client_secret": "demo-secret",
                "refresh_token": self.demo["refresh_tokens"][0]}
        cases = [({"client_id": "1000.NOPE"}, "invalid_client"),
                 ({"client_secret": "wrong"}, "invalid_client_secret"),
                 ({"refresh_token": "1000.aa.bb"}, "invalid_code"),
                 ({"grant_type": "password"}, "unsupported_grant_type")]
        for change, error in cases:
            answer = request("POST", "/eu/accounts/oauth/v2/token",
                             form=dict(base, **change))
            self.assertEqual(answer.status, 200)
            self.assertEqual(answer.json, {"error": error})

    def test_client_bound_to_its_data_centre(self):
        answer = self.refresh(dc="us")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json, {"error": "invalid_client"})

    def test_token_bound_to_its_data_centre(self):
        answer = self.api("GET", "Contacts?fields=Email", dc="us")
        self.assertError(answer, 401, "INVALID_TOKEN")
        self.assertEqual(answer.json["message"], "invalid oauth token")
        us = self.clients["1000.SIMUS"]
        answer = self.api("GET", "Contacts?fields=Email&per_page=1",
                          token=self.token(us), dc="us")
        self.assertEqual(answer.status, 200)

    def test_refresh_quota_ten_per_ten_minutes(self):
        for _ in range(10):
            self.assertIn("access_token", self.refresh().json)
        denied = self.refresh()
        self.assertEqual(denied.status, 200)
        self.assertEqual(denied.json["error"], "Access Denied")
        self.assertNotIn("access_token", denied.json)
        control("POST", "clock", {"advance": 601})
        self.assertIn("access_token", self.refresh().json)
        self.assertEqual(control("GET", "counters")["access_denied"], 1)

    def test_sixteenth_token_evicts_the_oldest(self):
        tokens = [self.token() for _ in range(10)]
        control("POST", "clock", {"advance": 601})
        tokens += [self.token() for _ in range(6)]
        first = self.api("GET", "Contacts?fields=Email&per_page=1",
                         token=tokens[0])
        self.assertError(first, 401, "INVALID_TOKEN")
        second = self.api("GET", "Contacts?fields=Email&per_page=1",
                          token=tokens[1])
        self.assertEqual(second.status, 200)
        live = control("GET", "tokens")["refresh_tokens"]
        demo = [t for t in live if t["client_id"] == "1000.DEMO"][0]
        self.assertEqual(demo["live_access_tokens"], 15)

    def test_token_expires_after_an_hour_of_sim_time(self):
        token = self.token()
        control("POST", "clock", {"advance": 3599})
        self.assertEqual(self.api("GET", "Contacts?fields=Email&per_page=1",
                                  token=token).status, 200)
        control("POST", "clock", {"advance": 1})
        self.assertError(self.api("GET", "Contacts?fields=Email",
                                  token=token), 401, "INVALID_TOKEN")

    def test_authorization_code_grant(self):
        code = control("POST", "grant", {"client_id": "1000.DEMO",
                                         "access_type": "offline"})["code"]
        form = {"grant_type": "authorization_code", "client_id": "1000.DEMO",
                "client_secret": "demo-secret", "code": code,
                "redirect_uri": "http://127.0.0.1/cb"}
        first = request("POST", "/eu/accounts/oauth/v2/token", form=form)
        self.assertRegex(first.json["refresh_token"], TOKEN_RE)
        self.assertRegex(first.json["access_token"], TOKEN_RE)
        self.assertEqual(first.json["expires_in"], 3600)
        again = request("POST", "/eu/accounts/oauth/v2/token", form=form)
        self.assertEqual(again.json, {"error": "invalid_code"})
        client = dict(self.demo, refresh_tokens=[first.json["refresh_token"]])
        self.assertIn("access_token", self.refresh(client).json)

    def test_grant_code_expires(self):
        code = control("POST", "grant", {"client_id": "1000.DEMO"})["code"]
        control("POST", "clock", {"advance": 181})
        answer = request("POST", "/eu/accounts/oauth/v2/token", form={
            "grant_type": "authorization_code", "client_id": "1000.DEMO",
            "client_secret": "demo-secret", "code": code})
        self.assertEqual(answer.json, {"error": "invalid_code"})

    def test_authorize_redirects_with_code_and_location(self):
        query = urllib.parse.urlencode({
            "client_id": "1000.DEMO", "scope": "ZohoCRM.modules.ALL",
            "response_type": "code", "access_type": "offline",
            "redirect_uri": "http://127.0.0.1:9/cb", "state": "s1"})
        answer = request("GET", "/us/accounts/oauth/v2/auth?" + query)
        self.assertEqual(answer.status, 302)
        target = urllib.parse.urlsplit(answer.headers["Location"])
        params = dict(urllib.parse.parse_qsl(target.query))
        self.assertEqual(params["location"], "eu")
        self.assertEqual(params["accounts-server"],
                         SERVER.sim.base_url + "/eu/accounts")
        self.assertEqual(params["state"], "s1")
        self.assertRegex(params["code"], TOKEN_RE)

    def test_authorization_header_forms(self):
        path = "/eu/api/crm/v8/Contacts?fields=Email"
        self.assertError(request("GET", path), 401, "AUTHENTICATION_FAILURE")
        bearer = request("GET", path, headers={
            "Authorization": "Bearer " + self.tok})
        self.assertError(bearer, 401, "AUTHENTICATION_FAILURE")
        bogus = request("GET", path, headers={
            "Authorization": "Zoho-oauthtoken 1000.x.y"})
        self.assertError(bogus, 401, "INVALID_TOKEN")

    def test_scope_mismatch(self):
        control("POST", "clients", {"client_id": "1000.NARROW",
                                    "client_secret": "s", "dc": "eu",
                                    "refresh_token": "1000.%s.%s" % (
                                        "a" * 32, "b" * 32),
                                    "scope": "ZohoCRM.modules.leads.READ"})
        narrow = control("GET", "clients")["clients"]
        narrow = [c for c in narrow if c["client_id"] == "1000.NARROW"][0]
        token = self.token(narrow)
        self.assertEqual(self.api("GET", "Leads?fields=Email&per_page=1",
                                  token=token).status, 200)
        self.assertError(self.api("GET", "Contacts?fields=Email",
                                  token=token), 401, "OAUTH_SCOPE_MISMATCH")

    def test_revoke_kills_refresh_and_access_tokens(self):
        token = self.token()
        answer = request("POST", "/eu/accounts/oauth/v2/token/revoke",
                         form={"token": self.demo["refresh_tokens"][0]})
        self.assertEqual(answer.json, {"status": "success"})
        self.assertEqual(self.refresh().json, {"error": "invalid_code"})
        self.assertError(self.api("GET", "Contacts?fields=Email",
                                  token=token), 401, "INVALID_TOKEN")


class TestPaths(SimTestCase):

    def test_versions_modules_and_verbs(self):
        self.assertEqual(self.api("GET", "Contacts?fields=Email&per_page=1",
                                  version="v2.1").status, 200)
        self.assertError(self.api("GET", "Contacts?fields=Email",
                                  version="v9"), 404, "INVALID_URL_PATTERN")
        self.assertError(self.api("GET", "Contacts/search/more"), 404,
                         "INVALID_URL_PATTERN")
        self.assertError(self.api("GET", "Widgets?fields=Name"), 400,
                         "INVALID_MODULE")
        self.assertError(self.api("PATCH", "Contacts"), 400,
                         "INVALID_REQUEST_METHOD")
        self.assertError(request("GET", "/xx/api/crm/v8/Contacts"), 404,
                         "INVALID_URL_PATTERN")

    def test_malformed_requests_get_zoho_errors(self):
        bad_json = self.api("POST", "Leads", body="{not json")
        self.assertError(bad_json, 400, "INVALID_DATA")
        import socket
        with socket.create_connection(("127.0.0.1",
                                       SERVER.server_address[1])) as sock:
            sock.sendall(b"BROKEN\r\n\r\n")
            raw = _read_all(sock)
        self.assertTrue(raw.startswith("HTTP/1.1 400"), raw)
        self.assertIn('"status": "error"', raw)
        self.assertNotIn("Traceback", raw)
        with socket.create_connection(("127.0.0.1",
                                       SERVER.server_address[1])) as sock:
            sock.sendall(b"POST /eu/api/crm/v8/Leads HTTP/1.1\r\n"
                         b"Content-Length: lots\r\n\r\n")
            raw = _read_all(sock)
        self.assertTrue(raw.startswith("HTTP/1.1 400"), raw)
        self.assertIn('"code": "INVALID_DATA"', raw)

    def test_calls_log(self):
        start = control("GET", "calls")["next"]
        self.api("GET", "Contacts?fields=Email&per_page=1")
        calls = control("GET", "calls?since=%d" % start)["calls"]
        kinds = [(c["kind"], c["method"], c["status"], c["dc"])
                 for c in calls]
        self.assertEqual(kinds, [("accounts", "POST", 200, "eu"),
                                 ("api", "GET", 200, "eu")])
        self.assertEqual(calls[0]["grant_type"], "refresh_token")
        self.assertEqual(calls[1]["query"], "fields=Email&per_page=1")
        self.assertRegex(calls[1]["time"], TIME_RE)
        self.assertEqual(control("GET", "counters")["refreshes"], 1)


def _read_all(sock):
    """Read until the server closes the connection."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks).decode()
        chunks.append(chunk)


def _sample(name):
    """A JSON file of the sample data."""
    with open(os.path.join(DATA, name), encoding="utf-8") as handle:
        return json.load(handle)


class TestList(SimTestCase):

    def test_fields_required_from_v3(self):
        answer = self.api("GET", "Contacts")
        self.assertError(answer, 400, "REQUIRED_PARAM_MISSING")
        self.assertEqual(answer.json["details"], {"param_name": "fields"})
        old = self.api("GET", "Contacts?per_page=1", version="v2")
        self.assertEqual(old.status, 200)
        self.assertIn("Customer_Tier", old.json["data"][0])
        many = ",".join("F%d" % i for i in range(51))
        self.assertError(self.api("GET", "Contacts?fields=" + many), 400,
                         "LIMIT_EXCEEDED")

    def test_projection_and_info(self):
        answer = self.api("GET", "Contacts?fields=Email,NPS_Score&per_page=3")
        self.assertEqual(answer.status, 200)
        self.assertEqual(len(answer.json["data"]), 3)
        for row in answer.json["data"]:
            self.assertEqual(set(row), {"id", "Email", "NPS_Score"})
            self.assertRegex(row["id"], r"^\d{19}$")
        info = answer.json["info"]
        self.assertEqual(set(info), INFO_KEYS)
        self.assertEqual((info["per_page"], info["count"], info["page"],
                          info["sort_by"], info["sort_order"],
                          info["more_records"]),
                         (3, 3, 1, "id", "asc", True))
        self.assertIsNone(info["previous_page_token"])
        self.assertRegex(info["page_token_expiry"], TIME_RE)
        self.assertError(self.api("GET", "Contacts?fields=Email&per_page=201"),
                         400, "INVALID_DATA")

    def test_pagination_past_2000_with_page_token(self):
        control("POST", "records/Contacts", {"generate": {
            "count": 1000, "template": {"Last_Name": "Bulk {n}"}}})
        answer = self.api("GET", "Contacts?fields=Last_Name&page=11")
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.json, {
            "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "details": {"limit": 2000},
            "message": "You can only get the first 2000 records without "
                       "using page_token param", "status": "error"})
        seen, path, pages = [], "Contacts?fields=Last_Name&page=1", 0
        while path:
            answer = self.api("GET", path)
            self.assertEqual(answer.status, 200, answer.raw)
            seen += [r["id"] for r in answer.json["data"]]
            info, pages = answer.json["info"], pages + 1
            path = None
            if info["more_records"]:
                path = "Contacts?fields=Last_Name&page_token=" + \
                    info["next_page_token"]
        self.assertEqual(len(seen), 2500)
        self.assertEqual(len(set(seen)), 2500)
        self.assertEqual(seen, sorted(seen, key=int))
        self.assertEqual(pages, 13)
        self.assertEqual(answer.json["info"]["page"], 13)

    def test_page_and_page_token_together_rejected(self):
        info = self.api("GET", "Contacts?fields=Email").json["info"]
        both = self.api("GET", "Contacts?fields=Email&page=2&page_token=" +
                        info["next_page_token"])
        self.assertEqual(both.status, 400)
        self.assertEqual(both.json["status"], "error")
        bad = self.api("GET", "Contacts?fields=Email&page_token=abc")
        self.assertError(bad, 400, "INVALID_DATA")

    def test_sort_by_modified_time_desc(self):
        answer = self.api("GET", "Contacts?fields=Modified_Time&sort_by="
                          "Modified_Time&sort_order=desc&per_page=50")
        times = [ztime.parse_dt(r["Modified_Time"])
                 for r in answer.json["data"]]
        self.assertEqual(times, sorted(times, reverse=True))
        self.assertEqual(answer.json["info"]["sort_by"], "Modified_Time")
        self.assertError(self.api("GET", "Contacts?fields=Email&sort_by="
                                  "Email"), 400, "INVALID_DATA")

    def test_empty_list_is_204_with_no_body(self):
        answer = self.api("GET", "Contacts?fields=Email&ids=1234567890123")
        self.assertEqual(answer.status, 204)
        self.assertEqual(answer.raw, b"")

    def test_if_modified_since_304_and_boundary(self):
        stamp = "2027-02-01T00:00:00+05:30"
        control("POST", "records/Contacts", {
            "generate": {"count": 450, "template": {"Last_Name": "Same {n}"}},
            "modified_time": stamp})
        later = self.api("GET", "Contacts?fields=Email", headers={
            "If-Modified-Since": "2027-02-02T00:00:00+05:30"})
        self.assertEqual(later.status, 304)
        self.assertEqual(later.raw, b"")
        ids = []
        path = "Contacts?fields=Last_Name&sort_by=Modified_Time"
        answer = self.api("GET", path, headers={"If-Modified-Since": stamp})
        while True:
            self.assertEqual(answer.status, 200)
            ids += [r["id"] for r in answer.json["data"]]
            if not answer.json["info"]["more_records"]:
                break
            answer = self.api("GET", path + "&page_token=" +
                              answer.json["info"]["next_page_token"],
                              headers={"If-Modified-Since": stamp})
        self.assertEqual(len(ids), 450)
        control("POST", "config", {"ims_inclusive": False})
        exclusive = self.api("GET", "Contacts?fields=Email",
                             headers={"If-Modified-Since": stamp})
        self.assertEqual(exclusive.status, 304)
        malformed = self.api("GET", "Contacts?fields=Email", headers={
            "If-Modified-Since": "2027-02-01T00:00:00.000Z"})
        self.assertError(malformed, 400, "INVALID_DATA")

    def test_get_one_and_unknown_id(self):
        rid = self.api("GET", "Contacts?fields=Email&per_page=1") \
            .json["data"][0]["id"]
        one = self.api("GET", "Contacts/" + rid)
        self.assertEqual(one.json["data"][0]["id"], rid)
        self.assertEqual(self.api("GET", "Contacts/1111111111111111111")
                         .status, 204)


class TestWrites(SimTestCase):

    def test_insert_success_metadata(self):
        answer = self.api("POST", "Leads", body={
            "data": [{"Last_Name": "Okoro", "Email": "ada@x.example"}],
            "trigger": []})
        self.assertEqual(answer.status, 201)
        item = answer.json["data"][0]
        self.assertEqual((item["code"], item["status"], item["message"]),
                         ("SUCCESS", "success", "record added"))
        details = item["details"]
        self.assertRegex(details["id"], r"^\d{19}$")
        self.assertEqual(details["Created_Time"], "2027-03-01T14:30:00+05:30")
        self.assertEqual(details["Modified_Time"], details["Created_Time"])
        self.assertEqual(set(details["Created_By"]), {"name", "id"})
        stored = control("GET", "records/Leads/" + details["id"])
        self.assertTrue(stored["meta"]["api_created"])
        self.assertEqual(stored["data"]["Full_Name"], "Okoro")

    def test_update_bumps_modified_time(self):
        rid = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "A"}]}).json["data"][0]["details"]["id"]
        control("POST", "clock", {"advance": 65})
        answer = self.api("PUT", "Leads/" + rid, body={"data": [
            {"Lead_Status": "Contacted"}]})
        self.assertEqual(answer.status, 200)
        details = answer.json["data"][0]["details"]
        self.assertEqual(answer.json["data"][0]["message"], "record updated")
        self.assertEqual(details["Modified_Time"], "2027-03-01T14:31:05+05:30")
        self.assertEqual(details["Created_Time"], "2027-03-01T14:30:00+05:30")
        control("POST", "clock", {"advance": 5})
        same = self.api("PUT", "Leads", body={"data": [
            {"id": rid, "Lead_Status": "Contacted"}]})
        self.assertEqual(same.json["data"][0]["details"]["Modified_Time"],
                         "2027-03-01T14:31:10+05:30")

    def test_mixed_batch_is_207_in_input_order(self):
        answer = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "Good"}, {"Email": "no-name@x.example"},
            {"Last_Name": "Bad phone", "Phone": "call me"},
            {"Last_Name": "Too long " + "x" * 80}]})
        self.assertEqual(answer.status, 207)
        codes = [d["code"] for d in answer.json["data"]]
        self.assertEqual(codes, ["SUCCESS", "MANDATORY_NOT_FOUND",
                                 "INVALID_DATA", "INVALID_DATA"])
        self.assertEqual(answer.json["data"][1]["details"],
                         {"api_name": "Last_Name",
                          "json_path": "$.data[1].Last_Name"})
        self.assertEqual(answer.json["data"][2]["details"],
                         {"expected_data_type": "phone", "api_name": "Phone",
                          "json_path": "$.data[2].Phone"})
        self.assertEqual(answer.json["data"][3]["details"]["maximum_length"],
                         80)

    def test_all_failed_is_400(self):
        answer = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "X", "NPS_Score": 1, "Email_Opt_Out": "yes"}]})
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.json["data"][0]["details"]
                         ["expected_data_type"], "boolean")

    def test_more_than_100_records(self):
        answer = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "N%d" % i} for i in range(101)]})
        self.assertError(answer, 400, "LIMIT_EXCEEDED")
        self.assertEqual(answer.json["details"]["limit"], 100)

    def test_upsert_matches_email_case_insensitively(self):
        contact = self.api("GET", "Contacts?fields=Email&per_page=1") \
            .json["data"][0]
        answer = self.api("POST", "Contacts/upsert", body={"data": [
            {"Last_Name": "Changed", "Email": contact["Email"].upper()},
            {"Last_Name": "New", "Email": "brand.new@x.example"}]})
        self.assertEqual(answer.status, 201)
        first, second = answer.json["data"]
        self.assertEqual((first["action"], first["duplicate_field"],
                          first["details"]["id"]),
                         ("update", "Email", contact["id"]))
        self.assertEqual((second["action"], second["duplicate_field"]),
                         ("insert", None))
        again = self.api("POST", "Contacts/upsert", body={"data": [
            {"Last_Name": "New", "Email": "brand.new@x.example"}]})
        self.assertEqual(again.status, 200)
        self.assertEqual(again.json["data"][0]["details"]["id"],
                         second["details"]["id"])

    def test_upsert_duplicate_check_fields(self):
        contact = self.api("GET", "Contacts?fields=Email,Phone&per_page=1") \
            .json["data"][0]
        answer = self.api("POST", "Contacts/upsert", body={
            "data": [{"Last_Name": "P", "Phone": contact["Phone"],
                      "Email": "other@x.example"}],
            "duplicate_check_fields": ["Phone"]})
        item = answer.json["data"][0]
        self.assertEqual((item["action"], item["duplicate_field"]),
                         ("update", "Phone"))

    def test_duplicate_data_on_unique_field(self):
        control("POST", "fields/Contacts", {"fields": [
            {"api_name": "Referral_Code", "unique": True}]})
        first = self.api("POST", "Contacts", body={"data": [
            {"Last_Name": "A", "Referral_Code": "R-1"}]})
        self.assertEqual(first.status, 201)
        second = self.api("POST", "Contacts", body={"data": [
            {"Last_Name": "B", "Referral_Code": "r-1"}]})
        self.assertEqual(second.status, 400)
        item = second.json["data"][0]
        self.assertEqual(item["code"], "DUPLICATE_DATA")
        self.assertEqual(item["details"]["duplicate_record"]["id"],
                         first.json["data"][0]["details"]["id"])
        self.assertEqual(item["details"]["api_name"], "Referral_Code")

    def test_if_unmodified_since_gives_412(self):
        rid = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "A"}]}).json["data"][0]["details"]["id"]
        control("POST", "clock", {"advance": 10})
        self.api("PUT", "Leads/" + rid, body={"data": [{"City": "Pune"}]})
        stale = self.api("PUT", "Leads/" + rid, body={
            "data": [{"City": "Lyon"}]}, headers={
            "If-Unmodified-Since": "2027-03-01T14:30:05+05:30"})
        self.assertError(stale, 412, "ALREADY_MODIFIED")
        fresh = self.api("PUT", "Leads/" + rid, body={
            "data": [{"City": "Lyon"}]}, headers={
            "If-Unmodified-Since": "2027-03-01T14:30:10+05:30"})
        self.assertEqual(fresh.status, 200)

    def test_update_unknown_id_and_delete(self):
        answer = self.api("PUT", "Leads", body={"data": [
            {"id": "1234567890123456789", "City": "Pune"}]})
        self.assertEqual(answer.status, 400)
        self.assertEqual(answer.json["data"][0]["code"], "INVALID_DATA")
        rid = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "Gone"}]}).json["data"][0]["details"]["id"]
        deleted = self.api("DELETE", "Leads?ids=%s,1234567890123456789" % rid)
        self.assertEqual(deleted.status, 207)
        self.assertEqual(deleted.json["data"][0]["message"], "record deleted")
        listed = self.api("GET", "Leads/deleted")
        self.assertEqual(listed.json["data"][0]["id"], rid)


class TestSearch(SimTestCase):

    def search(self, criteria, extra=""):
        query = urllib.parse.urlencode({"criteria": criteria})
        return self.api("GET", "Leads/search?" + query + extra)

    def test_criteria_escaping(self):
        self.api("POST", "Leads", body={"data": [
            {"Last_Name": "Burns,B (Jr)", "Company": "Acme"}]})
        answer = self.search(r"(Last_Name:equals:Burns\,B \(Jr\))")
        self.assertEqual(answer.status, 200, answer.raw)
        self.assertEqual([r["Last_Name"] for r in answer.json["data"]],
                         ["Burns,B (Jr)"])
        unescaped = self.search("(Last_Name:equals:Burns,B (Jr))")
        self.assertEqual(unescaped.status, 400)

    def test_text_equals_behaves_like_contains(self):
        answer = self.search("((Company:equals:northwind)and"
                             "(Lead_Status:equals:Contacted))")
        self.assertEqual(answer.status, 200)
        for row in answer.json["data"]:
            self.assertEqual(row["Company"], "Northwind Dental")
            self.assertEqual(row["Lead_Status"], "Contacted")

    def test_too_many_criteria(self):
        parts = "and".join("(Last_Name:equals:a%d)" % i for i in range(11))
        self.assertError(self.search("(%s)" % parts), 400, "INVALID_QUERY")

    def test_no_match_is_204_and_email_word_variants(self):
        none = self.search("(Email:equals:nobody@nowhere.example)")
        self.assertEqual((none.status, none.raw), (204, b""))
        lead = self.api("GET", "Leads?fields=Email&per_page=1") \
            .json["data"][0]
        by_email = self.api("GET", "Leads/search?email=" +
                            urllib.parse.quote(lead["Email"].upper()))
        self.assertEqual([r["id"] for r in by_email.json["data"]],
                         [lead["id"]])
        self.assertError(self.api("GET", "Leads/search?word=a"), 400,
                         "INVALID_QUERY")

    def test_datetime_criteria_needs_encoded_plus(self):
        good = "(Created_Time:greater_than:2026-01-01T00:00:00+05:30)"
        self.assertEqual(self.search(good).status, 200)
        raw = "Leads/search?criteria=" + good.replace(":", "%3A")
        self.assertError(self.api("GET", raw), 400, "INVALID_QUERY")

    def test_count(self):
        total = self.api("GET", "Leads/actions/count").json["count"]
        self.assertEqual(total, 400)
        contacted = self.api("GET", "Leads/actions/count?criteria=" +
                             "(Lead_Status:equals:Contacted)").json["count"]
        leads = _sample("leads.json")
        self.assertEqual(contacted, sum(
            1 for r in leads if r["Lead_Status"] == "Contacted"))

    def test_search_cap_2000(self):
        self.assertError(self.api("GET", "Contacts/search?criteria=" +
                                  "(Last_Name:starts_with:a)&page=11"),
                         400, "LIMIT_REACHED")

    def test_old_version_has_only_equals_and_starts_with(self):
        answer = self.api("GET", "Leads/search?criteria=(Last_Name:in:Li)",
                          version="v2")
        self.assertError(answer, 400, "INVALID_QUERY")


class TestCoql(SimTestCase):

    def coql(self, query):
        return self.api("POST", "coql", body={"select_query": query})

    def test_lookup_column_and_in(self):
        answer = self.coql("select Deal_Name, Account_Name.Industry from "
                           "Deals where Stage in ('Closed Won', 'Closed "
                           "Lost') and Amount between 1000 and 2000")
        self.assertEqual(answer.status, 200, answer.raw)
        for row in answer.json["data"]:
            self.assertIn(row["Account_Name.Industry"],
                          ("Healthcare", "Retail", "Services",
                           "Manufacturing", "Education"))

    def test_select_where_order_limit(self):
        answer = self.coql("select Last_Name, Email, Account_Name from "
                           "Contacts where Customer_Tier = 'Gold' and "
                           "NPS_Score >= 9 order by Last_Name desc limit 5")
        self.assertEqual(answer.status, 200, answer.raw)
        data = answer.json["data"]
        self.assertEqual(len(data), 5)
        self.assertEqual(set(data[0]),
                         {"Last_Name", "Email", "Account_Name", "id"})
        self.assertEqual(set(data[0]["Account_Name"]), {"id"})
        names = [r["Last_Name"].lower() for r in data]
        self.assertEqual(names, sorted(names, reverse=True))
        self.assertTrue(answer.json["info"]["more_records"])

    def test_syntax_error_details(self):
        answer = self.coql("select Last_Name from Contacts where")
        self.assertError(answer, 400, "SYNTAX_ERROR")
        self.assertEqual(answer.json["details"],
                         {"near": "<end>", "line": 1, "column": 37})

    def test_empty_and_limits(self):
        empty = self.coql("select Email from Leads where Email = "
                          "'none@none.example'")
        self.assertEqual((empty.status, empty.raw), (204, b""))
        self.assertError(self.coql("select Email from Leads limit 2001"),
                         400, "LIMIT_EXCEEDED")
        self.assertError(self.coql("select Email from Leads limit 9999, "
                                   "10"), 400, "LIMIT_EXCEEDED")


class TestConvert(SimTestCase):

    def test_convert_lead(self):
        rid = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "Ito", "First_Name": "Aki", "Company": "Acme Ltd",
             "Email": "aki@acme.example"}]}).json["data"][0]["details"]["id"]
        answer = self.api("POST", "Leads/%s/actions/convert" % rid, body={
            "data": [{"overwrite": True, "Deals": {
                "Deal_Name": "Acme deal", "Stage": "Qualification",
                "Closing_Date": "2027-04-01", "Amount": 1200}}]})
        self.assertEqual(answer.status, 200, answer.raw)
        details = answer.json["data"][0]["details"]
        contact = self.api("GET", "Contacts/" + details["Contacts"]["id"])
        self.assertEqual(contact.json["data"][0]["Email"], "aki@acme.example")
        self.assertEqual(contact.json["data"][0]["Account_Name"]["name"],
                         "Acme Ltd")
        deal = self.api("GET", "Deals/" + details["Deals"]["id"])
        self.assertEqual(deal.json["data"][0]["Contact_Name"]["id"],
                         details["Contacts"]["id"])
        again = self.api("POST", "Leads/%s/actions/convert" % rid)
        self.assertEqual(again.status, 400)
        self.assertEqual(again.json["data"][0]["code"],
                         "ID_ALREADY_CONVERTED")
        lead = self.api("GET", "Leads/" + rid).json["data"][0]
        self.assertEqual(lead["Converted_Deal"]["id"], details["Deals"]["id"])
        self.assertEqual(lead["Converted_Contact"]["id"],
                         details["Contacts"]["id"])
        hidden = self.api("GET", "Leads?fields=Email&ids=" + rid)
        self.assertEqual(hidden.status, 204)
        shown = self.api("GET", "Leads?fields=Email&converted=true")
        self.assertEqual([r["id"] for r in shown.json["data"]], [rid])

    def test_convert_costs_five_credits(self):
        rid = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "C"}]}).json["data"][0]["details"]["id"]
        before = control("GET", "limits")["default"]["credits_used"]
        self.api("POST", "Leads/%s/actions/convert" % rid)
        after = control("GET", "limits")["default"]["credits_used"]
        self.assertEqual(after - before, 5)


class Receiver:
    """A local HTTP server collecting watch callbacks."""

    def __init__(self):
        self.bodies = []
        self.paths = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with outer.cond:
                    outer.bodies.append(body)
                    outer.paths.append(self.path)
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]

    def wait(self, count, timeout=5):
        """Wait for ``count`` callbacks; return them all."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.bodies) < count and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return list(self.bodies)

    def close(self):
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()


class TestWatch(SimTestCase):

    def setUp(self):
        super().setUp()
        self.receiver = Receiver()
        self.addCleanup(self.receiver.close)

    def subscribe(self, events, channel="1000000068001", **extra):
        entry = {"channel_id": channel, "events": events,
                 "notify_url": self.receiver.url + "?tenant=t1&x=2",
                 "token": "verify-me"}
        entry.update(extra)
        return self.api("POST", "actions/watch", body={"watch": [entry]})

    def test_subscribe_answer(self):
        answer = self.subscribe(["Contacts.edit", "Leads.all"])
        self.assertEqual(answer.status, 201, answer.raw)
        item = answer.json["watch"][0]
        self.assertEqual(item["code"], "SUCCESS")
        events = item["details"]["events"]
        self.assertEqual([e["resource_name"] for e in events],
                         ["Contacts", "Leads"])
        self.assertEqual(events[0]["channel_expiry"],
                         "2027-03-01T15:30:00+05:30")
        self.assertEqual(events[0]["resource_uri"],
                         SERVER.sim.base_url + "/eu/api/crm/v8/Contacts")
        listed = self.api("GET", "actions/watch")
        self.assertEqual(len(listed.json["watch"]), 2)

    def test_update_callback_batches_ids(self):
        self.subscribe(["Contacts.edit"], return_affected_field_values=True)
        rows = self.api("GET", "Contacts?fields=Email&per_page=2") \
            .json["data"]
        self.api("PUT", "Contacts", body={"data": [
            {"id": r["id"], "Referral_Code": "C-" + r["id"][-4:]}
            for r in rows]})
        bodies = self.receiver.wait(1)
        self.assertEqual(len(bodies), 1)
        body = bodies[0]
        ids = [r["id"] for r in rows]
        self.assertEqual(body["ids"], ids)
        self.assertEqual(body["operation"], "update")
        self.assertEqual(body["module"], "Contacts")
        self.assertEqual(body["channel_id"], "1000000068001")
        self.assertEqual(body["token"], "verify-me")
        self.assertEqual(body["query_params"], {"tenant": "t1", "x": "2"})
        self.assertEqual(body["server_time"],
                         int(ztime.parse_loose(START) * 1000))
        self.assertEqual(body["affected_fields"],
                         [{ids[0]: ["Referral_Code"]},
                          {ids[1]: ["Referral_Code"]}])
        self.assertEqual(body["affected_values"][0], {
            "record_id": ids[0],
            "values": {"Referral_Code": "C-" + ids[0][-4:]}})
        self.assertEqual(self.receiver.paths[0], "/hook?tenant=t1&x=2")

    def test_insert_and_unsubscribed_modules(self):
        self.subscribe(["Leads.create"])
        self.api("POST", "Contacts", body={"data": [{"Last_Name": "C"}]})
        self.api("POST", "Leads", body={"data": [{"Last_Name": "L"}]})
        control("POST", "watch/drain", {"timeout": 5})
        bodies = self.receiver.wait(1)
        self.assertEqual([(b["module"], b["operation"]) for b in bodies],
                         [("Leads", "insert")])
        self.assertNotIn("affected_fields", bodies[0])

    def test_expired_channel_stops_delivering(self):
        self.subscribe(["Leads.all"])
        control("POST", "clock", {"advance": 3599})
        self.api("POST", "Leads", body={"data": [{"Last_Name": "Early"}]})
        self.assertEqual(len(self.receiver.wait(1)), 1)
        control("POST", "clock", {"advance": 2})
        fresh = self.token()
        made = self.api("POST", "Leads", token=fresh, body={"data": [
            {"Last_Name": "Late"}]})
        self.assertEqual(made.status, 201)
        control("POST", "watch/drain", {"timeout": 5})
        self.assertEqual(len(self.receiver.bodies), 1)
        self.assertEqual(self.api("GET", "actions/watch",
                                  token=fresh).status, 204)

    def test_patch_renews_and_max_expiry(self):
        self.subscribe(["Leads.all"])
        renew = self.api("PATCH", "actions/watch", body={"watch": [{
            "channel_id": "1000000068001",
            "channel_expiry": "2027-03-02T10:00:00+05:30"}]})
        self.assertEqual(renew.status, 200)
        expiry = renew.json["watch"][0]["details"]["events"][0]
        self.assertEqual(expiry["channel_expiry"],
                         "2027-03-02T10:00:00+05:30")
        too_far = self.api("PATCH", "actions/watch", body={"watch": [{
            "channel_id": "1000000068001",
            "channel_expiry": "2027-03-20T10:00:00+05:30"}]})
        self.assertEqual(too_far.json["watch"][0]["details"]["events"][0]
                         ["channel_expiry"], "2027-03-01T15:30:00+05:30")

    def test_put_replaces_events(self):
        self.subscribe(["Leads.all", "Contacts.all"])
        answer = self.api("PUT", "actions/watch", body={"watch": [{
            "channel_id": "1000000068001", "events": ["Deals.edit"],
            "notify_url": self.receiver.url}]})
        self.assertEqual(answer.status, 200, answer.raw)
        listed = self.api("GET", "actions/watch").json["watch"]
        self.assertEqual([(w["resource_name"], w["events"]) for w in listed],
                         [("Deals", ["edit"])])
        missing = self.api("PUT", "actions/watch", body={"watch": [{
            "channel_id": "77", "events": ["Deals.edit"],
            "notify_url": self.receiver.url}]})
        self.assertEqual(missing.json["watch"][0]["code"], "NOT_SUBSCRIBED")

    def test_delete_and_not_subscribed(self):
        self.subscribe(["Leads.all"])
        answer = self.api("DELETE", "actions/watch?channel_ids="
                          "1000000068001,42")
        self.assertEqual(answer.status, 207)
        codes = [w["code"] for w in answer.json["watch"]]
        self.assertEqual(codes, ["SUCCESS", "NOT_SUBSCRIBED"])

    def test_subscribe_validation(self):
        answer = self.api("POST", "actions/watch", body={"watch": [
            {"channel_id": "5", "events": ["Leads.all"]}]})
        self.assertEqual(answer.status, 400)
        item = answer.json["watch"][0]
        self.assertEqual(item["code"], "MANDATORY_NOT_FOUND")
        self.assertEqual(item["details"]["json_path"],
                         "$.watch[0].notify_url")

    def test_progress_fires_notifications(self):
        referrals = _sample("referrals.json")
        steps = _sample("progress.json")
        email = referrals[steps[0]["referral"]]["referred"]["email"]
        self.api("POST", "Leads", body={"data": [
            {"Last_Name": "Ref", "Email": email, "Company": "Acme"}]})
        self.subscribe(["Leads.edit"])
        result = control("POST", "progress", {"steps": 1})
        self.assertEqual(len(result["applied"]), 1)
        body = self.receiver.wait(1)[0]
        self.assertEqual(body["affected_fields"][0][body["ids"][0]],
                         ["Lead_Status"])


class TestProgress(SimTestCase):

    def test_steps_act_on_api_created_leads(self):
        referrals = _sample("referrals.json")
        steps = _sample("progress.json")
        converted = next(s for s in steps if s["action"] == "convert")
        number = converted["referral"]
        email = referrals[number]["referred"]["email"]
        lead_id = self.api("POST", "Leads", body={"data": [
            {"Last_Name": "Ref", "Email": email, "Company": "Acme"}]}) \
            .json["data"][0]["details"]["id"]
        result = control("POST", "progress", {"all": True})
        mine = [a for a in result["applied"] if a["referral"] == number]
        actions = [a["action"] for a in mine]
        self.assertEqual(actions[:3], ["lead_status", "lead_status",
                                       "convert"])
        self.assertEqual(result["remaining"], 0)
        self.assertEqual(len(result["applied"]) + len(result["skipped"]),
                         len(steps))
        self.assertTrue(all("reason" in s for s in result["skipped"]))
        lead = control("GET", "records/Leads/" + lead_id)["data"]
        self.assertTrue(lead["Converted__s"])
        deal = control("GET", "records/Deals/" +
                       lead["Converted_Deal"]["id"])["data"]
        last = [s for s in steps if s["referral"] == number][-1]
        self.assertEqual(deal["Stage"], last["value"])
        self.assertEqual(deal["Amount"], last["amount"])

    def test_leads_not_created_through_the_api_are_skipped(self):
        referrals = _sample("referrals.json")
        steps = _sample("progress.json")
        email = referrals[steps[0]["referral"]]["referred"]["email"]
        control("POST", "records/Leads", {"data": [
            {"Last_Name": "Direct", "Email": email}]})
        result = control("POST", "progress", {"steps": 1})
        self.assertEqual(result["applied"], [])
        self.assertEqual(result["skipped"][0]["email"], email)
        self.assertEqual(result["skipped"][0]["index"], 0)
        self.assertEqual((result["position"], result["remaining"]),
                         (1, len(steps) - 1))

    def test_until_and_step_time(self):
        steps = _sample("progress.json")
        until = steps[4]["at"]
        result = control("POST", "progress", {"until": until,
                                              "use_step_time": True})
        expected = sum(1 for s in steps if s["at"] <= until)
        self.assertEqual(result["position"], expected)
        clock = control("GET", "clock")["epoch"]
        self.assertEqual(clock, ztime.parse_loose(START))


class TestLimits(SimTestCase):

    def test_credit_budget_gives_429(self):
        self.tok
        control("POST", "limits", {"credits": 3, "reset_usage": True})
        for _ in range(3):
            self.assertEqual(self.api("GET", "Contacts?fields=Email&"
                                      "per_page=1").status, 200)
        answer = self.api("GET", "Contacts?fields=Email&per_page=1")
        self.assertError(answer, 429, "TOO_MANY_REQUESTS")
        self.assertIsNone(answer.headers.get("Retry-After"))
        self.assertEqual(answer.json["details"]["limit_type"], "credits")
        control("POST", "clock", {"advance": 86401})
        fresh = self.token()
        self.assertEqual(self.api("GET", "Contacts?fields=Email&per_page=1",
                                  token=fresh).status, 200)

    def test_edition_budget(self):
        self.api("GET", "Contacts?fields=Email&per_page=1")
        limits = control("GET", "limits")["default"]
        self.assertEqual(limits["credits_budget"], 50000 + 1000 * 4)
        self.assertEqual(limits["concurrency"], 20)

    def test_concurrency_gives_429(self):
        token = self.tok
        control("POST", "limits", {"concurrency": 2})
        control("POST", "faults", {"slow_ms": 400, "count": 8})
        statuses = []

        def one():
            statuses.append(self.api("GET", "Contacts?fields=Email&"
                                     "per_page=1", token=token).status)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(statuses.count(200), 2, statuses)
        self.assertEqual(statuses.count(429), 4, statuses)


class TestFaults(SimTestCase):

    def test_http_500_then_recovery(self):
        self.tok
        control("POST", "faults", {"http_500": {"count": 2}})
        for _ in range(2):
            self.assertError(self.api("GET", "Contacts?fields=Email"), 500,
                             "INTERNAL_ERROR")
        self.assertEqual(self.api("GET", "Contacts?fields=Email&per_page=1")
                         .status, 200)

    def test_injected_429(self):
        self.tok
        control("POST", "faults", {"http_429": 1})
        self.assertError(self.api("GET", "Contacts?fields=Email"), 429,
                         "TOO_MANY_REQUESTS")

    def test_refresh_missing_expires_in(self):
        control("POST", "faults", {"refresh_missing_expires_in": 1})
        first = self.refresh().json
        self.assertIn("access_token", first)
        self.assertNotIn("expires_in", first)
        self.assertEqual(self.refresh().json["expires_in"], 3600)

    def test_slow_responses(self):
        control("POST", "faults", {"slow_ms": 300, "count": 1,
                                   "target": "token"})
        started = time.monotonic()
        self.refresh()
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    def test_invalidate_tokens(self):
        token = self.tok
        control("POST", "faults", {"invalidate_tokens": True})
        self.assertError(self.api("GET", "Contacts?fields=Email",
                                  token=token), 401, "INVALID_TOKEN")
        self.assertIn("access_token", self.refresh().json)


class TestControl(SimTestCase):

    def test_clock_set_and_records(self):
        now = control("POST", "clock", {"set": "2027-05-01T00:00:00Z"})
        self.assertEqual(now["now"], "2027-05-01T05:30:00+05:30")
        made = control("POST", "records/Leads", {"data": [
            {"Last_Name": "Direct", "Email": "d@x.example"}]})
        self.assertEqual(made["created"], 1)
        found = control("GET", "records/Leads?Email=D@X.EXAMPLE")
        self.assertEqual(found["count"], 1)
        self.assertEqual(found["data"][0]["Modified_Time"],
                         "2027-05-01T05:30:00+05:30")

    def test_reset_restores_data(self):
        control("POST", "records/Leads", {"generate": {"count": 5}})
        self.assertEqual(control("GET", "state")["modules"]["Leads"], 405)
        control("POST", "reset")
        self.assertEqual(control("GET", "state")["modules"]["Leads"], 400)


class TestReadme(unittest.TestCase):

    def test_readme_lists_default_credentials_and_settings(self):
        from zohosim import auth
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        for client in auth.default_clients():
            row = "| `%s` | `%s` | `%s` | %s |" % (
                client["client_id"], client["client_secret"],
                client["refresh_token"], client["dc"])
            self.assertIn(row, readme)
        for key, (default, _) in cfg.SETTINGS.items():
            self.assertIn("| `%s` | %s |" % (key, json.dumps(default)),
                          readme)


class TestCommandLine(unittest.TestCase):

    def test_port_zero_prints_url(self):
        process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "zoho_sim.py"), "--port",
             "0", "--data", DATA], stdout=subprocess.PIPE, text=True)
        try:
            line = process.stdout.readline().strip()
            match = re.match(r"^listening on http://127\.0\.0\.1:(\d+)$",
                             line)
            self.assertIsNotNone(match, line)
            conn = http.client.HTTPConnection("127.0.0.1",
                                              int(match.group(1)),
                                              timeout=10)
            conn.request("GET", "/_sim/health")
            self.assertEqual(json.loads(conn.getresponse().read()),
                             {"status": "ok"})
            conn.close()
        finally:
            process.terminate()
            process.wait(10)
            process.stdout.close()


if __name__ == "__main__":
    unittest.main()
