"""Reloading tenants: SIGHUP keeps a working tenant's previous version when
its new files fail, as the folder watcher does; a removed tenant folder is
logged as removed and forgotten (404) and can come back; the rebuild after
a limit hit is logged as a rebuild, not as a version switch."""

import json
import os
import re
import shutil
import signal
import time
import unittest

from harness import (DaemonTestCase, scale, signed_headers, hook_path,
                     wait_until)

ORDERS = """
return {
  sources = { s = { id = "json:id", hook = "on_order" } },
  on_order = function(ev)
    return { id = ev.json.id, tag = "%s" }
  end,
}
"""

BROKEN = "return { sources = { s = { id = }\n"

RUNAWAY = """
return {
  sources = { s = { id = "json:id", hook = "on_order" } },
  on_order = function(ev)
    if ev.json.spin then while true do end end
    return { id = ev.json.id }
  end,
}
"""

WITH_SECRET = """
return { sources = { s = { secret = file("secrets/s") } } }
"""
KEY1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY2 = "whsec_Z2xvYmV4LWtleS1mb3ItdGVzdHMtb25seQ=="

RELOADED = re.compile(r'msg="reloaded (\d+) tenants"')
# after a SIGHUP in which some tenants' files did not load
RELOADED_BUT = re.compile(r'level=warn mod=tenant msg="reloaded (\d+) '
                          r'tenants; (\d+) of them did not load"')


def outcomes(d, tenant):
    """{delivery id: outcome} of every stored event of a tenant."""
    return {json.loads(ev["body"])["id"]: ev.get("outcome")
            for ev in d.events_list(tenant)}


class ReloadTest(DaemonTestCase):

    def post(self, d, tenant, oid, **extra):
        return d.post(tenant, "s", json.dumps(dict(id=oid, **extra)))

    def wait_outcome(self, d, tenant, oid):
        return wait_until(lambda: outcomes(d, tenant).get(oid),
                          scale(10), "the outcome of %s" % oid)

    def test_sighup_with_a_broken_tenant_keeps_its_previous_version(self):
        d = self.daemon(tenants=(), extra_tenants={
            "t1": ORDERS % "one", "t2": ORDERS % "two"})
        self.assertEqual(self.post(d, "t2", "before").status, 202)
        v1 = self.wait_outcome(d, "t2", "before")["version"]

        # Written while the watcher is not looking would not matter: the
        # reload below is what SIGHUP does to every tenant.
        mark = len(d.log_lines())
        d.write_tenant("t2", BROKEN)
        d.send_signal(signal.SIGHUP)
        m = d.wait_log(RELOADED_BUT, scale(5), mark)
        self.assertEqual(m.groups(), ("2", "1"))
        d.wait_log(re.compile(r"tenant=t2 msg=\"(files do not load|changed "
                              r"files do not load); the previous version "
                              r"keeps serving"), scale(5), mark)

        resp = self.post(d, "t2", "after-hup")
        self.assertEqual(resp.status, 202, resp.body)
        out = self.wait_outcome(d, "t2", "after-hup")
        self.assertEqual((out["status"], out["version"]), ("done", v1))
        self.assertEqual(out["result"], {"id": "after-hup", "tag": "two"})
        self.assertEqual(self.post(d, "t1", "other").status, 202)

        # Fixed and reloaded: the new version serves.
        mark = len(d.log_lines())
        d.write_tenant("t2", ORDERS % "fixed")
        d.send_signal(signal.SIGHUP)
        d.wait_log(RELOADED, scale(5), mark)
        wait_until(lambda: self.post(d, "t2", "fixed-%d" % len(
            d.log_lines())).status == 202, scale(5), "t2 to accept")
        self.assertEqual(self.post(d, "t2", "after-fix").status, 202)
        out = self.wait_outcome(d, "t2", "after-fix")
        self.assertEqual(out["result"]["tag"], "fixed")
        self.assertNotEqual(out["version"], v1)

    def test_sighup_tenant_that_never_loaded_stays_unavailable(self):
        d = self.daemon(tenants=(), extra_tenants={"bad": BROKEN})
        resp = self.post(d, "bad", "x")
        self.assertEqual((resp.status, resp.error_code()),
                         (503, "tenant_unavailable"))
        mark = len(d.log_lines())
        d.send_signal(signal.SIGHUP)
        m = d.wait_log(RELOADED_BUT, scale(5), mark)
        self.assertEqual(m.groups(), ("1", "1"))
        resp = self.post(d, "bad", "y")
        self.assertEqual((resp.status, resp.error_code()),
                         (503, "tenant_unavailable"))

    def test_private_addresses_need_the_operators_consent(self):
        private = """
return {
  allowed_hosts = { { host = "127.0.0.1", port = 9, private = true } },
  sources = { s = { id = "json:id" } },
}
"""
        d = self.daemon(tenants=(), allow_private=False, extra_tenants={
            "sneaky": private, "fine": ORDERS % "a"})
        resp = self.post(d, "sneaky", "x")
        self.assertEqual((resp.status, resp.error_code()),
                         (503, "tenant_unavailable"))
        self.assertTrue(any(
            "setting 'allowed_hosts': 127.0.0.1: private addresses are "
            "refused on this host (the operator allows them with "
            "scripts.allow_private = true)" in line
            for line in d.log_lines()), d.log_tail())
        self.assertEqual(self.post(d, "fine", "f1").status, 202)

    def test_removed_tenant_folder_is_logged_as_removed_and_forgotten(self):
        d = self.daemon(tenants=(), extra_tenants={
            "gone": ORDERS % "a", "stays": ORDERS % "b"})
        self.assertEqual(self.post(d, "gone", "g1").status, 202)
        self.wait_outcome(d, "gone", "g1")

        mark = len(d.log_lines())
        shutil.rmtree(os.path.join(d.tenants_dir, "gone"))
        d.wait_log(re.compile(r'tenant=gone msg="removed: its folder is '
                              r'gone'), scale(5), mark)
        resp = self.post(d, "gone", "g2")
        self.assertEqual((resp.status, resp.error_code()),
                         (404, "tenant_not_found"))
        self.assertNotIn("changed files do not load",
                         "\n".join(d.log_lines()[mark:]))
        self.assertEqual(self.post(d, "stays", "s1").status, 202)

        # The folder comes back: the watcher loads it again.
        mark = len(d.log_lines())
        d.write_tenant("gone", ORDERS % "again")
        wait_until(lambda: self.post(d, "gone", "probe").status == 202,
                   scale(5), "the re-made tenant to accept webhooks")
        self.assertEqual(self.post(d, "gone", "g3").status, 202)
        self.assertEqual(self.wait_outcome(d, "gone", "g3")["result"]["tag"],
                         "again")

    def test_a_tenant_added_while_running_is_logged_as_loaded(self):
        d = self.daemon(tenants=(), extra_tenants={"old": ORDERS % "a"})
        mark = len(d.log_lines())
        d.write_tenant("fresh", ORDERS % "new")
        d.wait_log(re.compile(r'mod=script tenant=fresh version=\S+ '
                              r'msg="loaded a new tenant"'), scale(5), mark)
        self.assertEqual(self.post(d, "fresh", "f1").status, 202)
        self.assertEqual(self.wait_outcome(d, "fresh", "f1")["result"]["tag"],
                         "new")
        # the start-up load is one summary line, not a line per tenant
        self.assertNotIn("loaded a new tenant", "\n".join(d.log_lines()[:mark]))

    def test_a_changed_secret_in_a_subfolder_reloads_the_tenant(self):
        d = self.daemon(start=False, tenants=(),
                        extra_tenants={"sec": WITH_SECRET})
        secrets = os.path.join(d.tenants_dir, "sec", "secrets")
        os.mkdir(secrets)

        def put_secret(key):  # atomically, as a secret mount does
            tmp = os.path.join(secrets, ".s.tmp")
            with open(tmp, "w") as f:
                f.write(key + "\n")
            os.replace(tmp, os.path.join(secrets, "s"))

        def post(key):
            body = b'{"id": "x"}'
            return d.request("POST", hook_path("sec", "s"), body,
                             signed_headers(key, body)).status

        put_secret(KEY1)
        d.start()
        self.assertEqual((post(KEY1), post(KEY2)), (202, 401))
        put_secret(KEY2)  # rotated: no SIGHUP, only the file changes
        wait_until(lambda: post(KEY2) == 202, scale(10),
                   "the tenant reloaded with the new secret")
        self.assertEqual(post(KEY1), 401)

    def test_a_tenant_edited_without_pause_does_not_hold_back_another(self):
        # Each tenant is reloaded once its own files are quiet; one shared
        # quiet timer, restarted by any change, held t1's edit back for as
        # long as t2 kept changing.
        d = self.daemon(tenants=(), extra_tenants={
            "t1": ORDERS % "a1", "t2": ORDERS % "b0"})
        first = len(d.log_lines())
        d.write_tenant("t1", ORDERS % "a2")
        t0 = time.monotonic()
        seen = None
        for i in range(40):  # t2 changes every 0.1 s for 4 s
            d.write_tenant("t2", ORDERS % ("b%d" % (i + 1)))
            if seen is None and any('tenant=t1 ' in line and
                                    "files changed; reloading" in line
                                    for line in d.log_lines()[first:]):
                seen = time.monotonic() - t0
            time.sleep(0.1)
        self.assertIsNotNone(seen, "t1 was not reloaded while t2 changed")
        self.assertLess(seen, scale(1.5))

    def test_sighup_forgets_a_removed_tenant(self):
        d = self.daemon(tenants=(), extra_tenants={
            "gone": ORDERS % "a", "stays": ORDERS % "b"})
        d.send_signal(signal.SIGSTOP)  # the watcher must not see it first
        try:
            shutil.rmtree(os.path.join(d.tenants_dir, "gone"))
        finally:
            d.send_signal(signal.SIGCONT)
        mark = len(d.log_lines())
        d.send_signal(signal.SIGHUP)
        m = d.wait_log(RELOADED, scale(5), mark)
        self.assertEqual(m.group(1), "1")
        resp = self.post(d, "gone", "x")
        self.assertEqual((resp.status, resp.error_code()),
                         (404, "tenant_not_found"))

    def test_rebuild_after_a_limit_is_logged_as_a_rebuild(self):
        d = self.daemon(tenants=(), extra_tenants={"loopy": RUNAWAY})
        self.assertEqual(self.post(d, "loopy", "spin", spin=True).status, 202)
        out = self.wait_outcome(d, "loopy", "spin")
        self.assertEqual(out["status"], "failed")
        d.wait_log(re.compile(r'tenant=loopy version=[0-9a-f]{16} '
                              r'msg="rebuilt the script state after a limit '
                              r'hit"'), scale(5))
        self.assertFalse([line for line in d.log_lines()
                          if "switched to the new version" in line])


if __name__ == "__main__":
    unittest.main()
