"""Intake accepts only what it can keep its promises for: headers within
limits.header_max (431 with the JSON error body), strictly valid JSON in
strict UTF-8 for format = "json" sources (400 invalid_json), JSON no deeper
than scripts can decode (400 json_too_deep), so that every stored body
reaches its hook; and a hook's returned value is kept in its outcome."""

import json
import re
import unittest

from harness import (DaemonTestCase, read_http_response, scale, send_head,
                     wait_until)

HOOKED = """
return {
  sources = {
    s = { hook = "on_event" },
    raw = { format = "raw", id = "none", hook = "on_raw" },
  },
  on_event = function(ev)
    local depth, v = 0, ev.json
    while type(v) == "table" do depth = depth + 1; v = v[1] end
    return { depth = depth, again = json.encode(ev.json) ~= nil }
  end,
  on_raw = function(ev)
    if ev.body == "nothing" then return end
    if ev.body == "fn" then return { f = function() end } end
    return string.rep("x", tonumber(ev.body))
  end,
}
"""


def nested(n):
    return ("[" * n + "]" * n).encode()


class StrictIntakeTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(
            tenants=("acme",), extra_tenants={"hooked": HOOKED},
            config="return { limits = { header_max = 1024 } }\n",
            label="strict intake daemon")

    def assert_error(self, resp, status, code):
        self.assertEqual((resp.status, resp.error_code()), (status, code),
                         resp.body)
        self.assertEqual(resp.headers["content-type"], "application/json")

    def outcome(self, event_id, tenant="hooked"):
        def find():
            for ev in self.d.events_list(tenant):
                if ev["id"] == event_id and "outcome" in ev:
                    return ev["outcome"]
            return None
        return wait_until(find, scale(10), "the outcome of %s" % event_id)

    # --- limits.header_max -----------------------------------------------

    def test_header_over_header_max_is_431_with_json_body(self):
        for size in (1100, 32000):
            with self.subTest(size=size):
                resp = self.d.post("acme", "raw", b"x",
                                   {"X-Big": "a" * size})
                self.assert_error(resp, 431, "header_too_large")
                self.assertIn("1024 bytes", resp.json()["error"]["message"])
        self.assertEqual(self.d.post("acme", "raw", b"x",
                                     {"X-Small": "a" * 100}).status, 202)

    def test_431_closes_the_connection_without_reading_the_body(self):
        with self.d.raw() as sock:
            send_head(sock, "POST", "/t/acme/hooks/raw",
                      {"X-Big": "b" * 5000, "Content-Length": "3"}, b"abc")
            resp = read_http_response(sock, scale(5))
        self.assertEqual(resp.status, 431)
        self.assertEqual(resp.headers.get("connection"), "close")
        self.assertEqual(json.loads(resp.body)["error"]["code"],
                         "header_too_large")

    # --- strict JSON -------------------------------------------------------

    def test_malformed_json_bodies_are_400_invalid_json(self):
        cases = {
            "invalid UTF-8 in a string": b'{"a":"\xff\xfe"}',
            "overlong UTF-8": b'{"a":"\xc0\xaf"}',
            "encoded surrogate": b'["\xed\xa0\x80"]',
            "raw newline in a string": b'{"a":"x\ny"}',
            "raw tab in a string": b'["a\tb"]',
            "leading zero": b"[01]",
            "UTF-8 byte-order mark": b'\xef\xbb\xbf{"a":1}',
            "unpaired surrogate escape": b'["\\ud800"]',
            "unknown escape": b'["\\x41"]',
        }
        for name, body in cases.items():
            with self.subTest(name):
                resp = self.d.post("acme", "plain", body)
                self.assert_error(resp, 400, "invalid_json")
                self.assertRegex(resp.json()["error"]["message"],
                                 r"^the body is not one valid JSON value "
                                 r"\(byte \d+: .+\)$")
        # The same bodies are fine for a raw source.
        for body in cases.values():
            self.assertEqual(self.d.post("acme", "raw", body).status, 202)

    def test_strict_json_still_accepts_what_rfc_8259_allows(self):
        for body in (b'{"a":"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\n"}',
                     b"[0, -0.5, 1e10, 2E-3, true, false, null]",
                     b' \r\n\t"just a string" ', b"12345678901234567890"):
            with self.subTest(body=body):
                resp = self.d.post("acme", "plain", body)
                self.assertEqual(resp.status, 202, resp.body)

    def test_json_deeper_than_scripts_decode_is_400_json_too_deep(self):
        for n in (101, 1000):
            with self.subTest(depth=n):
                resp = self.d.post("hooked", "s", nested(n))
                self.assert_error(resp, 400, "json_too_deep")
                self.assertIn("deeper than 100 levels",
                              resp.json()["error"]["message"])
        resp = self.d.post("hooked", "s", nested(100))
        self.assertEqual(resp.status, 202, resp.body)
        out = self.outcome(resp.json()["event_id"])
        self.assertEqual(out["status"], "done", out)
        self.assertEqual(out["result"], {"depth": 100, "again": True})

    # --- outcomes keep the hook's value ------------------------------------

    def test_outcome_keeps_the_returned_value(self):
        resp = self.d.post("hooked", "s", b'[["x"]]')
        out = self.outcome(resp.json()["event_id"])
        self.assertEqual(out["result"], {"depth": 2, "again": True})
        self.assertNotIn("result_truncated", out)

        resp = self.d.post("hooked", "raw", b"nothing")
        out = self.outcome(resp.json()["event_id"])
        self.assertEqual(out["status"], "done")
        self.assertIsNone(out["result"])

    def test_outcome_truncates_a_large_returned_value_at_4_kib(self):
        resp = self.d.post("hooked", "raw", b"10000")
        out = self.outcome(resp.json()["event_id"])
        self.assertEqual(out["status"], "done")
        self.assertIs(out["result_truncated"], True)
        self.assertEqual(out["result"], '"' + "x" * 4095)

    def test_unencodable_return_value_names_the_hook(self):
        resp = self.d.post("hooked", "raw", b"fn")
        out = self.outcome(resp.json()["event_id"])
        self.assertEqual(out["status"], "failed")
        self.assertRegex(out["error"],
                         r"tenant\.lua:12: hook 'on_raw' returned a value "
                         r"that cannot be encoded as JSON: cannot encode a "
                         r"function$")
        self.assertNotIn("result", out)


class ListenerLogTest(DaemonTestCase):

    def test_debug_log_has_no_option_order_warning(self):
        d = self.daemon(tenants=(), config='return { log = { level = '
                                           '"debug" } }\n')
        self.assertEqual(d.request("GET", "/healthz").status, 200)
        d.stop()
        self.assertFalse([line for line in d.log_lines()
                          if "is not the first option" in line])


if __name__ == "__main__":
    unittest.main()
