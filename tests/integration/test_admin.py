"""Referral links, sign-ups, the admin API and the report in the running
daemon: GET /r/{code} redirects to the landing page and counts the visit,
POST /t/{tenant}/join enrols a referrer (once per email), the admin API
answers only with its bearer token, and the report's numbers match what
the test did."""

import json
import os
import tempfile
import time
import unittest
import urllib.parse

from harness import (DaemonTestCase, HOST, exchange, run_cli, scale,
                     wait_until)
import http.client
import re

TOKEN = "admin-token-for-tests-0123456789"
CONFIG = """
return {
  admin = { listen = "127.0.0.1:0", token = "%s" },
}
""" % TOKEN
SHOP = """
return {
  program = { landing = "https://shop.example/welcome?ref={code}",
              link = "https://go.shop.example/r/{code}",
              form_per_minute = 100 },
}
"""
TIGHT = """
return {
  program = { landing = "https://tight.example/?c={code}",
              form_per_minute = 2 },
}
"""
ADMIN_LISTENING = re.compile(r'mod=admin addr=127\.0\.0\.1:(\d+) '
                             r'msg="admin API listening"')


class AdminTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(
            tenants=(), extra_tenants={"shop": SHOP, "tight": TIGHT},
            config=CONFIG)
        cls.admin_port = int(cls.d.wait_log(ADMIN_LISTENING, scale(5))
                             .group(1))

    def admin(self, method, path, token=TOKEN, body=b""):
        conn = http.client.HTTPConnection(HOST, self.admin_port,
                                          timeout=scale(10))
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        try:
            return exchange(conn, method, path, body, headers)
        finally:
            conn.close()

    def join(self, tenant, body, form=False):
        if form:
            return self.d.request(
                "POST", "/t/%s/join" % tenant,
                urllib.parse.urlencode(body),
                {"Content-Type": "application/x-www-form-urlencoded"})
        return self.d.request("POST", "/t/%s/join" % tenant,
                              json.dumps(body),
                              {"Content-Type": "application/json"})

    def refer(self, code, email):
        return self.d.request("POST", "/t/shop/referrals",
                              json.dumps({"code": code,
                                          "person": {"email": email}}),
                              {"Content-Type": "application/json"})

    def report(self):
        res = self.admin("GET", "/admin/t/shop/report")
        self.assertEqual(res.status, 200, res)
        return res.json()

    # -- the command line's store and tenant checks ---------------------

    def test_cli_names_an_unknown_tenant(self):
        for args in (["report"], ["review", "list"], ["referrals", "list"],
                     ["referrers", "list"], ["audit", "list"],
                     ["dead", "list"], ["dead", "replay"],
                     ["events", "list"], ["zoho", "status"],
                     ["review", "approve", "1"]):
            res = run_cli(*args, "--data", self.d.data_dir, "--tenant", "shpo")
            self.assertEqual(res.returncode, 1, (args, res))
            self.assertEqual(res.stdout, b"", args)
            self.assertIn(b"no tenant 'shpo' in %s (tenants there: shop, "
                          b"tight)" % self.d.data_dir.encode(), res.stderr, args)
        # A tenant with nothing yet: its report says so plainly.
        res = run_cli("report", "--data", self.d.data_dir, "--tenant",
                      "tight")
        self.assertEqual(res.returncode, 0, res)
        self.assertIn(b"\nrefused by reason: none\nrewards issued: 0\n",
                      res.stdout)

    def test_cli_never_creates_a_store(self):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "typo")
            for args in (["review", "approve", "1"],
                         ["review", "reject", "1", "--reason", "no"],
                         ["dead", "replay"], ["report"]):
                res = run_cli(*args, "--data", missing, "--tenant", "shop")
                self.assertEqual(res.returncode, 1, (args, res))
                self.assertIn(missing.encode(), res.stderr, args)
                self.assertFalse(os.path.exists(missing), args)

    # -- sign-ups -------------------------------------------------------

    def test_join_new_repeated_and_invalid(self):
        res = self.join("shop", {"email": "Ana+news@Example.com",
                                 "name": "Ana"})
        self.assertEqual(res.status, 201, res)
        doc = res.json()
        self.assertRegex(doc["code"], r"^[2-9A-HJKMNP-TV-Z]{13}$")
        self.assertEqual(doc["link"],
                         "https://go.shop.example/r/" + doc["code"])
        again = self.join("shop", {"email": "ana@example.com"}, form=True)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json(), {"code": doc["code"],
                                        "link": doc["link"],
                                        "existing": True})
        other = self.join("shop", {"email": "bo@example.com"}, form=True)
        self.assertEqual(other.status, 201, other)
        self.assertNotEqual(other.json()["code"], doc["code"])
        bad = self.join("shop", {"email": "not an email"})
        self.assertEqual((bad.status, bad.error_code()),
                         (422, "invalid_email"))
        missing = self.join("shop", {"name": "Nobody"})
        self.assertEqual((missing.status, missing.error_code()),
                         (422, "missing_email"))
        body = self.d.request("POST", "/t/shop/join", "[1]",
                              {"Content-Type": "application/json"})
        self.assertEqual((body.status, body.error_code()),
                         (400, "invalid_body"))
        nope = self.join("nosuch", {"email": "a@example.com"})
        self.assertEqual((nope.status, nope.error_code()),
                         (404, "tenant_not_found"))
        get = self.d.request("GET", "/t/shop/join")
        self.assertEqual((get.status, get.error_code()),
                         (405, "method_not_allowed"))
        referrers = self.admin("GET", "/admin/t/shop/referrers").json()
        mine = [r for r in referrers["referrers"]
                if r["code"] == doc["code"]]
        self.assertEqual(len(mine), 1, referrers)
        self.assertEqual(mine[0]["source"], "join")
        self.assertTrue(mine[0]["contact_id"].startswith("join:"), mine)
        self.assertEqual(mine[0]["email"], "Ana+news@Example.com")

    def test_join_is_rate_limited_per_address(self):
        codes = [self.join("tight", {"email": "t%d@example.com" % i}).status
                 for i in range(3)]
        self.assertEqual(codes[:2], [201, 201])
        self.assertEqual(codes[2], 429)
        res = self.join("tight", {"email": "t9@example.com"})
        self.assertEqual((res.status, res.error_code()),
                         (429, "rate_limited"))
        self.assertIn("retry-after", res.headers)

    # -- links and the report -----------------------------------------

    def test_link_redirects_counts_and_reports(self):
        before = self.report()["total"]
        code = self.join("shop", {"email": "cy@example.com"}).json()["code"]
        res = self.d.request("GET", "/r/" + code.lower())
        self.assertEqual(res.status, 302, res)
        self.assertEqual(res.headers["location"],
                         "https://shop.example/welcome?ref=" + code)
        head = self.d.request("HEAD", "/r/" + code)
        self.assertEqual(head.status, 302)
        for path in ("/r/ZZZZZZZZZZZZZ", "/r/short", "/r/" + code + "X"):
            miss = self.d.request("GET", path)
            self.assertEqual((miss.status, miss.error_code()),
                             (404, "unknown_code"), path)
            self.assertNotIn("location", miss.headers)
        post = self.d.request("POST", "/r/" + code)
        self.assertEqual(post.status, 405)
        self.assertEqual(self.refer(code, "friend@example.com").status, 201)
        self.assertEqual(self.refer(code, "cy+x@example.com").status, 422)

        def counted():
            total = self.report()["total"]
            return total if total["visits"] == before["visits"] + 2 else None
        total = wait_until(counted, scale(5), "visits in the report")
        self.assertEqual(total["enrolled"], before["enrolled"] + 1)
        self.assertEqual(total["received"], before["received"] + 2)
        self.assertEqual(total["refused"], before["refused"] + 1)
        self.assertEqual(
            total["refused_by_reason"].get("self_referral", 0),
            before["refused_by_reason"].get("self_referral", 0) + 1)
        self.assertEqual(total["in_crm"], 0)
        self.assertIsNone(total["qualification_rate"])
        self.assertEqual(total["rewards"], {"count": 0, "value": {}})
        self.assertEqual(total["dead_letters"], 0)
        self.assertEqual(total["review"], 0)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        days = {d["day"]: d for d in self.report()["days"]}
        self.assertGreaterEqual(days[today]["visits"], 2)

        # The command line reads the same store, while the daemon runs.
        out = run_cli("report", "--data", self.d.data_dir, "--tenant",
                      "shop", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        cli = json.loads(out.stdout)
        self.assertEqual(cli["total"]["visits"], total["visits"])
        self.assertEqual(cli["total"]["received"], total["received"])
        csv = run_cli("report", "--data", self.d.data_dir, "--tenant",
                      "shop", "--csv")
        self.assertEqual(csv.returncode, 0, csv.stderr)
        lines = csv.stdout.decode().splitlines()
        self.assertTrue(lines[0].startswith("day,enrolled,visits,"), lines)
        self.assertTrue(lines[-1].startswith("total,"), lines)
        text = run_cli("report", "--data", self.d.data_dir, "--tenant",
                       "shop")
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn(b"qualification rate", text.stdout)

    # -- the admin API --------------------------------------------------

    def test_admin_needs_the_token(self):
        for token in (None, "wrong", TOKEN + "x", ""):
            res = self.admin("GET", "/admin/t/shop/report", token=token)
            self.assertEqual((res.status, res.error_code()),
                             (401, "unauthorized"), token)
        self.assertEqual(self.admin("GET", "/admin/t/shop/report").status,
                         200)
        self.assertNotIn(TOKEN, "\n".join(self.d.log_lines()))

    def test_admin_routes_and_errors(self):
        res = self.admin("GET", "/admin/t/nosuch/report")
        self.assertEqual((res.status, res.error_code()),
                         (404, "tenant_not_found"))
        res = self.admin("GET", "/admin/t/shop/nothing")
        self.assertEqual((res.status, res.error_code()), (404, "not_found"))
        res = self.admin("POST", "/admin/t/shop/report")
        self.assertEqual((res.status, res.error_code()),
                         (405, "method_not_allowed"))
        self.assertEqual(res.headers["allow"], "GET")
        res = self.admin("GET", "/admin/t/shop/dead/replay")
        self.assertEqual(res.status, 405)
        self.assertEqual(self.admin("GET", "/admin/t/shop/dead").json(),
                         {"tenant": "shop", "dead": []})
        self.assertEqual(
            self.admin("POST", "/admin/t/shop/dead/replay").json(),
            {"replayed": 0})
        res = self.admin("POST", "/admin/t/shop/dead/replay?job=5")
        self.assertEqual((res.status, res.error_code()),
                         (404, "job_not_found"))
        res = self.admin("POST", "/admin/t/shop/dead/replay?job=x")
        self.assertEqual((res.status, res.error_code()),
                         (400, "invalid_job"))
        res = self.admin("GET", "/admin/t/shop/referrals")
        self.assertEqual(res.status, 200)
        self.assertIsInstance(res.json()["referrals"], list)
        # Not on the public listener.
        pub = self.d.request("GET", "/admin/t/shop/report",
                             headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(pub.status, 404)


class AdminConfigTest(unittest.TestCase):

    def run_with(self, config):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "config.lua")
            with open(path, "w") as f:
                f.write(config)
            os.makedirs(os.path.join(root, "tenants"))
            return run_cli("run", "--config", path, "--data",
                           os.path.join(root, "data"), "--tenants",
                           os.path.join(root, "tenants"), "--listen",
                           "127.0.0.1:0")

    def test_public_address_needs_admin_public(self):
        res = self.run_with('return { admin = { listen = "0.0.0.0:0", '
                            'token = "%s" } }' % TOKEN)
        self.assertEqual(res.returncode, 2, res)
        self.assertIn(b"admin.listen", res.stderr)
        self.assertIn(b"admin.public", res.stderr)

    def test_token_is_required(self):
        res = self.run_with('return { admin = { listen = "127.0.0.1:0" } }')
        self.assertEqual(res.returncode, 2, res)
        self.assertIn(b"admin.token", res.stderr)
        res = self.run_with('return { admin = { token = "short" } }')
        self.assertEqual(res.returncode, 2, res)
        self.assertIn(b"at least 16", res.stderr)


if __name__ == "__main__":
    unittest.main()
