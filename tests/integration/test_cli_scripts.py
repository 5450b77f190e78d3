"""`referee check` and `referee call` as a tenant author uses them, and the
config checks that must stop `referee run` with exit 2 before anything
starts: listen addresses the listener cannot bind, script caps."""

import os
import socket
import re
import subprocess
import tempfile
import unittest

from harness import BIN, DaemonTestCase, run_cli, scale, wait_until

SOURCE_ONLY = """
return {
  sources = {
    shop = { hook = "on_order" },
    crm = { hook = "on_crm" },
    plain = {},
  },
  on_order = function(ev) return { seen = ev.id } end,
  on_crm = function(ev) return true end,
}
"""

FAILING = """
return {
  cohort = function(contact)
    if contact.boom then error("boom " .. contact.boom) end
    return contact.n * 2
  end,
}
"""


class TenantFolder:
    """A throwaway tenant folder named `name` holding tenant.lua."""

    def __init__(self, name, text):
        self.root = tempfile.TemporaryDirectory(prefix="referee-cli-")
        self.path = os.path.join(self.root.name, name)
        os.makedirs(self.path)
        with open(os.path.join(self.path, "tenant.lua"), "w") as f:
            f.write(text)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        self.root.cleanup()


def call_stdin(folder, hook, text, *extra):
    """`referee call FOLDER HOOK -` with text on stdin."""
    return subprocess.run([BIN, "call", folder, hook, "-"] + list(extra),
                          input=text.encode(), capture_output=True,
                          timeout=scale(30))


class CheckAndCallTest(unittest.TestCase):

    def test_call_reads_the_input_from_stdin_with_a_dash(self):
        with TenantFolder("calc", FAILING) as folder:
            res = call_stdin(folder, "cohort", '{"n": 21}')
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(res.stdout, b"42\n")
            self.assertEqual(res.stderr, b"")

    def test_call_names_an_input_that_is_not_json(self):
        with TenantFolder("calc", FAILING) as folder:
            res = call_stdin(folder, "cohort", '{"n": 21,}')
        self.assertEqual((res.returncode, res.stdout), (1, b""))
        self.assertEqual(res.stderr, b"referee call: -: not strict JSON "
                         b"(byte 9: expected a string as an object key)\n")

    def test_call_names_a_hook_the_script_lacks_as_a_usage_error(self):
        with TenantFolder("calc", FAILING) as folder:
            res = call_stdin(folder, "on_shop", "{}")
        self.assertEqual((res.returncode, res.stdout), (1, b""))
        self.assertEqual(res.stderr, b"referee call: the tenant's script "
                         b"has no hook 'on_shop'\n")

    def test_call_prints_an_error_once(self):
        with TenantFolder("calc", FAILING) as folder:
            res = call_stdin(folder, "cohort", '{"boom": "x"}')
        self.assertEqual(res.returncode, 1)
        self.assertEqual(res.stdout, b"")
        err = res.stderr.decode()
        self.assertEqual(err.count("boom x"), 1, err)
        self.assertNotIn("level=", err)
        self.assertRegex(err, r"^\S*calc/tenant\.lua:4: boom x\n"
                              r"stack traceback:\n")

    def test_call_after_a_limit_logs_a_rebuild_not_a_switch(self):
        spin = "return { cohort = function() while true do end end }\n"
        with TenantFolder("spin", spin) as folder:
            res = call_stdin(folder, "cohort", "{}")
        self.assertEqual(res.returncode, 1)
        err = res.stderr.decode()
        self.assertIn("cpu budget of 50 ms exceeded", err)
        self.assertNotIn("switched to the new version", err)

    def test_check_lists_source_hooks(self):
        with TenantFolder("shop", SOURCE_ONLY) as folder:
            res = run_cli("check", folder)
        self.assertEqual(res.returncode, 0, res)
        self.assertRegex(res.stdout.decode(),
                         r"^ok: tenant shop, version [0-9a-f]{16}, 3 sources, "
                         r"hooks: (on_order \(source shop\), on_crm \(source "
                         r"crm\)|on_crm \(source crm\), on_order \(source "
                         r"shop\))\n$")

    def test_check_lists_crm_and_source_hooks_or_none(self):
        text = SOURCE_ONLY.replace("plain = {},", "").replace(
            "on_crm = function", "cohort = function() end,\n  on_crm = "
            "function")
        with TenantFolder("both", text) as folder:
            out = run_cli("check", folder).stdout.decode()
        self.assertRegex(out, r"hooks: cohort, on_\w+ \(source \w+\), "
                              r"on_\w+ \(source \w+\)\n$")
        with TenantFolder("empty", "return {}\n") as folder:
            out = run_cli("check", folder).stdout.decode()
        self.assertRegex(out, r"0 sources, hooks: none\n$")

    def test_check_takes_dot_and_refuses_the_file_itself(self):
        # "." is the folder it names; tenant.lua itself is not a folder.
        with TenantFolder("dotted", "return {}\n") as folder:
            res = subprocess.run([BIN, "check", "."], cwd=folder,
                                 capture_output=True)
            self.assertEqual(res.returncode, 0, res)
            self.assertRegex(res.stdout.decode(), r"^ok: tenant dotted, ")
            lua = os.path.join(folder, "tenant.lua")
            res = run_cli("check", lua)
            self.assertEqual(res.returncode, 1, res)
            self.assertEqual(res.stdout.decode() + res.stderr.decode(),
                             "%s: give the tenant's folder, not a file in "
                             "it\n" % lua)

    def test_check_refuses_a_folder_name_that_is_no_tenant_id(self):
        for name in ("bad name", "Acme", "-x", "a" * 65, "acme_eu", "a--b",
                     "b-"):
            with self.subTest(name=name), \
                    TenantFolder(name, "return {}\n") as folder:
                res = run_cli("check", folder)
                self.assertEqual(res.returncode, 1, res)
                self.assertIn("the folder name '%s' is not a valid tenant id"
                              % name, res.stdout.decode())
                res = call_stdin(folder, "cohort", "{}")
                self.assertEqual(res.returncode, 1, res)
                self.assertIn(b"is not a valid tenant id", res.stderr)

    def test_check_refuses_limits_over_the_default_caps(self):
        text = "return {\n  limits = { cpu_ms = 5000 },\n}\n"
        with TenantFolder("greedy", text) as folder:
            res = run_cli("check", folder)
        self.assertEqual(res.returncode, 1)
        self.assertRegex(res.stdout.decode(),
                         r"greedy/tenant\.lua:2: setting 'limits\.cpu_ms': "
                         r"5000 ms is over the operator's cap of 1000 ms "
                         r"\(scripts\.cpu_ms_max in the daemon config\)")


class ConfigCheckTest(unittest.TestCase):
    """Settings that could only fail at start-up fail the config check."""

    def run_config(self, text, *extra):
        with tempfile.TemporaryDirectory(prefix="referee-cli-") as root:
            path = os.path.join(root, "config.lua")
            with open(path, "w") as f:
                f.write(text)
            res = run_cli("run", "--config", path, "--data",
                          os.path.join(root, "d"), "--tenants", root, *extra)
            return res, path

    def test_listen_the_listener_cannot_bind_exits_2_naming_the_line(self):
        for listen in ("localhost:8080", "[::1]:8080", "127.1:8080",
                       "127.0.0.1:99999", "0.0.0.0"):
            with self.subTest(listen=listen):
                res, path = self.run_config(
                    'return {\n  log = { level = "info" },\n'
                    '  listen = "%s",\n}\n' % listen)
                self.assertEqual(res.returncode, 2, res)
                self.assertNotIn(b"listening", res.stderr)
                lines = res.stderr.decode().splitlines()
                self.assertEqual(len(lines), 1, res.stderr)
                self.assertEqual(
                    lines[0],
                    "referee: %s:3: setting 'listen': expected "
                    "\"A.B.C.D:PORT\": a dotted-quad IPv4 address and a "
                    "port 0-65535 (host names such as localhost, short "
                    "forms such as 127.1 and IPv6 are not supported), got "
                    "\"%s\"" % (path, listen))

    def test_an_address_in_use_exits_2_before_anything_starts(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            addr = "127.0.0.1:%d" % busy.getsockname()[1]
            for cfg, extra, where in (
                    ('return {\n  listen = "%s",\n}\n' % addr, (),
                     ":2: setting 'listen'"),
                    ('return {\n  admin = { token = "%s",\n'
                     '    listen = "%s" },\n}\n' % ("t" * 20, addr),
                     ("--listen", "127.0.0.1:0"),
                     ":3: setting 'admin.listen'"),
                    ('return {}\n', ("--listen", addr), "--listen")):
                with self.subTest(where=where):
                    res, path = self.run_config(cfg, *extra)
                    self.assertEqual(res.returncode, 2, res)
                    lines = res.stderr.decode().splitlines()
                    self.assertEqual(len(lines), 1, res.stderr)
                    prefix = where if where == "--listen" else path + where
                    self.assertEqual(
                        lines[0], "referee: %s: cannot listen on %s: "
                        "Address already in use (another process listens "
                        "there)" % (prefix, addr))

    def test_a_tenants_setting_that_is_no_directory_exits_2(self):
        # It used to create the store, then stop with exit 1 and no reason
        # on the command line.
        with tempfile.TemporaryDirectory(prefix="referee-cli-") as root:
            path = os.path.join(root, "config.lua")
            data = os.path.join(root, "d")
            missing = os.path.join(root, "nowhere")
            with open(path, "w") as f:
                f.write('return {\n  listen = "127.0.0.1:0",\n'
                        '  tenants = "%s",\n}\n' % missing)
            res = run_cli("run", "--config", path, "--data", data)
            self.assertEqual(res.returncode, 2, res)
            self.assertEqual(res.stderr.decode(),
                             "referee: %s:3: setting 'tenants': %s: No such "
                             "file or directory\n" % (path, missing))
            self.assertFalse(os.path.exists(data))
            res = run_cli("run", "--config", path, "--data", data,
                          "--tenants", path)
            self.assertEqual(res.returncode, 2, res)
            self.assertEqual(res.stderr.decode(),
                             "referee: --tenants: %s: not a directory\n"
                             % path)

    def test_a_data_setting_that_is_no_directory_exits_2(self):
        # It used to exit 1 with a log line and no setting named.
        with tempfile.TemporaryDirectory(prefix="referee-cli-") as root:
            tenants = os.path.join(root, "tenants")
            os.mkdir(tenants)
            afile = os.path.join(root, "afile")
            open(afile, "w").close()
            path = os.path.join(root, "config.lua")
            with open(path, "w") as f:
                f.write('return {\n  listen = "127.0.0.1:0",\n'
                        '  data = "%s",\n}\n' % afile)
            res = run_cli("run", "--config", path, "--tenants", tenants)
            self.assertEqual(res.returncode, 2, res)
            self.assertEqual(res.stderr.decode(),
                             "referee: %s:3: setting 'data': %s: not a "
                             "directory\n" % (path, afile))
            deep = os.path.join(root, "no", "such")
            res = run_cli("run", "--listen", "127.0.0.1:0", "--data", deep,
                          "--tenants", tenants)
            self.assertEqual(res.returncode, 2, res)
            self.assertEqual(res.stderr.decode(),
                             "referee: --data: %s: No such file or "
                             "directory\n" % deep)

    def test_admin_on_the_listen_address_exits_2(self):
        res, path = self.run_config(
            'return {\n  listen = "127.0.0.1:18777",\n'
            '  admin = { token = "%s",\n'
            '    listen = "127.0.0.1:18777" },\n}\n' % ("t" * 20))
        self.assertEqual(res.returncode, 2, res)
        self.assertEqual(res.stderr.decode(),
                         "referee: %s:4: setting 'admin.listen': "
                         "127.0.0.1:18777 is also the address of %s:2: "
                         "setting 'listen'\n" % (path, path))

    def test_listen_flag_the_listener_cannot_bind_is_a_usage_error(self):
        for listen in ("localhost:8080", "[::1]:8080", "127.1:8080"):
            with self.subTest(listen=listen):
                res = run_cli("run", "--listen", listen)
                self.assertEqual(res.returncode, 2, res)
                self.assertEqual(res.stdout, b"")
                lines = res.stderr.decode().splitlines()
                self.assertEqual(len(lines), 1, res.stderr)
                self.assertIn("dotted-quad IPv4", lines[0])
                self.assertIn("'%s'" % listen, lines[0])

    def test_default_budget_over_the_cap_exits_2(self):
        res, path = self.run_config(
            "return { scripts = {\n  cpu_ms = 2000,\n} }\n")
        self.assertEqual(res.returncode, 2, res)
        self.assertEqual(res.stderr.decode(),
                         "referee: %s:2: setting 'scripts.cpu_ms': the "
                         "default budget scripts.cpu_ms (2000) is over the "
                         "cap scripts.cpu_ms_max (1000)\n" % path)


class TenantCapsInDaemonTest(DaemonTestCase):

    def test_a_second_daemon_on_the_same_data_exits_2(self):
        # Two would both poll Zoho, run the outbox and issue rewards.
        d = self.daemon(tenants=(), extra_tenants={"a": "return {}\n"})
        res = run_cli("run", "--listen", "127.0.0.1:0", "--data",
                      d.data_dir, "--tenants", d.tenants_dir)
        self.assertEqual(res.returncode, 2, res)
        self.assertEqual(res.stderr.decode(),
                         "referee: --data: %s is in use by another referee "
                         "run (pid %d)\n" % (d.data_dir, d.proc.pid))
        self.assertEqual(d.post("a", "s", b"{}").status, 404)  # still up
        # the lock is on the folder: deleting the pid file does not lift it
        os.remove(os.path.join(d.data_dir, "daemon.pid"))
        res = run_cli("run", "--listen", "127.0.0.1:0", "--data",
                      d.data_dir, "--tenants", d.tenants_dir)
        self.assertEqual(res.returncode, 2, res)
        self.assertEqual(res.stderr.decode(),
                         "referee: --data: %s is in use by another referee "
                         "run\n" % d.data_dir)
        d.stop()
        d.start()  # the lock went with the first process
        self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_tenant_over_the_operator_cap_fails_to_load(self):
        greedy = ("return {\n  sources = { s = {} },\n"
                  "  limits = { memory_mb = 64 },\n}\n")
        d = self.daemon(tenants=(), extra_tenants={"greedy": greedy,
                                                   "modest": "return {}\n"},
                        config="return { scripts = { memory_mb_max = 48 } }\n")
        d.wait_log(re.compile(r"tenant=greedy msg=\"cannot load: .*greedy/"
                              r"tenant\.lua:3: setting 'limits\.memory_mb': "
                              r"64 MiB is over the operator's cap of 48 MiB "
                              r"\(scripts\.memory_mb_max in the daemon "
                              r"config\)"), scale(5))
        resp = d.post("greedy", "s", b"{}")
        self.assertEqual((resp.status, resp.error_code()),
                         (503, "tenant_unavailable"))
        d.write_tenant("greedy", greedy.replace("64", "48"))
        wait_until(lambda: d.post("greedy", "s", b"{}").status == 202,
                   scale(5), "the tenant within the cap to load")


if __name__ == "__main__":
    unittest.main()
