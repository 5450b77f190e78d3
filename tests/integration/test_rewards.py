"""Rewards in the running daemon, against the Zoho simulator and a fake
gift-card provider: the reward hook's actions paid exactly once per
referral and rule (also when the daemon is killed with SIGKILL right after
qualification, and when an answer is lost), held for review and approved
or rejected through the CLI, delayed by hold_days, and a reversal's
clawback sent as a signed webhook."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import sys
import time
import urllib.request

from harness import (DaemonTestCase, SOURCE_DIR, free_port, run_cli, scale,
                     wait_until)

import fake_giftcard

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "zoho_sim"))
from zohosim import server as simserver  # noqa: E402
from zohosim import ztime  # noqa: E402
from zohosim.sim import Sim  # noqa: E402

DATA = os.path.join(SOURCE_DIR, "data", "zoho-sample")
CLIENT = ("1000.DEMO", "demo-secret",
          "1000.6030bdc4a78ce82dd81226206ea94fe3"
          ".d80b315c54779d22735f075d26ccf116")
SIM_START = "2027-03-01T09:00:00+00:00"
API_KEY = "test-giftcard-key"
HOOK_SECRET = "whsec_" + base64.b64encode(b"clawback-secret-tests").decode()

TENANT = """
local giftcard = require("giftcard").configure{
  base_url = "http://127.0.0.1:%(gc)d", api_key = "%(key)s" }
require("webhook").configure{ secret = "%(hook_secret)s" }
return {
  allowed_hosts = { { host = "127.0.0.1", port = %(gc)d, http = true,
                      private = true } },
  zoho = {
    client_id = "%(cid)s", client_secret = "%(csecret)s",
    refresh_token = "%(rtoken)s",
    dc = "eu", accounts_url = "http://127.0.0.1:%(sim)d/eu/accounts",
    allowed_hosts = { { host = "127.0.0.1", port = %(sim)d, http = true,
                        private = true } },
    modules = { Contacts = { "Email", "Full_Name", "Customer_Tier" },
                Leads = { "Email", "Lead_Status" } },
    poll_every_s = 3600,
  },
  program = { secret = "%(hook_secret)s", form_per_minute = 1000 },
  cohort = function(c)
    return c.Customer_Tier == "Gold" and type(c.Email) == "string"
  end,
  capture = function(referral, referrer)
    return { module = "Leads", duplicate_check_fields = { "Email" },
             record = { Email = referral.person.email,
                        Last_Name = "Referred" } }
  end,
  milestone = function(record, referral)
    if record.Lead_Status == "Qualified" then return "qualified" end
    if record.Lead_Status == "Lost" then return "rejected" end
  end,
  reward = function(referral, referrer)
    local email = referral.person.email
    if referral.reversed then
      return { actions = { { kind = "webhook", rule = "clawback_notice",
                             url = "http://127.0.0.1:%(gc)d/webhook",
                             body = { referral = referral.id,
                                      event = "referral.reversed" } } } }
    end
    local out = { actions = {
      { kind = "reward", rule = "referrer_giftcard", to = "referrer",
        plugin = "giftcard", amount = 50, currency = "EUR",
        email = referrer and referrer.email },
      { kind = "reward", rule = "friend_giftcard", to = "referred",
        plugin = "giftcard", amount = 20, currency = "EUR", email = email },
    } }
    if email:find("^review") then out.review = "big deal" end
    if email:find("^crm") then
      table.insert(out.actions, { kind = "crm_update", rule = "mark_lead",
        module = "Leads", id = referral.crm.id,
        fields = { Description = "reward for referral " .. referral.id } })
    end
    if email:find("^hold") then out.hold_days = 4 / 86400 end
    return out
  end,
}
"""


class RewardsTest(DaemonTestCase):

    def setUp(self):
        self.srv = simserver.start(Sim(DATA,
                                       start=ztime.parse_loose(SIM_START)))
        self.sim = self.srv.sim
        self.sim_port = int(self.sim.base_url.rsplit(":", 1)[1])
        self.gc = fake_giftcard.start(API_KEY)

    def tearDown(self):
        self.gc.shutdown()
        self.gc.server_close()
        self.srv.shutdown()
        self.srv.server_close()
        self.sim.watch.stop()

    def start(self, admin_token=None):
        lua = TENANT % {
            "gc": self.gc.server_address[1], "key": API_KEY,
            "hook_secret": HOOK_SECRET, "cid": CLIENT[0],
            "csecret": CLIENT[1], "rtoken": CLIENT[2], "sim": self.sim_port}
        admin = ""
        if admin_token:
            admin = ', admin = { listen = "127.0.0.1:0", token = "%s" }' % (
                admin_token)
        config = 'return { plugins = { "%s" }%s }\n' % (os.path.join(
            SOURCE_DIR, "scripts", "plugins"), admin)
        d = self.daemon(start=False, tenants=(), port=free_port(),
                        extra_tenants={"acme": lua}, config=config)
        d.start()
        wait_until(lambda: len(self.cli_json(d, "referrers")) > 3,
                   scale(30), "cohort enrolled", interval=0.2)
        return d

    # -- helpers ---------------------------------------------------------

    def cli_json(self, d, what, *extra):
        out = run_cli(what, "list", "--data", d.data_dir, "--tenant", "acme",
                      "--json", *extra)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [json.loads(x) for x in out.stdout.splitlines()]

    def referral(self, d, rid):
        return {r["id"]: r for r in self.cli_json(d, "referrals")}[rid]

    def audit(self, d, rid):
        out = run_cli("audit", "list", "--data", d.data_dir, "--tenant",
                      "acme")
        self.assertEqual(out.returncode, 0, out.stderr)
        return [e["kind"] for e in map(json.loads, out.stdout.splitlines())
                if e.get("referral") == rid]

    def provider(self):
        with urllib.request.urlopen(self.gc.url + "/_fake/payments",
                                    timeout=10) as r:
            return json.loads(r.read())

    def fault(self, **kw):
        req = urllib.request.Request(self.gc.url + "/_fake/faults",
                                     data=json.dumps(kw).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def zoho_api(self, method, path, body=None):
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

    def refer(self, d, email):
        """Posts a referral and waits until its lead is in the CRM."""
        ana = self.cli_json(d, "referrers")[0]
        r = d.request("POST", "/t/acme/referrals", json.dumps(
            {"code": ana["code"], "email": email}).encode(),
            {"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r.body)
        rid = r.json()["referral_id"]
        wait_until(lambda: self.referral(d, rid)["status"] == "in_crm",
                   scale(20), "in_crm", interval=0.2)
        return rid

    def set_leads(self, d, rids, status):
        """Sets the leads' status in Zoho and makes the daemon poll."""
        time.sleep(1.1)  # Zoho's times have whole seconds
        self.zoho_api("PUT", "Leads", {"data": [
            {"id": self.referral(d, rid)["crm"]["id"],
             "Lead_Status": status} for rid in rids]})
        time.sleep(1.1)
        d.send_signal(signal.SIGHUP)  # a reload polls at once

    def paid_keys(self):
        return sorted(c["idempotency_key"] for c in self.provider()["paid"])

    # -- tests -----------------------------------------------------------

    def test_paid_once_across_a_kill_then_clawed_back(self):
        d = self.start()
        rid = self.refer(d, "kim@example.com")
        # The first card is paid but its answer lost: an unknown outcome,
        # retried with the same key.
        self.fault(drop_after_pay=1)
        self.set_leads(d, [rid], "Qualified")
        wait_until(lambda: self.referral(d, rid)["status"] != "in_crm",
                   scale(20), "qualified", interval=0.02)
        d.kill()  # right after qualification
        d.start()
        wait_until(lambda: len(self.referral(d, rid).get("rewards", [])) == 2,
                   scale(40), "both rewards recorded", interval=0.2)
        self.assertEqual(self.paid_keys(),
                         ["reward:%d:friend_giftcard" % rid,
                          "reward:%d:referrer_giftcard" % rid])
        r = self.referral(d, rid)
        self.assertEqual(r["status"], "rewarded")
        by_rule = {x["rule"]: x for x in r["rewards"]}
        self.assertEqual((by_rule["referrer_giftcard"]["amount"],
                          by_rule["referrer_giftcard"]["currency"],
                          by_rule["referrer_giftcard"]["to"]),
                         (50, "EUR", "referrer"))
        self.assertTrue(by_rule["friend_giftcard"]["provider_id"]
                        .startswith("card_"))
        kinds = self.audit(d, rid)
        self.assertEqual(kinds.count("rewarded"), 1)
        self.assertEqual(kinds.count("paid"), 2)
        # Another restart pays nothing more.
        d.kill()
        d.start()
        time.sleep(scale(2))
        self.assertEqual(len(self.provider()["paid"]), 2)
        # The deal reverses: the hook's clawback goes out as a webhook.
        self.set_leads(d, [rid], "Lost")
        wait_until(lambda: self.provider()["webhooks"], scale(30),
                   "clawback webhook", interval=0.2)
        hook = self.provider()["webhooks"][0]
        h = hook["headers"]
        self.assertEqual(h["webhook-id"], "clawback:%d:clawback_notice" % rid)
        key = base64.b64decode(HOOK_SECRET[len("whsec_"):])
        mac = hmac.new(key, ("%s.%s.%s" % (h["webhook-id"],
                                           h["webhook-timestamp"],
                                           hook["raw"])).encode(),
                       hashlib.sha256).digest()
        self.assertEqual(h["webhook-signature"],
                         "v1," + base64.b64encode(mac).decode())
        self.assertEqual(hook["body"], {"referral": rid,
                                        "event": "referral.reversed"})
        wait_until(lambda: "clawback" in self.audit(d, rid), scale(10),
                   "clawback audited", interval=0.2)
        self.assertTrue(self.referral(d, rid)["reversed"])

    def test_a_crm_update_action_writes_the_record_once(self):
        d = self.start()
        rid = self.refer(d, "crm-lee@example.com")
        lead_id = self.referral(d, rid)["crm"]["id"]
        self.set_leads(d, [rid], "Qualified")
        wait_until(lambda: len(self.referral(d, rid).get("rewards", [])) == 3,
                   scale(30), "three actions settled", interval=0.2)
        lead = self.zoho_api("GET", "Leads/%s" % lead_id)["data"][0]
        self.assertEqual(lead["Description"], "reward for referral %d" % rid)
        self.assertEqual(lead["Lead_Status"], "Qualified")
        by_rule = {x["rule"]: x for x in self.referral(d, rid)["rewards"]}
        self.assertEqual(sorted(by_rule), ["friend_giftcard", "mark_lead",
                                           "referrer_giftcard"])
        # The write is one of the lead's versions: a restart and a poll do
        # not send it again, and the milestone does not fire twice.
        modified = lead["Modified_Time"]
        d.kill()
        d.start()
        d.send_signal(signal.SIGHUP)
        time.sleep(scale(2))
        lead = self.zoho_api("GET", "Leads/%s" % lead_id)["data"][0]
        self.assertEqual(lead["Modified_Time"], modified)
        self.assertEqual(self.audit(d, rid).count("qualified"), 1)
        self.assertEqual(len(self.provider()["paid"]), 2)

    def test_review_approve_and_reject(self):
        d = self.start()
        a = self.refer(d, "review-a@example.com")
        b = self.refer(d, "review-b@example.com")
        self.set_leads(d, [a, b], "Qualified")
        wait_until(lambda: len(self.cli_json(d, "review")) == 2, scale(20),
                   "two held for review", interval=0.2)
        held = {r["id"]: r for r in self.cli_json(d, "review")}
        self.assertEqual(held[a]["review_reason"], "big deal")
        self.assertEqual(len(held[a]["reward"]["actions"]), 2)
        self.assertEqual(self.provider()["paid"], [])
        base = ("--data", d.data_dir, "--tenant", "acme")
        out = run_cli("review", "approve", *base, str(a))
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run_cli("review", "reject", *base, str(b))
        self.assertEqual(out.returncode, 2)  # --reason is needed
        # One rule with the admin API: 1 to 200 characters (not bytes), no
        # control characters; nothing is cut.
        for bad, why in (("\u00e9" * 201, b"longer than 200 characters"),
                         ("two\nlines", b"control character"),
                         ("next\u0085line", b"control character"),
                         ("a\u2028b", b"control character"),
                         ("   ", b"only spaces"),
                         ("", b"empty")):
            out = run_cli("review", "reject", *base, str(b), "--reason", bad)
            self.assertEqual(out.returncode, 2, out)
            self.assertIn(why, out.stderr)
        self.assertEqual(len(self.cli_json(d, "review")), 1)
        out = run_cli("review", "reject", *base, str(b), "--reason",
                      "same household")
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run_cli("review", "approve", *base, str(b))
        self.assertEqual(out.returncode, 1)
        self.assertIn(b"not waiting for review", out.stderr)
        wait_until(lambda: len(self.referral(d, a).get("rewards", [])) == 2,
                   scale(20), "approved rewards paid", interval=0.2)
        self.assertEqual(self.paid_keys(),
                         ["reward:%d:friend_giftcard" % a,
                          "reward:%d:referrer_giftcard" % a])
        rb = self.referral(d, b)
        self.assertEqual((rb["status"], rb["review_rejection"]),
                         ("review_rejected", "same household"))
        self.assertEqual(self.audit(d, a)[-5:],
                         ["review_requested", "approved", "rewarded",
                          "paid", "paid"])
        self.assertEqual(self.audit(d, b)[-2:],
                         ["review_requested", "rejected_in_review"])
        self.assertEqual(self.cli_json(d, "review"), [])

    def test_review_through_the_admin_api(self):
        token = "admin-token-for-the-review-test"
        d = self.start(admin_token=token)
        port = int(d.wait_log(re.compile(
            r"mod=admin addr=127\.0\.0\.1:(\d+) "), scale(5)).group(1))

        def admin(method, path, body=None, auth=token):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Content-Type": "application/json"}
            if auth:
                headers["Authorization"] = "Bearer " + auth
            conn.request(method, "/admin/t/acme" + path,
                         json.dumps(body).encode() if body is not None
                         else None, headers)
            r = conn.getresponse()
            doc = json.loads(r.read())
            conn.close()
            return r.status, doc

        a = self.refer(d, "review-a@example.com")
        b = self.refer(d, "review-b@example.com")
        self.set_leads(d, [a, b], "Qualified")
        wait_until(lambda: len(admin("GET", "/review")[1]["review"]) == 2,
                   scale(20), "two held for review", interval=0.2)
        self.assertEqual(admin("GET", "/review", auth="wrong")[0], 401)
        status, doc = admin("POST", "/review/%d/approve" % a)
        self.assertEqual((status, doc), (200, {"referral": a,
                                               "status": "rewarded",
                                               "jobs": 2}))
        status, doc = admin("POST", "/review/%d/reject" % b, {})
        self.assertEqual((status, doc["error"]["code"]),
                         (400, "reason_required"))
        for bad in ("\u00e9" * 201, "two\nlines", "next\u0085line", "  ",
                    ""):
            status, doc = admin("POST", "/review/%d/reject" % b,
                                {"reason": bad})
            self.assertEqual((status, doc["error"]["code"]),
                             (400, "invalid_reason"), bad)
        # A zero character would cut it; a name given twice is ambiguous.
        for raw in (b'{"reason": "a\\u0000b"}',
                    b'{"reason": "first", "reason": "second"}'):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/admin/t/acme/review/%d/reject" % b, raw,
                         {"Authorization": "Bearer " + token,
                          "Content-Type": "application/json"})
            r = conn.getresponse()
            doc = json.loads(r.read())
            conn.close()
            self.assertEqual((r.status, doc["error"]["code"]),
                             (400, "invalid_body"), raw)
        status, doc = admin("GET", "/review")
        self.assertEqual([r["id"] for r in doc["review"]], [b])
        long_ok = "\u00e9" * 200  # 200 characters, 400 bytes: kept whole
        status, doc = admin("POST", "/review/%d/reject" % b,
                            {"reason": long_ok})
        self.assertEqual((status, doc["status"]), (200, "review_rejected"))
        status, doc = admin("POST", "/review/%d/approve" % b)
        self.assertEqual((status, doc["error"]["code"]),
                         (409, "not_waiting_for_review"))
        status, doc = admin("POST", "/review/999/approve")
        self.assertEqual((status, doc["error"]["code"]),
                         (404, "referral_not_found"))
        self.assertEqual(admin("GET", "/review/%d/approve" % a)[0], 405)
        wait_until(lambda: len(self.referral(d, a).get("rewards", [])) == 2,
                   scale(20), "approved rewards paid", interval=0.2)
        self.assertEqual(self.paid_keys(),
                         ["reward:%d:friend_giftcard" % a,
                          "reward:%d:referrer_giftcard" % a])
        self.assertEqual(self.referral(d, b)["review_rejection"], long_ok)
        self.assertEqual(admin("GET", "/review")[1]["review"], [])

    def test_hold_days_delay_the_payout(self):
        d = self.start()
        rid = self.refer(d, "hold@example.com")
        self.set_leads(d, [rid], "Qualified")
        wait_until(lambda: self.referral(d, rid)["status"] == "rewarded",
                   scale(20), "rewarded", interval=0.05)
        decided = time.monotonic()
        due = self.referral(d, rid)["reward"]["due_ms"]
        self.assertEqual(self.provider()["paid"], [])
        wait_until(lambda: len(self.provider()["paid"]) == 2, scale(20),
                   "paid after the hold", interval=0.05)
        self.assertGreaterEqual(time.monotonic() - decided, 2.5)
        self.assertGreaterEqual(time.time() * 1000 + 50, due)


if __name__ == "__main__":
    import unittest
    unittest.main()
