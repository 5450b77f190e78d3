"""Referral capture in the running daemon, against the Zoho simulator: the
capture rules answered over HTTP (JSON, form posts, signed webhooks, the
rate limit), accepted referrals mapped by the tenant's capture hook and
upserted as Leads, and a referral accepted just before a crash still
reaching the CRM after the restart."""

import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import time
import unittest
import urllib.parse
import urllib.request

from harness import (DaemonTestCase, SOURCE_DIR, free_port, run_cli, scale,
                     wait_until)

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "zoho_sim"))
from zohosim import server as simserver  # noqa: E402
from zohosim import ztime  # noqa: E402
from zohosim.sim import Sim  # noqa: E402

DATA = os.path.join(SOURCE_DIR, "data", "zoho-sample")
CLIENT = ("1000.DEMO", "demo-secret",
          "1000.6030bdc4a78ce82dd81226206ea94fe3"
          ".d80b315c54779d22735f075d26ccf116")
SIM_START = "2027-03-01T09:00:00+00:00"
SECRET = "whsec_" + base64.b64encode(b"referrals-secret-for-tests").decode()

TENANT = """
return {
  zoho = {
    client_id = "%s", client_secret = "%s", refresh_token = "%s",
    dc = "eu", accounts_url = "http://127.0.0.1:%d/eu/accounts",
    allowed_hosts = { { host = "127.0.0.1", port = %d, http = true,
                        private = true } },
    modules = { Contacts = { "Email", "Full_Name", "Customer_Tier",
                             "NPS_Score", "Email_Opt_Out" },
                Leads = { "Email", "Lead_Status" },
                Deals = { "Deal_Name", "Stage", "Amount" } },
    poll_every_s = 3600,
  },
  program = { secret = "%s", form_per_minute = %d,
              link = "https://go.acme.example/r/{code}",
              code_field = "Referral_Code", link_field = "Referral_Link" },
  cohort = function(c)
    return c.Customer_Tier == "Gold" and type(c.Email) == "string"
  end,
  milestone = function(record, referral)
    if record.Stage == "Closed Won" then return "qualified" end
    if record.Stage == "Closed Lost" then
      return { status = "rejected", reason = "deal lost" }
    end
  end,
  capture = function(referral, referrer)
    local p = referral.person
    if p.email:find("@competitor%%.example$") then
      return { refuse = "existing_customer" }
    end
    return { module = "Leads", duplicate_check_fields = { "Email" },
             record = { Email = p.email, First_Name = p.first_name,
                        Last_Name = p.last_name or "(unknown)",
                        Lead_Source = "External Referral",
                        Referral_Code_Used = referral.code,
                        Referred_By = referrer and referrer.name } }
  end,
}
"""


def sample_contacts():
    with open(os.path.join(DATA, "contacts.json")) as f:
        data = json.load(f)
    return data["data"] if isinstance(data, dict) else data


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), ts, body),
                   hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class ReferralsTest(DaemonTestCase):

    def setUp(self):
        # The simulator's clock starts after the sample data's last change,
        # so that new changes sort after every sample record, as in Zoho.
        self.srv = simserver.start(Sim(DATA, start=ztime.parse_loose(SIM_START)))
        self.sim = self.srv.sim
        self.sim_port = int(self.sim.base_url.rsplit(":", 1)[1])

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.sim.watch.stop()

    def start(self, rate=1000):
        lua = TENANT % (CLIENT + (self.sim_port, self.sim_port, SECRET, rate))
        d = self.daemon(start=False, tenants=(), port=free_port(),
                        extra_tenants={"acme": lua})
        d.start()
        gold = [c for c in sample_contacts()
                if c.get("Customer_Tier") == "Gold" and c.get("Email")]
        wait_until(lambda: len(self.referrers(d)) == len(gold), scale(30),
                   "cohort enrolled", interval=0.2)
        return d

    def referrers(self, d):
        out = run_cli("referrers", "list", "--data", d.data_dir, "--tenant",
                      "acme", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        return [json.loads(x) for x in out.stdout.splitlines()]

    def referrals(self, d):
        out = run_cli("referrals", "list", "--data", d.data_dir, "--tenant",
                      "acme", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        return {r["id"]: r for r in map(json.loads, out.stdout.splitlines())}

    def post(self, d, body, headers=None, form=False):
        if form:
            data = urllib.parse.urlencode(body).encode()
            h = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            data = json.dumps(body).encode()
            h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return d.request("POST", "/t/acme/referrals", data, h)

    def sim_leads(self, email):
        url = "%s/_sim/records/Leads?Email=%s" % (
            self.sim.base_url, urllib.parse.quote(email))
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]

    def test_rules_and_mapping(self):
        d = self.start()
        ana, bo = self.referrers(d)[:2]
        cases = [
            ({"code": ana["code"], "email": "kim@example.com",
              "first_name": "Kim"}, 201, None),
            ({"code": ana["code"].lower(), "email": "lee@example.com"}, 201,
             None),
            ({"code": bo["code"], "email": "KIM+again@Example.com"}, 422,
             "duplicate_person"),
            ({"code": ana["code"], "email": ana["email"].upper()}, 422,
             "self_referral"),
            ({"code": ana["code"], "email": "no-at-sign"}, 422,
             "invalid_email"),
            ({"code": ana["code"], "first_name": "Nobody"}, 422,
             "missing_email"),
            ({"code": "ABCDEFGHJKMNP", "email": "x@example.com"}, 422,
             "unknown_referrer"),
            ({"code": "0000", "email": "y@example.com"}, 422,
             "invalid_code"),
            ({"code": bo["code"], "email": "pat@competitor.example"}, 201,
             None),
        ]
        for body, status, code in cases:
            r = self.post(d, body)
            self.assertEqual(r.status, status, (body, r.body))
            self.assertIn("referral-id", r.headers)
            if code:
                self.assertEqual(r.error_code(), code)
            else:
                self.assertEqual(r.json()["status"], "accepted")
        # Ways around the rules are refused: a name given twice (the rules
        # would check one email and the CRM get the other), invalid UTF-8,
        # look-alike or invisible characters; spaces around are trimmed.
        r = d.request("POST", "/t/acme/referrals",
                      b'{"code":"%s","person":{"email":"dk@example.com",'
                      b'"email":"%s"}}' % (ana["code"].encode(),
                                           ana["email"].encode()),
                      {"Content-Type": "application/json"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        self.assertIn('field "email" is given twice', r.json()["error"]
                      ["message"])
        # Also at the top, and a zero character that would cut a field.
        r = d.request("POST", "/t/acme/referrals",
                      b'{"code":"%s","email":"dk@example.com","code":"A"}'
                      % ana["code"].encode(),
                      {"Content-Type": "application/json"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        self.assertIn('field "code" is given twice', r.json()["error"]
                      ["message"])
        r = d.request("POST", "/t/acme/referrals",
                      b'{"code":"%s","email":"nul@example.com",'
                      b'"first_name":"Al\\u0000ice"}' % ana["code"].encode(),
                      {"Content-Type": "application/json"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        self.assertIn("u0000", r.json()["error"]["message"])
        # The same in a form post.
        r = d.request("POST", "/t/acme/referrals",
                      "code=%s&email=dk%%40example.com&email=%s"
                      % (ana["code"], ana["email"].replace("@", "%40")),
                      {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        self.assertIn("names a field twice", r.json()["error"]["message"])
        # The person is an object, and its fields go inside it.
        r = self.post(d, {"code": ana["code"], "person": "kim@example.com"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        self.assertIn('"person" must be an object', r.json()["error"]
                      ["message"])
        r = self.post(d, {"code": ana["code"], "email": "x@example.com",
                          "person": {"first_name": "X"}})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        r = self.post(d, {"code": ana["code"],
                          "person": {"email": "n@example.com",
                                     "address": {"city": "Paris"}}})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        self.assertIn('field "address" is an object', r.json()["error"]
                      ["message"])
        r = d.request("POST", "/t/acme/referrals",
                      b'{"code":"%s","email":"u\xff@example.com"}'
                      % ana["code"].encode(),
                      {"Content-Type": "application/json"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        r = self.post(d, {"code": ana["code"],
                          "email": ana["email"] + "\u200b"})
        self.assertEqual((r.status, r.error_code()), (422, "invalid_email"))
        r = self.post(d, {"code": ana["code"], "email": 123})
        self.assertEqual((r.status, r.error_code()), (422, "invalid_email"))
        r = self.post(d, {"code": ana["code"],
                          "email": "x@example.com\r\nBcc: y@example.com"})
        self.assertEqual((r.status, r.error_code()), (422, "invalid_email"))
        r = self.post(d, {"code": ana["code"],
                          "email": "  trimmed@example.com "})
        self.assertEqual(r.status, 201, r.body)
        # A form post, as a landing page sends it.
        r = self.post(d, {"code": bo["code"], "email": "sam@example.com",
                          "first_name": "Sam"}, form=True)
        self.assertEqual(r.status, 201, r.body)
        # Not a body we can read.
        r = d.request("POST", "/t/acme/referrals", b"{not json",
                      {"Content-Type": "application/json"})
        self.assertEqual((r.status, r.error_code()), (400, "invalid_body"))
        r = d.request("POST", "/t/nobody/referrals", b"{}")
        self.assertEqual((r.status, r.error_code()), (404, "tenant_not_found"))

        def settled():
            rs = self.referrals(d)
            return all(r["status"] not in ("accepted", "mapped")
                       for r in rs.values()) and rs
        wait_until(settled, scale(20), "referrals settled", interval=0.2)
        rs = self.referrals(d)
        self.assertEqual(len(rs), 14)
        # The text table keeps one line per referral, whatever was posted.
        out = run_cli("referrals", "list", "--data", d.data_dir, "--tenant",
                      "acme")
        self.assertEqual(len(out.stdout.splitlines()), 14 + 1)
        by_email = {r["person"].get("email"): r for r in rs.values()}
        kim = by_email["kim@example.com"]
        self.assertEqual(kim["status"], "in_crm")
        self.assertEqual(kim["referrer"], ana["contact_id"])
        leads = self.sim_leads("kim@example.com")
        self.assertEqual(len(leads), 1)
        self.assertEqual(leads[0]["id"], kim["crm"]["id"])
        self.assertEqual(leads[0]["Lead_Source"], "External Referral")
        self.assertEqual(leads[0]["Referral_Code_Used"], ana["code"])
        self.assertEqual(leads[0]["Referred_By"], ana["name"])
        self.assertEqual(by_email["sam@example.com"]["channel"], "form")
        self.assertEqual(by_email["sam@example.com"]["status"], "in_crm")
        # The capture hook refused a person it knows as a customer.
        pat = by_email["pat@competitor.example"]
        self.assertEqual((pat["status"], pat["reason"]),
                         ("refused", "existing_customer"))
        self.assertEqual(self.sim_leads("pat@competitor.example"), [])
        self.assertEqual(sorted(r["reason"] for r in rs.values()
                                if r["status"] == "refused"),
                         ["duplicate_person", "existing_customer",
                          "invalid_code", "invalid_email", "invalid_email",
                          "invalid_email", "invalid_email", "missing_email",
                          "self_referral", "unknown_referrer"])
        self.assertEqual(by_email["trimmed@example.com"]["status"], "in_crm")

    def test_codes_are_written_back_to_the_contacts(self):
        d = self.start()
        refs = self.referrers(d)

        def contact(cid):
            url = "%s/_sim/records/Contacts/%s" % (self.sim.base_url, cid)
            with urllib.request.urlopen(url, timeout=10) as r:
                doc = json.loads(r.read())
            return doc.get("data", doc)

        def all_written():
            return all(contact(r["contact_id"]).get("Referral_Code") ==
                       r["code"] for r in refs)
        wait_until(all_written, scale(30), "codes written back",
                   interval=0.5)
        for r in refs[:5]:
            c = contact(r["contact_id"])
            self.assertEqual(c["Referral_Link"],
                             "https://go.acme.example/r/" + r["code"])
            self.assertEqual(r["link"], c["Referral_Link"])

    def test_a_synced_referrer_who_joins_gets_their_code(self):
        d = self.start()
        before = self.referrers(d)
        ana = before[0]
        r = d.request("POST", "/t/acme/join",
                      json.dumps({"email": "  " + ana["email"].upper()}),
                      {"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["code"], ana["code"])
        self.assertEqual(len(self.referrers(d)), len(before))
        # The index survives a restart, and a new address still enrols.
        d.restart()
        r = d.request("POST", "/t/acme/join",
                      json.dumps({"email": ana["email"]}),
                      {"Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()["code"]), (200, ana["code"]))
        r = d.request("POST", "/t/acme/join",
                      json.dumps({"email": "newcomer@example.com"}),
                      {"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(len(self.referrers(d)), len(before) + 1)

    def test_signed_posts_and_the_rate_limit(self):
        d = self.start(rate=3)
        ana = self.referrers(d)[0]
        statuses = []
        for i in range(5):
            r = self.post(d, {"code": ana["code"],
                              "email": "form%d@example.com" % i}, form=True)
            statuses.append(r.status)
        self.assertEqual(statuses, [201, 201, 201, 429, 429])
        self.assertEqual(r.error_code(), "rate_limited")
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        # Signed server-to-server posts are not limited per address.
        first_ids = []
        for i in range(3):
            body = json.dumps({"code": ana["code"],
                               "person": {"email": "api%d@example.com" % i}
                               }).encode()
            ts = int(time.time())
            r = d.request("POST", "/t/acme/referrals", body, {
                "Content-Type": "application/json",
                "webhook-id": "msg_%d" % i, "webhook-timestamp": str(ts),
                "webhook-signature": sign(SECRET, "msg_%d" % i, ts, body)})
            self.assertEqual(r.status, 201, r.body)
            first_ids.append(r.json()["referral_id"])
        # Ids are compared whole: one too long to keep is refused.
        long_id = "msg_" + "x" * 300
        r = d.request("POST", "/t/acme/referrals", body, {
            "Content-Type": "application/json",
            "webhook-id": long_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(SECRET, long_id, ts, body)})
        self.assertEqual((r.status, r.error_code()),
                         (400, "delivery_id_too_long"))
        # A relay that retries gets the first answer again, and nothing
        # new is stored.
        r = d.request("POST", "/t/acme/referrals", body, {
            "Content-Type": "application/json",
            "webhook-id": "msg_2", "webhook-timestamp": str(ts),
            "webhook-signature": sign(SECRET, "msg_2", ts, body)})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"referral_id": first_ids[2],
                                    "status": "accepted",
                                    "duplicate": True})
        r = d.request("POST", "/t/acme/referrals", body, {
            "Content-Type": "application/json", "webhook-id": "msg_x",
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(SECRET, "msg_other", ts, body)})
        self.assertEqual((r.status, r.error_code()),
                         (401, "signature_mismatch"))
        channels = sorted(r["channel"] for r in self.referrals(d).values())
        self.assertEqual(channels, ["form"] * 3 + ["webhook"] * 3)

    def test_accepted_before_a_crash_reaches_the_crm(self):
        d = self.start()
        ana = self.referrers(d)[0]
        # Zoho is slow: the upsert is still in flight when we kill.
        with urllib.request.urlopen(urllib.request.Request(
                self.sim.base_url + "/_sim/faults",
                data=json.dumps({"slow": {"ms": 3000, "count": 5}}).encode(),
                method="POST"), timeout=10) as resp:
            resp.read()
        r = self.post(d, {"code": ana["code"], "email": "crash@example.com"})
        self.assertEqual(r.status, 201)
        d.kill()
        d.start()
        wait_until(lambda: self.referrals(d)[r.json()["referral_id"]]
                   ["status"] == "in_crm", scale(30), "mapped after restart",
                   interval=0.2)
        self.assertEqual(len(self.sim_leads("crash@example.com")), 1)

    def zoho_api(self, method, path, body=None):
        """A REST call to the simulator as a Zoho user would make it."""
        token_url = ("%s/eu/accounts/oauth/v2/token?grant_type=refresh_token"
                     "&client_id=%s&client_secret=%s&refresh_token=%s"
                     % ((self.sim.base_url,) + CLIENT))
        with urllib.request.urlopen(urllib.request.Request(
                token_url, data=b"", method="POST"), timeout=10) as r:
            token = json.loads(r.read())["access_token"]
        req = urllib.request.Request(
            "%s/eu/api/crm/v8/%s" % (self.sim.base_url, path),
            data=json.dumps(body).encode() if body is not None else None,
            method=method, headers={"Authorization": "Zoho-oauthtoken " +
                                    token,
                                    "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def test_milestones_follow_the_converted_deal(self):
        d = self.start()
        ana = self.referrers(d)[0]
        r = self.post(d, {"code": ana["code"], "email": "deal@example.com",
                          "last_name": "Dealer"})
        rid = r.json()["referral_id"]
        wait_until(lambda: self.referrals(d)[rid]["status"] == "in_crm",
                   scale(20), "in_crm", interval=0.2)
        lead = self.referrals(d)[rid]["crm"]["id"]
        answer = self.zoho_api("POST", "Leads/%s/actions/convert" % lead, {
            "data": [{"Deals": {"Deal_Name": "Dealer - Referral",
                                "Stage": "Qualification",
                                "Closing_Date": "2027-01-31"}}]})
        deal = answer["data"][0]["details"]["Deals"]["id"]

        def poll_until(what, cond):
            # Zoho's times have whole seconds, and two versions of a record
            # within one second are one to a poll: let the clock move on.
            time.sleep(1.1)
            d.send_signal(signal.SIGHUP)  # a reload polls at once
            wait_until(lambda: cond(self.referrals(d)[rid]), scale(20), what,
                       interval=0.2)

        poll_until("converted", lambda r: r.get("converted") is True)
        self.assertEqual(self.referrals(d)[rid]["deal"], deal)
        self.assertEqual(self.referrals(d)[rid]["status"], "in_crm")
        time.sleep(1.1)
        self.zoho_api("PUT", "Deals", {"data": [{"id": deal,
                                                 "Stage": "Closed Won"}]})
        poll_until("qualified", lambda r: r["status"] == "qualified")
        time.sleep(1.1)
        self.zoho_api("PUT", "Deals", {"data": [{"id": deal,
                                                 "Stage": "Closed Lost"}]})
        poll_until("reversed", lambda r: r.get("reversed") is True)
        self.assertEqual(self.referrals(d)[rid]["status"], "qualified")
        out = run_cli("audit", "list", "--data", d.data_dir, "--tenant",
                      "acme")
        self.assertEqual(out.returncode, 0, out.stderr)
        kinds = [e["kind"] for e in map(json.loads, out.stdout.splitlines())
                 if e.get("referral") == rid]
        self.assertEqual(kinds, ["captured", "mapped", "in_crm",
                                 "converted", "qualified", "reversed"])

    def test_a_deal_won_at_conversion_qualifies(self):
        # The lead's conversion and the deal's Stage arrive in one poll, in
        # either order: the deal is read again once its link is known.
        d = self.start()
        ana = self.referrers(d)[0]
        r = self.post(d, {"code": ana["code"], "email": "won@example.com",
                          "last_name": "Winner"})
        rid = r.json()["referral_id"]
        wait_until(lambda: self.referrals(d)[rid]["status"] == "in_crm",
                   scale(20), "in_crm", interval=0.2)
        lead = self.referrals(d)[rid]["crm"]["id"]
        time.sleep(1.1)
        self.zoho_api("POST", "Leads/%s/actions/convert" % lead, {
            "data": [{"Deals": {"Deal_Name": "Winner - Referral",
                                "Stage": "Closed Won",
                                "Closing_Date": "2027-01-31"}}]})
        time.sleep(1.1)
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: self.referrals(d)[rid]["status"] == "qualified",
                   scale(20), "qualified", interval=0.2)


if __name__ == "__main__":
    unittest.main()
