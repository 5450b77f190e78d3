"""The Zoho sync in the running daemon, against the Zoho simulator: the
cohort is enrolled from a full poll of Contacts (the expected referrers are
computed here from the sample files), codes are well formed and unique,
Watch callbacks are checked, stored and acted on, a missed callback is
caught by the poll, a failing cohort hook is retried after a fix, a
restart reuses the token and the cursor, and operators see the figures."""

import json
import os
import re
import signal
import sys
import unittest
import urllib.request

from harness import (DaemonTestCase, SOURCE_DIR, free_port, run_cli, scale,
                     wait_until)

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "zoho_sim"))
from zohosim import server as simserver  # noqa: E402
from zohosim.sim import Sim  # noqa: E402

DATA = os.path.join(SOURCE_DIR, "data", "zoho-sample")
CLIENT = ("1000.DEMO", "demo-secret",
          "1000.6030bdc4a78ce82dd81226206ea94fe3"
          ".d80b315c54779d22735f075d26ccf116")
TOKEN = "channel-token-for-tests-0123"
CODE_RE = re.compile(r"^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{13}$")

COHORT = """
  cohort = function(c)
    %s
    local tier = c.Customer_Tier
    return (tier == "Gold" or tier == "Platinum")
       and type(c.NPS_Score) == "number" and c.NPS_Score >= 8
       and type(c.Email) == "string" and c.Email ~= ""
       and c.Email_Opt_Out ~= true
  end,
"""


def tenant_lua(sim_port, daemon_port, notify=True, poll_every=3600,
               cohort_prefix=""):
    notify_line = ""
    if notify:
        notify_line = ('notify = { url = "http://127.0.0.1:%d/t/acme/zoho/'
                       'notify", token = "%s" },' % (daemon_port, TOKEN))
    return """
return {
  zoho = {
    client_id = "%s", client_secret = "%s", refresh_token = "%s",
    dc = "eu", accounts_url = "http://127.0.0.1:%d/eu/accounts",
    allowed_hosts = { { host = "127.0.0.1", port = %d, http = true,
                        private = true } },
    modules = { Contacts = { "Email", "Full_Name", "Customer_Tier",
                             "NPS_Score", "Email_Opt_Out" } },
    poll_every_s = %d,
    %s
  },
%s
}
""" % (CLIENT[0], CLIENT[1], CLIENT[2], sim_port, sim_port, poll_every,
       notify_line, COHORT % cohort_prefix)


def sample_contacts():
    with open(os.path.join(DATA, "contacts.json")) as f:
        data = json.load(f)
    return data["data"] if isinstance(data, dict) else data


def in_cohort(c):
    """The demo cohort, as data/README.md describes it."""
    nps = c.get("NPS_Score")
    return (c.get("Customer_Tier") in ("Gold", "Platinum")
            and isinstance(nps, (int, float)) and not isinstance(nps, bool)
            and nps >= 8 and bool(c.get("Email"))
            and c.get("Email_Opt_Out") is not True)


def sim_call(sim, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.base_url + path, data=data,
                                 method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
    return json.loads(text) if text else None


def referrers(d):
    out = run_cli("referrers", "list", "--data", d.data_dir, "--tenant",
                  "acme", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def zoho_status(d):
    out = run_cli("zoho", "status", "--data", d.data_dir, "--tenant", "acme")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class ZohoSyncTest(DaemonTestCase):

    def setUp(self):
        self.srv = simserver.start(Sim(DATA))
        self.sim = self.srv.sim
        self.sim_port = int(self.sim.base_url.rsplit(":", 1)[1])
        self.expected = {c["id"] for c in sample_contacts() if in_cohort(c)}

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.sim.watch.stop()

    def start(self, **kw):
        port = free_port()
        d = self.daemon(start=False, tenants=(), port=port,
                        extra_tenants={"acme": tenant_lua(self.sim_port,
                                                          port, **kw)})
        d.start()
        return d

    def wait_enrolled(self, d, n):
        wait_until(lambda: len(referrers(d)) >= n, scale(30),
                   "%d referrers enrolled" % n, interval=0.2)
        return referrers(d)

    def test_cohort_is_enrolled_with_unique_codes(self):
        self.assertGreater(len(self.expected), 100)
        d = self.start()
        got = self.wait_enrolled(d, len(self.expected))
        self.assertEqual({r["contact_id"] for r in got}, self.expected)
        codes = [r["code"] for r in got]
        self.assertTrue(all(CODE_RE.match(c) for c in codes), codes[:5])
        self.assertEqual(len(set(codes)), len(codes))
        by_id = {c["id"]: c for c in sample_contacts()}
        for r in got:
            self.assertEqual(r["email"], by_id[r["contact_id"]]["Email"])
            self.assertEqual(r["source"], "cohort")
        # 1,500 contacts at 200 a page: 8 list calls, and a last one that
        # finds nothing new; one token for all of it.
        calls = sim_call(self.sim, "GET", "/_sim/calls?kind=api")["calls"]
        lists = [c for c in calls if c["path"].endswith("/Contacts")]
        self.assertLessEqual(len(lists), 10)
        self.assertTrue(all("fields" in c["query"] for c in lists))
        self.assertEqual(sim_call(self.sim, "GET",
                                  "/_sim/counters")["refreshes"], 1)
        status = zoho_status(d)
        self.assertIn("Contacts", status["cursors"])
        self.assertNotIn("access_token", json.dumps(status))

        # Restart: the cached token and the cursor are reused, so nothing
        # is enrolled twice and no new token is asked for. Credits spent
        # are saved on the way down (and every 15 s while running).
        d.stop()
        # One credit per call: the lists and the Watch subscription.
        self.assertEqual(zoho_status(d)["credits_used_24h"], len(calls))
        self.assertEqual(len(calls), len(lists) + 1)
        d.start()
        self.assertEqual(len(referrers(d)), len(self.expected))
        wait_until(lambda: zoho_status(d)["cursors"]["Contacts"] is not None,
                   scale(5), "cursor")
        self.assertEqual(sim_call(self.sim, "GET",
                                  "/_sim/counters")["refreshes"], 1)
        self.assertEqual({r["code"] for r in referrers(d)}, set(codes))

    def test_notification_enrols_and_bad_tokens_are_refused(self):
        d = self.start()
        self.wait_enrolled(d, len(self.expected))
        outsider = next(c for c in sample_contacts()
                        if not in_cohort(c) and c.get("Email")
                        and c.get("Email_Opt_Out") is not True)
        self.assertEqual(len(sim_call(self.sim, "GET", "/_sim/watch")
                             ["channels"]), 1)
        sim_call(self.sim, "POST", "/_sim/records/Contacts",
                 {"data": [{"id": outsider["id"], "Customer_Tier": "Gold",
                            "NPS_Score": 9}], "notify": True})
        got = self.wait_enrolled(d, len(self.expected) + 1)
        self.assertIn(outsider["id"], {r["contact_id"] for r in got})
        deliveries = sim_call(self.sim, "GET", "/_sim/deliveries")
        self.assertEqual([x["status"] for x in deliveries["deliveries"]],
                         [202])
        events = d.events_list("acme")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["source"], "zoho")
        self.assertNotIn(TOKEN, events[0]["body"])
        self.assertEqual(events[0]["outcome"]["status"], "done")

        path = "/t/acme/zoho/notify"
        good = {"module": "Contacts", "ids": [outsider["id"]],
                "operation": "update",
                "channel_id": sim_call(self.sim, "GET", "/_sim/watch")
                ["channels"][0]["channel_id"], "token": TOKEN}
        for change, status, code in (
                ({"token": TOKEN[:-1] + "X"}, 403, "invalid_channel_token"),
                ({"token": TOKEN + "X"}, 403, "invalid_channel_token"),
                ({"channel_id": "1"}, 403, "invalid_channel_token"),
                ({"ids": "nope"}, 400, "invalid_notification")):
            body = dict(good, **change)
            r = d.request("POST", path, json.dumps(body).encode(),
                          {"Content-Type": "application/json"})
            self.assertEqual((r.status, r.error_code()), (status, code), body)
        r = d.request("POST", "/t/nobody/zoho/notify", b"{}")
        self.assertEqual((r.status, r.error_code()), (404, "tenant_not_found"))
        r = d.request("GET", path)
        self.assertEqual(r.status, 405)
        self.assertEqual(len(d.events_list("acme")), 1)

    def test_missed_notification_is_caught_by_the_poll(self):
        d = self.start()
        self.wait_enrolled(d, len(self.expected))
        outsider = next(c for c in sample_contacts()
                        if not in_cohort(c) and c.get("Email")
                        and c.get("Email_Opt_Out") is not True)
        sim_call(self.sim, "POST", "/_sim/faults",
                 {"watch_fail": {"count": 1}})
        sim_call(self.sim, "POST", "/_sim/records/Contacts",
                 {"data": [{"id": outsider["id"], "Customer_Tier": "Platinum",
                            "NPS_Score": 10}], "notify": True})
        sim_call(self.sim, "POST", "/_sim/watch/drain", {"timeout": 5})
        deliveries = sim_call(self.sim, "GET", "/_sim/deliveries")
        self.assertIsNone(deliveries["deliveries"][0]["status"])
        self.assertEqual(len(referrers(d)), len(self.expected))
        d.send_signal(signal.SIGHUP)  # a reload polls at once
        got = self.wait_enrolled(d, len(self.expected) + 1)
        self.assertIn(outsider["id"], {r["contact_id"] for r in got})
        self.assertEqual(d.events_list("acme"), [])

    def test_failed_cohort_calls_are_retried_after_a_fix(self):
        broken = ('if c.Customer_Tier == "Platinum" then '
                  'error("no platinum yet") end')
        d = self.start(notify=False, cohort_prefix=broken)
        platinum = {c["id"] for c in self.expected_contacts("Platinum")}
        self.assertGreater(len(platinum), 0)
        self.wait_enrolled(d, len(self.expected) - len(platinum))
        wait_until(lambda: zoho_status(d).get("records_to_retry", 0) > 0,
                   scale(10), "retry list")
        # Every Platinum contact failed, not only the cohort's.
        all_platinum = [c for c in sample_contacts()
                        if c.get("Customer_Tier") == "Platinum"]
        self.assertEqual(zoho_status(d)["records_to_retry"],
                         len(all_platinum))
        self.assertEqual(
            {r["contact_id"] for r in referrers(d)} & platinum, set())
        d.write_tenant("acme", tenant_lua(self.sim_port, d.listen_port,
                                          notify=False))
        got = self.wait_enrolled(d, len(self.expected))
        self.assertEqual({r["contact_id"] for r in got}, self.expected)
        wait_until(lambda: "records_to_retry" not in zoho_status(d),
                   scale(10), "retry list emptied")

    def expected_contacts(self, tier):
        return [c for c in sample_contacts()
                if in_cohort(c) and c["Customer_Tier"] == tier]

    def test_metrics_show_the_sync(self):
        d = self.start(notify=False)
        self.wait_enrolled(d, len(self.expected))

        def metric(name):
            text = d.request("GET", "/metrics").body.decode()
            m = re.search(r'^%s\{tenant="acme"\} (\d+)$' % name, text, re.M)
            return int(m.group(1)) if m else None

        wait_until(lambda: metric("referee_zoho_enrolled_total") ==
                   len(self.expected), scale(5), "metrics refreshed")
        self.assertEqual(metric("referee_zoho_records_total"),
                         len(sample_contacts()))
        self.assertGreater(metric("referee_zoho_credits_used"), 0)
        # Enterprise edition, `users` not set: 50,000 credits a day.
        self.assertEqual(metric("referee_zoho_credits_budget"), 50000)
        # Nothing under way once caught up; a poll that Zoho holds up is.
        wait_until(lambda: metric("referee_zoho_busy") == 0, scale(5),
                   "sync idle")
        sim_call(self.sim, "POST", "/_sim/faults",
                 {"slow": {"ms": 3000, "count": 3}})
        d.send_signal(signal.SIGHUP)  # a reload polls at once
        wait_until(lambda: metric("referee_zoho_busy") > 0, scale(3),
                   "a slow poll under way", interval=0.1)
        wait_until(lambda: metric("referee_zoho_busy") == 0, scale(15),
                   "sync idle again", interval=0.2)


if __name__ == "__main__":
    unittest.main()
