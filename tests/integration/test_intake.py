"""Integration tests of webhook intake: signatures, de-duplication, limits,
slow and lying clients, graceful stop, `referee events list`, and the
command line (help, version, usage and config errors)."""

import base64
import http.client
import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
import unittest

from harness import (FIXTURE_TENANTS, SANITIZED, SECRETS, DaemonTestCase,
                     event_body, exchange, hook_path, new_id,
                     read_http_response, run_cli, scale, send_head,
                     signature, signed_headers, start_request_in_flight,
                     wait_closed, wait_until)

EVENT_ID = re.compile(r"^[0-9a-f]{16}$")
BODY_MAX = 64 * 1024

# The shared daemon: fixture tenants, a small body limit, and a tenant whose
# script fails to load.
SHARED_CONFIG = "return { limits = { body_max = %d } }\n" % BODY_MAX
BROKEN_TENANT = "return { sources = {\n"


def by_webhook_id(events, msg_id):
    return [e for e in events if e["headers"].get("webhook-id") == msg_id]


class SharedDaemonTest(DaemonTestCase):
    """Tests that need nothing but a running daemon share one."""

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(
            tenants=("acme", "globex"), config=SHARED_CONFIG,
            extra_tenants={"broken": BROKEN_TENANT}, label="shared daemon")

    def assert_error(self, resp, status, code):
        self.assertEqual((resp.status, resp.error_code()), (status, code),
                         resp.body)
        self.assertEqual(resp.headers["content-type"], "application/json")

    def assert_accepted(self, resp):
        self.assertEqual(resp.status, 202, resp.body)
        doc = resp.json()
        self.assertEqual(list(doc), ["event_id"])
        self.assertRegex(doc["event_id"], EVENT_ID)
        return doc["event_id"]

    def stored(self, msg_id, tenant="acme"):
        return by_webhook_id(self.d.events_list(tenant), msg_id)

    def stored_by_id(self, event_id, tenant="acme"):
        found = [e for e in self.d.events_list(tenant) if e["id"] == event_id]
        self.assertEqual(len(found), 1, "event %s listed %d times"
                         % (event_id, len(found)))
        return found[0]

    # --- signed webhooks -------------------------------------------------

    def test_signed_webhook_is_stored_with_body_source_and_kept_headers(self):
        body = b'{"topic":"orders/create","order":{"id":7,"total":"9.50"}}'
        msg_id, ts = new_id(), int(time.time())
        headers = signed_headers(SECRETS[("acme", "shop")], body, msg_id, ts,
                                 {"X-Shop-Topic": "orders/create",
                                  "User-Agent": "shop-sender/2.1",
                                  "X-Not-Kept": "dropped",
                                  "Authorization": "Bearer secret-token",
                                  "Cookie": "session=abc"})
        event_id = self.assert_accepted(self.d.post("acme", "shop", body,
                                                    headers))

        event = self.stored_by_id(event_id)
        self.assertEqual(event_body(event), body)
        self.assertEqual(event["source"], "shop")
        self.assertEqual(event["headers"], {
            "content-type": "application/json",
            "user-agent": "shop-sender/2.1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "x-shop-topic": "orders/create",
        })
        self.assertNotIn("webhook-signature", event["headers"])
        self.assertRegex(event["received"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_plain_string_secret_is_used_as_key_bytes(self):
        msg_id = new_id()
        resp = self.d.post_signed("acme", "billing", b'{"invoice":1}',
                                  msg_id=msg_id)
        event_id = self.assert_accepted(resp)
        self.assertEqual(self.stored_by_id(event_id)["source"], "billing")

    def test_padded_whsec_secret_of_another_tenant(self):
        msg_id = new_id()
        resp = self.d.post_signed("globex", "shop", b'{"g":1}', msg_id=msg_id)
        event_id = self.assert_accepted(resp)
        self.assertEqual([e["id"] for e in self.stored(msg_id, "globex")],
                         [event_id])
        self.assertEqual(self.stored(msg_id, "acme"), [])

    def test_rotated_secrets_one_valid_signature_is_enough(self):
        body = b'{"rotated":true}'
        for order in ("stale first", "valid first"):
            with self.subTest(order):
                msg_id, ts = new_id(), int(time.time())
                good = signature(SECRETS[("acme", "shop")], msg_id, ts, body)
                stale = signature("whsec_" + base64.b64encode(
                    b"an older secret").decode(), msg_id, ts, body)
                sigs = [stale, good] if order == "stale first" else [good,
                                                                     stale]
                headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                           "webhook-signature": " ".join(sigs)}
                event_id = self.assert_accepted(
                    self.d.post("acme", "shop", body, headers))
                self.assertEqual([e["id"] for e in self.stored(msg_id)],
                                 [event_id])

    def test_signature_failures_answer_their_exact_codes(self):
        secret = SECRETS[("acme", "shop")]
        other = "whsec_" + base64.b64encode(b"not the shop secret").decode()
        body = b'{"amount":100}'
        now = int(time.time())

        def headers(key=secret, ts=now, drop=None, signed_body=body):
            msg_id = new_id()
            h = {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                 "webhook-signature": signature(key, msg_id, ts,
                                                signed_body)}
            if drop:
                del h[drop]
            return h

        cases = [
            ("signed with another secret", headers(key=other), body,
             "signature_mismatch"),
            ("tampered body", headers(), b'{"amount":999}',
             "signature_mismatch"),
            ("signature not base64 of a digest",
             dict(headers(), **{"webhook-signature": "v1,bm90IGEgZGlnZXN0"}),
             body, "signature_mismatch"),
            ("timestamp 10 minutes old", headers(ts=now - 600), body,
             "signature_timestamp_expired"),
            ("timestamp 10 minutes ahead", headers(ts=now + 600), body,
             "signature_timestamp_expired"),
            ("timestamp not a number", headers(ts="yesterday"), body,
             "signature_timestamp_invalid"),
            ("no webhook-signature", headers(drop="webhook-signature"), body,
             "signature_missing"),
            ("no webhook-id", headers(drop="webhook-id"), body,
             "signature_missing"),
            ("no webhook-timestamp", headers(drop="webhook-timestamp"), body,
             "signature_missing"),
        ]
        before = len(self.d.events_list("acme"))
        for name, h, sent, code in cases:
            with self.subTest(name):
                resp = self.d.post("acme", "shop", sent, h)
                self.assert_error(resp, 401, code)
        self.assertEqual(len(self.d.events_list("acme")), before)

    def test_timestamp_inside_the_tolerance_is_accepted(self):
        for offset in (-290, 290):
            with self.subTest(offset=offset):
                resp = self.d.post_signed("acme", "shop", b"{}",
                                          timestamp=int(time.time()) + offset)
                self.assert_accepted(resp)

    # --- bodies ----------------------------------------------------------

    def test_invalid_json_is_rejected_and_trailing_space_is_not(self):
        for body, status in ((b'{"a":', 400), (b'{"a":1} trailing', 400),
                             (b'{"a":1}{"b":2}', 400), (b"", 400),
                             # a hook would get "a" (cJSON's C strings)
                             (b'{"id":"a\\u0000b"}', 400),
                             (b'{"a":1}\r\n \t', 202), (b'"just a string"',
                                                        202)):
            with self.subTest(body=body):
                msg_id = new_id()
                resp = self.d.post_signed("acme", "shop", body, msg_id=msg_id)
                if status == 400:
                    self.assert_error(resp, 400, "invalid_json")
                    self.assertEqual(self.stored(msg_id), [])
                else:
                    self.assert_accepted(resp)
                    self.assertEqual(event_body(self.stored(msg_id)[0]), body)

    def test_raw_source_stores_any_bytes_and_does_not_deduplicate(self):
        body = b"field=1&other=two"
        first = self.assert_accepted(self.d.post("acme", "raw", body))
        second = self.assert_accepted(self.d.post("acme", "raw", body))
        self.assertGreater(second, first)
        for event_id in (first, second):
            self.assertEqual(event_body(self.stored_by_id(event_id)), body)

    def test_non_utf8_body_is_listed_as_base64(self):
        cases = {"binary": b"\xff\xfe\x00\x01PNG\x89\r\n",
                 "latin-1": "caf\xe9".encode("latin-1"),
                 "truncated sequence": b"abc\xe2\x82",
                 "nul byte": b"a\x00b"}
        for name, body in cases.items():
            with self.subTest(name):
                event_id = self.assert_accepted(self.d.post("acme", "raw",
                                                            body))
                event = self.stored_by_id(event_id)
                self.assertNotIn("body", event)
                self.assertEqual(base64.b64decode(event["body_base64"]), body)

    def test_utf8_body_is_listed_as_text(self):
        body = "caf\u00e9 \u2713 \U0001f600".encode()
        event_id = self.assert_accepted(self.d.post("acme", "raw", body))
        event = self.stored_by_id(event_id)
        self.assertNotIn("body_base64", event)
        self.assertEqual(event["body"], "caf\u00e9 \u2713 \U0001f600")

    def test_body_of_exactly_the_limit_is_stored_and_one_more_is_413(self):
        body = bytes(i % 251 for i in range(BODY_MAX))
        event_id = self.assert_accepted(self.d.post("acme", "raw", body))
        self.assertEqual(event_body(self.stored_by_id(event_id)), body)

        before = len(self.d.events_list("acme"))
        resp = self.d.post("acme", "raw", body + b"x")
        self.assert_error(resp, 413, "body_too_large")
        self.assertEqual(len(self.d.events_list("acme")), before)

    def test_body_announced_over_the_limit_is_413_before_it_is_sent(self):
        with self.d.raw() as sock:
            send_head(sock, "POST", hook_path("acme", "raw"),
                      {"Content-Length": str(BODY_MAX + 1)})
            start = time.monotonic()
            resp = read_http_response(sock, scale(5))
            self.assertIsNotNone(resp, "closed without an answer")
            self.assert_error(resp, 413, "body_too_large")
            self.assertLess(time.monotonic() - start, scale(2))
            # No body will be read from this connection: it is closed.
            self.assertIsNotNone(wait_closed(sock, scale(5)))

    def test_chunked_body_over_the_limit_is_413(self):
        chunk = b"a" * 4096
        chunks = b"".join(b"1000\r\n" + chunk + b"\r\n"
                          for _ in range(BODY_MAX // 4096 + 1))
        with self.d.raw() as sock:
            send_head(sock, "POST", hook_path("acme", "raw"),
                      {"Transfer-Encoding": "chunked"}, chunks + b"0\r\n\r\n")
            resp = read_http_response(sock, scale(5))
        self.assertIsNotNone(resp, "connection closed without an answer")
        self.assert_error(resp, 413, "body_too_large")

    def test_chunked_body_within_the_limit_is_stored(self):
        with self.d.raw() as sock:
            send_head(sock, "POST", hook_path("acme", "raw"),
                      {"Transfer-Encoding": "chunked"},
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            resp = read_http_response(sock, scale(5))
        event_id = self.assert_accepted(resp)
        self.assertEqual(event_body(self.stored_by_id(event_id)),
                         b"hello world")

    def test_two_lengths_or_a_length_with_chunking_is_400(self):
        # A proxy in front and referee could end the body in different
        # places; such a request is refused and nothing is stored.
        path = hook_path("acme", "raw").encode()
        before = len(self.d.events_list("acme"))
        for head in (b"Content-Length: 2\r\nContent-Length: 3\r\n",
                     b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"):
            with self.subTest(head=head), self.d.raw() as sock:
                sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\n" +
                             head + b"\r\n2\r\n{}\r\n0\r\n\r\n")
                resp = read_http_response(sock, scale(5))
                self.assertIsNotNone(resp, "closed without an answer")
                self.assert_error(resp, 400, "ambiguous_length")
        self.assertEqual(len(self.d.events_list("acme")), before)

    def test_a_transfer_coding_other_than_chunked_is_501_at_once(self):
        # It was held until the body timeout and closed without an answer.
        path = hook_path("acme", "raw").encode()
        before = len(self.d.events_list("acme"))
        for coding, body in ((b"gzip", b"{}"),
                             (b"gzip, chunked", b"2\r\n{}\r\n0\r\n\r\n"),
                             (b"chunked, chunked",
                              b"2\r\n{}\r\n0\r\n\r\n")):
            with self.subTest(coding=coding), self.d.raw() as sock:
                sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\n"
                             b"Transfer-Encoding: " + coding + b"\r\n\r\n" +
                             body)
                resp = read_http_response(sock, scale(2))
                self.assertIsNotNone(resp, "no answer within 2 s")
                self.assert_error(resp, 501, "unsupported_transfer_encoding")
        self.assertEqual(len(self.d.events_list("acme")), before)

    def test_an_encoded_nul_in_the_path_names_no_route(self):
        # Decoded, %00 ended the path there: ".../raw%00x" went to "raw".
        for path, code in ((hook_path("acme", "raw") + "%00x",
                            "source_not_found"),
                           ("/healthz%00x", "not_found")):
            with self.subTest(path=path):
                resp = self.d.request("POST", path, b"{}")
                self.assert_error(resp, 404, code)

    def test_content_length_shorter_than_the_body_stores_only_its_bytes(self):
        marker = new_id("smuggled").encode()
        with self.d.raw() as sock:
            send_head(sock, "POST", hook_path("acme", "raw"),
                      {"Content-Length": "11"},
                      b"hello world" + marker + b" junk\r\n\r\n")
            event_id = self.assert_accepted(read_http_response(sock,
                                                               scale(5)))
            # The extra bytes are a malformed next request, not the body.
            second = read_http_response(sock, scale(5))
            if second is not None:
                self.assertEqual(second.status, 400, second.body)
        self.assertEqual(event_body(self.stored_by_id(event_id)),
                         b"hello world")
        listed = self.d.events_list("acme")
        self.assertEqual([e["id"] for e in listed
                          if marker in event_body(e)], [])
        self.assertEqual(self.d.request("GET", "/healthz").status, 200)
        self.assert_accepted(self.d.post("acme", "raw", b"still serving"))

    # --- delivery ids and de-duplication ---------------------------------

    def test_repeated_delivery_answers_200_with_the_first_event_id(self):
        msg_id = new_id()
        first = self.assert_accepted(
            self.d.post_signed("acme", "shop", b'{"n":1}', msg_id=msg_id))
        for body in (b'{"n":1}', b'{"n":2, "changed": true}'):
            resp = self.d.post_signed("acme", "shop", body, msg_id=msg_id)
            self.assertEqual(resp.status, 200, resp.body)
            self.assertEqual(resp.json(),
                             {"event_id": first, "duplicate": True})
        events = self.stored(msg_id)
        self.assertEqual([e["id"] for e in events], [first])
        self.assertEqual(event_body(events[0]), b'{"n":1}')

    def test_fifty_concurrent_copies_store_one_event(self):
        msg_id, copies = new_id(), 50
        body = b'{"concurrent":true}'
        headers = signed_headers(SECRETS[("acme", "shop")], body, msg_id)
        conns = [self.d.connect() for _ in range(copies)]
        for conn in conns:
            conn.connect()
        gate = threading.Barrier(copies)
        results = [None] * copies

        def send(i):
            gate.wait()
            try:
                results[i] = exchange(conns[i], "POST",
                                      hook_path("acme", "shop"), body,
                                      headers)
            finally:
                conns[i].close()

        threads = [threading.Thread(target=send, args=(i,))
                   for i in range(copies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scale(30))

        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200] * (copies - 1) + [202])
        ids = {r.json()["event_id"] for r in results}
        self.assertEqual(len(ids), 1, ids)
        (event_id,) = ids
        for r in results:
            want = {"event_id": event_id}
            if r.status == 200:
                want["duplicate"] = True
            self.assertEqual(r.json(), want)
        self.assertEqual([e["id"] for e in self.stored(msg_id)], [event_id])

    def test_delivery_id_from_a_json_path(self):
        order = new_id("ord")
        body = json.dumps({"data": {"order": {"id": order, "n": 1}}}).encode()
        first = self.assert_accepted(self.d.post("acme", "orders", body))
        again = self.d.post("acme", "orders", body.replace(b'"n": 1',
                                                           b'"n": 2'))
        self.assertEqual((again.status, again.json()),
                         (200, {"event_id": first, "duplicate": True}))

        number = int(time.time() * 1000)
        body = json.dumps({"data": {"order": {"id": number}}}).encode()
        first = self.assert_accepted(self.d.post("acme", "orders", body))
        again = self.d.post("acme", "orders", body)
        self.assertEqual((again.status, again.json()),
                         (200, {"event_id": first, "duplicate": True}))

        for name, doc in (("path absent", {"data": {"invoice": {"id": 1}}}),
                          ("leaf is an object", {"data": {"order": {
                              "id": {"x": 1}}}}),
                          ("leaf is a fraction", {"data": {"order": {
                              "id": 4.5}}}),
                          ("leaf is empty", {"data": {"order": {"id": ""}}}),
                          ("not an object on the way", {"data": [1, 2]})):
            with self.subTest(name):
                resp = self.d.post("acme", "orders", json.dumps(doc))
                self.assert_error(resp, 400, "delivery_id_missing")

    def test_an_unusable_delivery_id_is_named_in_the_answer(self):
        for order, why in (({}, "missing"), ({"id": None}, "missing"),
                           ({"id": ""}, "empty"),
                           ({"id": 1.5}, "not a string or an integer"),
                           ({"id": 1e300}, "not a string or an integer"),
                           ({"id": {"x": 1}}, "not a string or an integer"),
                           ({"id": "x" * 257}, "longer than 256 bytes")):
            with self.subTest(order=str(order)[:40]):
                body = json.dumps({"data": {"order": order}}).encode()
                resp = self.d.post("acme", "orders", body)
                self.assert_error(resp, 400, "delivery_id_missing")
                self.assertEqual(resp.json()["error"]["message"],
                                 "the delivery id (json:data.order.id) is "
                                 + why)
        resp = self.d.post("acme", "forms", b"{}", {"x-delivery-id": ""})
        self.assertEqual(resp.json()["error"]["message"],
                         "the delivery id (header:x-delivery-id) is empty")

    def test_delivery_id_from_a_custom_header(self):
        shared_webhook_id = new_id()
        firsts = []
        for _ in range(2):
            resp = self.d.post("acme", "forms", b'{"form":1}',
                               {"x-delivery-id": new_id("dlv"),
                                "webhook-id": shared_webhook_id,
                                "X-Form-Name": "signup"})
            firsts.append(self.assert_accepted(resp))
        self.assertNotEqual(firsts[0], firsts[1])
        event = self.stored_by_id(firsts[0])
        self.assertEqual(event["headers"]["x-form-name"], "signup")

        delivery = new_id("dlv")
        first = self.assert_accepted(self.d.post(
            "acme", "forms", b"{}", {"x-delivery-id": delivery}))
        again = self.d.post("acme", "forms", b"{}",
                            {"x-delivery-id": delivery})
        self.assertEqual((again.status, again.json()),
                         (200, {"event_id": first, "duplicate": True}))

        resp = self.d.post("acme", "forms", b"{}", {"webhook-id": new_id()})
        self.assert_error(resp, 400, "delivery_id_missing")

    def post_header_pairs(self, source, body, pairs):
        """POSTs with headers given as (name, value) pairs, repeats kept."""
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port,
                                          timeout=scale(10))
        try:
            conn.putrequest("POST", "/t/acme/hooks/" + source)
            for name, value in pairs + [("Content-Length", str(len(body)))]:
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def test_a_repeated_id_or_signature_header_is_refused(self):
        body = b'{"n": 1}'
        good = list(signed_headers(SECRETS[("acme", "shop")], body).items())
        other = signed_headers(SECRETS[("acme", "shop")], body)
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            with self.subTest(header=name):
                before = len(self.d.events_list("acme"))
                status, doc = self.post_header_pairs(
                    "shop", body, good + [(name.upper(), other[name])])
                self.assertEqual((status, doc["error"]["code"]),
                                 (400, "repeated_header"), doc)
                hint = (" (several signatures go in one, separated by "
                        "spaces)" if name == "webhook-signature" else "")
                self.assertEqual(doc["error"]["message"],
                                 "the %s header is sent more than once%s"
                                 % (name, hint))
                self.assertEqual(len(self.d.events_list("acme")), before)
        # the header a source takes its id from, too
        status, doc = self.post_header_pairs(
            "forms", b"{}", [("x-delivery-id", new_id("dlv")),
                             ("X-Delivery-Id", new_id("dlv"))])
        self.assertEqual((status, doc["error"]["code"]),
                         (400, "repeated_header"))
        # and the same request with each header once is taken
        status, doc = self.post_header_pairs("shop", body, good)
        self.assertEqual(status, 202, doc)

    def test_spaces_after_a_header_value_are_not_part_of_it(self):
        # libmicrohttpd keeps them; "zz " was another delivery than "zz"
        wid = new_id()
        status, doc = self.post_header_pairs("plain", b"{}",
                                             [("webhook-id", wid + " \t")])
        self.assertEqual(status, 202, doc)
        status, again = self.post_header_pairs("plain", b"{}",
                                               [("webhook-id", wid)])
        self.assertEqual((status, again), (200, {"event_id": doc["event_id"],
                                                 "duplicate": True}))
        stored = self.stored_by_id(doc["event_id"])
        self.assertEqual(stored["headers"]["webhook-id"], wid)
        # except "chunked ": libmicrohttpd would not see a chunked body in
        # it and wait for the connection's end, so it is answered at once
        path = hook_path("acme", "raw").encode()
        with self.d.raw() as sock:
            sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\n"
                         b"Transfer-Encoding: chunked \r\n\r\n"
                         b"2\r\n{}\r\n0\r\n\r\n")
            resp = read_http_response(sock, scale(5))
        self.assertIsNotNone(resp, "closed without an answer")
        self.assert_error(resp, 501, "unsupported_transfer_encoding")

    def test_a_repeated_kept_header_is_one_member_with_both_values(self):
        status, doc = self.post_header_pairs(
            "forms", b"{}", [("x-delivery-id", new_id("dlv")),
                             ("X-Form-Name", "a"), ("x-form-name", "b")])
        self.assertEqual(status, 202, doc)
        listed = run_cli("events", "list", "--data", self.d.data_dir,
                         "--tenant", "acme").stdout.decode()
        line = [l for l in listed.splitlines() if doc["event_id"] in l]
        self.assertEqual(len(line), 1)
        self.assertEqual(line[0].count('"x-form-name"'), 1, line[0])
        self.assertEqual(json.loads(line[0])["headers"]["x-form-name"], "a, b")

    def test_default_id_source_deduplicates_only_when_webhook_id_is_sent(self):
        a = self.assert_accepted(self.d.post("acme", "plain", b"{}"))
        b = self.assert_accepted(self.d.post("acme", "plain", b"{}"))
        self.assertNotEqual(a, b)
        msg_id = new_id()
        first = self.assert_accepted(
            self.d.post("acme", "plain", b"{}", {"webhook-id": msg_id}))
        again = self.d.post("acme", "plain", b"{}", {"webhook-id": msg_id})
        self.assertEqual((again.status, again.json()),
                         (200, {"event_id": first, "duplicate": True}))

    def test_same_delivery_id_in_another_tenant_or_source_is_new(self):
        msg_id = new_id()
        acme_shop = self.assert_accepted(
            self.d.post_signed("acme", "shop", b"{}", msg_id=msg_id))
        acme_billing = self.assert_accepted(
            self.d.post_signed("acme", "billing", b"{}", msg_id=msg_id))
        globex_shop = self.assert_accepted(
            self.d.post_signed("globex", "shop", b"{}", msg_id=msg_id))
        self.assertEqual(len({acme_shop, acme_billing, globex_shop}), 3)
        self.assertEqual(sorted(e["source"] for e in self.stored(msg_id)),
                         ["billing", "shop"])
        self.assertEqual([e["id"] for e in self.stored(msg_id, "globex")],
                         [globex_shop])

    # Regression: integer ids above 2^53 once collapsed through a double,
    # and the second delivery was answered as a duplicate and not stored.
    def test_large_integer_json_ids_are_not_merged_as_duplicates(self):
        # Two different 64-bit ids (as senders with snowflake ids write
        # them) must stay two deliveries, not collapse through a double.
        doc = b'{"data":{"order":{"id":%d}}}'
        first = self.assert_accepted(
            self.d.post("acme", "orders", doc % 1234567890123456789))
        second = self.d.post("acme", "orders", doc % 1234567890123456790)
        self.assertEqual(second.status, 202,
                         "a different id answered as %r" % second)
        self.assertNotEqual(second.json()["event_id"], first)

    def test_overlong_webhook_id_is_not_stored_twice(self):
        # A delivery id longer than the store keeps (256 bytes) must not
        # silently turn de-duplication off: a retry is then stored again.
        msg_id = "msg_" + "x" * 296
        answers = [self.d.post_signed("acme", "shop", b'{"long":1}',
                                      msg_id=msg_id) for _ in range(2)]
        statuses = [a.status for a in answers]
        self.assertIn(statuses, ([400, 400], [202, 200]),
                      "two deliveries with one webhook-id: %r" % answers)
        self.assertLessEqual(len(self.stored(msg_id)), 1)

    # --- routing ---------------------------------------------------------

    def test_wrong_method_is_405_with_allow(self):
        for method in ("GET", "PUT", "DELETE"):
            with self.subTest(method):
                resp = self.d.request(method, hook_path("acme", "shop"))
                self.assert_error(resp, 405, "method_not_allowed")
                self.assertEqual(resp.headers["allow"], "POST")
        resp = self.d.request("POST", "/healthz", b"{}")
        self.assert_error(resp, 405, "method_not_allowed")
        self.assertEqual(resp.headers["allow"], "GET, HEAD")

    def test_unknown_tenant_source_or_path_is_404(self):
        cases = [("/t/nosuch/hooks/shop", "tenant_not_found"),
                 ("/t/acme/hooks/nosuch", "source_not_found"),
                 ("/t/globex/hooks/billing", "source_not_found"),
                 ("/t/acme/hooks/", "not_found"),
                 ("/t/acme/hooks/shop/extra", "not_found"),
                 ("/nowhere", "not_found")]
        for path, code in cases:
            for body in (b"", b'{"some":"body"}'):
                with self.subTest(path=path, body=body):
                    resp = self.d.request("POST", path, body)
                    self.assert_error(resp, 404, code)

    def test_tenant_whose_script_fails_is_503_and_others_still_work(self):
        resp = self.d.post("broken", "shop", b"{}")
        self.assert_error(resp, 503, "tenant_unavailable")
        self.assert_accepted(self.d.post_signed("acme", "shop", b"{}"))

    def test_every_refused_webhook_is_counted_as_rejected(self):
        # own daemon: the shared one's counters move with other tests
        d = self.daemon(tenants=("acme",))

        def rejected():
            text = d.request("GET", "/metrics").body.decode()
            m = re.search(r'referee_webhooks_total\{result="rejected"\} '
                          r'(\d+)', text)
            return int(m.group(1))

        before = rejected()
        self.assertEqual(d.post("nobody", "shop", b"{}").status, 404)
        self.assertEqual(d.post("acme", "nosuch", b"{}").status, 404)
        self.assertEqual(d.post("acme", "plain", b"{").status, 400)
        self.assertEqual(d.post("acme", "shop", b"{}").status, 401)
        self.assertEqual(d.request("GET", hook_path("acme", "raw")).status,
                         405)
        self.assertEqual(rejected(), before + 5)

    def test_health_endpoints(self):
        resp = self.d.request("GET", "/healthz")
        self.assertEqual((resp.status, resp.json()), (200, {"status": "ok"}))
        resp = self.d.request("GET", "/readyz")
        self.assertEqual(resp.status, 200, resp.body)
        doc = resp.json()
        self.assertEqual((doc["status"], doc["store"], doc["stopping"]),
                         ("ready", "open", False))

    def test_worker_threads_carry_their_names(self):
        # so that top -H and perf tell the writer and the script thread
        # apart from the loop (docs/operations.md)
        task = "/proc/%d/task" % self.d.proc.pid
        names = []
        for tid in os.listdir(task):
            with open(os.path.join(task, tid, "comm")) as f:
                names.append(f.read().strip())
        # one writer for intake, one for what scripts store
        self.assertEqual(sorted(names), ["referee", "referee-script",
                                         "referee-writer", "referee-writer"])

    # --- events list -----------------------------------------------------

    def test_events_list_since(self):
        ids = [self.assert_accepted(self.d.post("acme", "raw",
                                                b"since %d" % i))
               for i in range(3)]
        self.assertEqual(ids, sorted(ids))
        after_first = self.d.events_list("acme", since=ids[0])
        self.assertEqual([e["id"] for e in after_first][-2:], ids[1:])
        self.assertTrue(all(e["id"] > ids[0] for e in after_first))
        self.assertEqual(self.d.events_list("acme", since=ids[2]), [])
        everything = [e["id"] for e in self.d.events_list("acme")]
        self.assertEqual(everything, sorted(everything))
        self.assertEqual(len(everything), len(set(everything)))

    def test_since_the_largest_event_id_lists_nothing(self):
        self.assert_accepted(self.d.post("acme", "raw", b"anything"))
        listed = self.d.events_list("acme", since="f" * 16)
        self.assertEqual([e["id"] for e in listed], [])

    def test_events_list_rejects_a_bad_since(self):
        for bad in ("xyz", "0" * 17, ""):
            with self.subTest(bad):
                res = run_cli("events", "list", "--data", self.d.data_dir,
                              "--tenant", "acme", "--since", bad)
                self.assertEqual(res.returncode, 2, res)
                self.assertEqual(len(res.stderr.splitlines()), 1, res.stderr)

    def test_events_list_where_no_store_is_names_the_folder_once(self):
        with tempfile.TemporaryDirectory(prefix="referee-it-") as root:
            for data in (root, os.path.join(root, "absent")):
                with self.subTest(data=data):
                    res = run_cli("events", "list", "--data", data,
                                  "--tenant", "acme")
                    self.assertEqual(res.returncode, 1, res)
                    self.assertEqual(res.stderr.decode(),
                                     "referee events: %s: no store here "
                                     "(the daemon creates it at its first "
                                     "start)\n" % data)
            self.assertEqual(os.listdir(root), [])  # and made none

    def test_events_list_reads_consistently_while_the_daemon_writes(self):
        acked, errors, stop = [], [], threading.Event()

        def writer():
            conn = self.d.connect()
            try:
                while not stop.is_set():
                    resp = self.d.post("acme", "raw", b"concurrent",
                                       conn=conn)
                    if resp.status != 202:
                        errors.append(resp)
                        return
                    acked.append(resp.json()["event_id"])
            finally:
                conn.close()

        t = threading.Thread(target=writer)
        t.start()
        try:
            previous = []
            for _ in range(5):
                wait_until(lambda: len(acked) > len(previous) + 5, scale(10),
                           "more acknowledged events")
                seen_acked = list(acked)
                listed = [e["id"] for e in self.d.events_list("acme")]
                self.assertEqual(listed, sorted(set(listed)))
                self.assertEqual(listed[:len(previous)], previous)
                self.assertEqual(set(seen_acked) - set(listed), set())
                previous = listed
        finally:
            stop.set()
            t.join(scale(10))
        self.assertEqual(errors, [])


class OwnDaemonTest(DaemonTestCase):
    """Tests that need their own daemon: special limits, stopping, or
    stored events that would disturb other tests."""

    def test_overlong_utf8_and_surrogates_are_listed_as_base64(self):
        d = self.daemon()
        cases = {"overlong slash": b"\xc0\xaf",
                 "overlong nul": b"\xc0\x80",
                 "surrogate half": b"\xed\xa0\x80",
                 "above U+10FFFF": b"\xf4\x90\x80\x80",
                 "lead byte f5": b"\xf5\x80\x80\x80"}
        for body in cases.values():
            self.assertEqual(d.post("acme", "raw", body).status, 202)
        res = run_cli("events", "list", "--data", d.data_dir,
                      "--tenant", "acme")
        self.assertEqual(res.returncode, 0, res.stderr)
        for (name, body), line in zip(cases.items(),
                                      res.stdout.splitlines()):
            with self.subTest(name):
                try:
                    event = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError:
                    self.fail("listed as text that is not UTF-8: %r" % line)
                self.assertEqual(base64.b64decode(event["body_base64"]),
                                 body)

    def test_non_utf8_header_value_keeps_events_list_utf8(self):
        # HTTP allows bytes above 0x7f in header values; a kept header
        # must not turn `events list` into output that is not UTF-8.
        d = self.daemon()
        with d.raw() as sock:
            sock.sendall(b"POST /t/acme/hooks/raw HTTP/1.1\r\n"
                         b"Host: 127.0.0.1\r\nUser-Agent: caf\xe9\r\n"
                         b"Content-Length: 2\r\n\r\nok")
            self.assertEqual(read_http_response(sock, scale(5)).status, 202)
        res = run_cli("events", "list", "--data", d.data_dir,
                      "--tenant", "acme")
        self.assertEqual(res.returncode, 0, res.stderr)
        try:
            text = res.stdout.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("events list printed bytes that are not UTF-8: %r"
                      % res.stdout)
        (event,) = [json.loads(line) for line in text.splitlines()]
        self.assertEqual(event_body(event), b"ok")

    def test_restart_keeps_events_and_delivery_ids(self):
        d = self.daemon()
        msg_id = new_id()
        body = b'{"kept":"across restarts"}'
        event_id = d.post_signed("acme", "shop", body, msg_id=msg_id).json()[
            "event_id"]
        d.restart()
        again = d.post_signed("acme", "shop", body, msg_id=msg_id)
        self.assertEqual((again.status, again.json()),
                         (200, {"event_id": event_id, "duplicate": True}))
        later = d.post_signed("acme", "shop", b"{}").json()["event_id"]
        self.assertGreater(later, event_id)
        self.assertEqual([e["id"] for e in d.events_list("acme")],
                         [event_id, later])

    def test_sigint_stops_gracefully(self):
        d = self.daemon()
        self.assertEqual(d.post("acme", "raw", b"x").status, 202)
        d.stop(sig=signal.SIGINT)
        self.assertEqual(len(d.events_list("acme")), 1)

    def test_sighup_reloads_tenants(self):
        d = self.daemon(tenants=("acme",))
        resp = d.post_signed("globex", "shop", b"{}")
        self.assertEqual((resp.status, resp.error_code()),
                         (404, "tenant_not_found"))
        with open(os.path.join(FIXTURE_TENANTS, "globex",
                               "tenant.lua")) as f:
            d.write_tenant("globex", f.read())
        d.send_signal(signal.SIGHUP)
        d.wait_log(re.compile(r'msg="reloaded 2 tenants"'), scale(5))
        resp = d.post_signed("globex", "shop", b"{}")
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(d.post("acme", "raw", b"x").status, 202)
        # a tenant whose files no longer load is counted, not hidden
        mark = len(d.log_lines())
        d.write_tenant("globex", "return {\n")
        d.send_signal(signal.SIGHUP)
        d.wait_log(re.compile(r'level=warn mod=tenant msg="reloaded 2 '
                              r'tenants; 1 of them did not load"'), scale(5),
                   mark)
        resp = d.post_signed("globex", "shop", b"{}")
        self.assertEqual(resp.status, 202, resp.body)  # the previous one

    def test_store_grows_past_its_initial_map_size(self):
        d = self.daemon(config="return { store = { map_size_mb = 1 } }\n")
        bodies = [bytes([65 + i]) * (128 * 1024) for i in range(24)]
        ids = []
        for body in bodies:
            resp = d.post("acme", "raw", body)
            self.assertEqual(resp.status, 202, resp.body)
            ids.append(resp.json()["event_id"])
        d.wait_log(re.compile(r'msg="map grown to \d+ MiB"'), scale(5))
        listed = d.events_list("acme")
        self.assertEqual([e["id"] for e in listed], ids)
        self.assertEqual([event_body(e) for e in listed], bodies)
        d.restart()
        self.assertEqual(d.post("acme", "raw", b"after").status, 202)
        self.assertEqual(len(d.events_list("acme")), 25)

    def test_clients_over_the_connection_limit_are_served_once_slow_ones_go(
            self):
        # All open connections are slow and cut off in one sweep; the ones
        # waiting in the backlog behind the limit, and every later client,
        # must then be accepted. (They were not: the listening socket
        # stayed out of libmicrohttpd's epoll set until some other event
        # ran it, and with nothing open no event ever came.)
        d = self.daemon(config="return { limits = { connections_max = 8,"
                               " header_timeout_ms = 300 } }\n")
        for _ in range(5):
            idle = [d.raw() for _ in range(8)]
            waiting = d.raw()
            waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
            waiting.settimeout(scale(5))
            try:
                head = waiting.recv(64)
            except socket.timeout:
                head = b"(no answer in %ss)" % str(scale(5)).encode()
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            for s in idle + [waiting]:
                s.close()
            self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_idle_kept_alive_connections_give_way_at_the_limit(self):
        # Eight answered, kept-alive connections hold every slot; they used
        # to keep the next client (and /healthz) out for keepalive_idle_ms.
        d = self.daemon(config="return { limits = { connections_max = 8 } }\n")
        idle = []
        for _ in range(8):
            sock = d.raw()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = read_http_response(sock, scale(5))
            self.assertEqual(resp.status, 200)
            idle.append(sock)
        mark = len(d.log_lines())
        try:
            t0 = time.monotonic()
            resp = d.post("acme", "raw", b"after the idle ones")
            took = time.monotonic() - t0
            self.assertEqual(resp.status, 202, resp.body)
            self.assertLess(took, scale(2))
            d.wait_log(re.compile(r'level=warn mod=http msg="all 8 connections '
                                  r'\(limits.connections_max\) are open: '
                                  r'closing \d+ idle kept-alive ones"'),
                       scale(2), mark)
        finally:
            for sock in idle:
                sock.close()

    def test_slow_header_client_is_cut_off_while_others_are_served(self):
        d = self.daemon(config="return { limits = { header_timeout_ms = 2000"
                               " } }\n")
        head = b"POST /t/acme/hooks/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        trickler, silent = d.raw(), d.raw()
        start = time.monotonic()
        stop = threading.Event()
        closed_after = {}

        def trickle():  # one header byte a second, never the end
            for byte in head:
                if stop.wait(1.0):
                    return
                try:
                    trickler.send(bytes([byte]))
                except OSError:
                    return

        def watch(name, sock):
            took = wait_closed(sock, scale(10))
            closed_after[name] = None if took is None else \
                time.monotonic() - start

        threads = [threading.Thread(target=trickle),
                   threading.Thread(target=watch,
                                    args=("trickling", trickler)),
                   threading.Thread(target=watch, args=("silent", silent))]
        for t in threads:
            t.start()
        try:
            latencies = []
            while len(closed_after) < 2 and time.monotonic() - start < \
                    scale(10):
                t0 = time.monotonic()
                resp = d.post("acme", "raw", b"while a slow client waits")
                latencies.append(time.monotonic() - t0)
                self.assertEqual(resp.status, 202, resp.body)
                time.sleep(0.05)  # pace: about 20 requests a second
        finally:
            stop.set()
            for t in threads:
                t.join(scale(15))
            trickler.close()
            silent.close()
        self.assertGreater(len(latencies), 20)
        self.assertLess(max(latencies), scale(0.5), latencies)
        for name in ("trickling", "silent"):
            with self.subTest(name):
                cut = closed_after.get(name)
                self.assertIsNotNone(cut, "never cut off")
                self.assertGreaterEqual(cut, 1.9)
                self.assertLess(cut, 2.0 + scale(1.5))
        cuts = [l for l in d.log_lines() if "slow client" in l]
        self.assertEqual(len(cuts), 2, cuts)
        for line in cuts:
            self.assertIn('mod=http why="headers not complete within '
                          'limits.header_timeout_ms" msg="cutting off a slow '
                          'client"', line)

    def test_content_length_longer_than_the_body_is_cut_by_body_timeout(self):
        d = self.daemon(config="return { limits = { body_timeout_ms = 1500"
                               " } }\n")
        msg_id = new_id()
        with d.raw() as sock:
            send_head(sock, "POST", hook_path("acme", "plain"),
                      {"webhook-id": msg_id, "Content-Length": "100"},
                      b'{"partial":')
            start = time.monotonic()
            resp = read_http_response(sock, scale(10))
            took = time.monotonic() - start
        self.assertIsNone(resp, "want the connection cut, got %r" % resp)
        self.assertGreaterEqual(took, 1.4)
        self.assertLess(took, 1.5 + scale(1.5))
        self.assertEqual(by_webhook_id(d.events_list("acme"), msg_id), [])
        self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_graceful_stop_with_200_requests_in_flight(self):
        d = self.daemon()
        n = 200
        conns = [d.connect() for _ in range(n)]
        ids = [new_id() for _ in range(n)]
        outcome = {}
        gate = threading.Barrier(n + 1)

        def send(i):
            try:
                conns[i].connect()
            except OSError as e:
                outcome[ids[i]] = e
            gate.wait()
            if ids[i] in outcome:
                return
            try:
                resp = d.post_signed("acme", "shop", b'{"i":%d}' % i,
                                     msg_id=ids[i], conn=conns[i])
                outcome[ids[i]] = resp
            except (OSError, http.client.HTTPException) as e:
                outcome[ids[i]] = e
            finally:
                conns[i].close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        gate.wait()

        def acks():
            return sum(1 for r in list(outcome.values())
                       if getattr(r, "status", 0) == 202)

        wait_until(lambda: acks() >= 10, scale(10),
                   "the first acknowledgements", interval=0.001)
        d.send_signal(signal.SIGTERM)
        self.assertLess(acks(), n, "all requests ended before the stop")
        self.assertEqual(d.wait_exit(), 0)
        for t in threads:
            t.join(scale(30))

        acked = {i for i, r in outcome.items()
                 if getattr(r, "status", 0) in (200, 202)}
        odd = {i: r for i, r in outcome.items()
               if hasattr(r, "status") and r.status not in (200, 202, 503)}
        self.assertEqual(odd, {})
        stored = {e["headers"]["webhook-id"]: e["id"]
                  for e in d.events_list("acme")}
        self.assertEqual(acked - set(stored), set(),
                         "acknowledged but not stored")
        self.assertEqual(set(stored) - acked, set(),
                         "stored but never acknowledged")
        for i in acked:
            self.assertEqual(outcome[i].json()["event_id"], stored[i])
        self.assertTrue(d.refuses_connections())

    def test_stop_refuses_new_connections_and_finishes_the_request_in_flight(
            self):
        d = self.daemon()
        msg_id = new_id()
        body = b'{"finished":"after SIGTERM"}'
        headers = signed_headers(SECRETS[("acme", "shop")], body, msg_id)
        with d.raw() as sock:
            start_request_in_flight(sock, hook_path("acme", "shop"), headers,
                                    body, 10)
            d.send_signal(signal.SIGTERM)
            # The listening socket closes just after the "stopping" line.
            wait_until(d.refuses_connections, scale(5),
                       "new connections to be refused")
            self.assertTrue(d.running(), "stopped before the request ended")
            sock.sendall(body[10:])
            resp = read_http_response(sock, scale(10))
        self.assertIsNotNone(resp, "the request in flight got no answer")
        self.assertEqual(resp.status, 202, resp.body)
        d.stop()
        events = d.events_list("acme")
        self.assertEqual([e["id"] for e in events], [resp.json()["event_id"]])
        self.assertEqual(event_body(events[0]), body)

    def keepalive_load(self, d, clients=20):
        """Starts clients that send webhooks back to back on keep-alive
        connections until the daemon goes away. Returns (threads, acked)
        where acked maps delivery id to event id."""
        acked, lock = {}, threading.Lock()

        def loop():
            conn = d.connect()
            try:
                while True:
                    msg_id = new_id()
                    resp = d.post_signed("acme", "shop", b"{}", msg_id=msg_id,
                                         conn=conn)
                    if resp.status in (200, 202):
                        with lock:
                            acked[msg_id] = resp.json()["event_id"]
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()

        threads = [threading.Thread(target=loop) for _ in range(clients)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= 50, scale(10), "load to start")
        return threads, acked

    def check_acked_stored(self, d, threads, acked):
        for t in threads:
            t.join(scale(30))
        stored = {e["headers"]["webhook-id"]: e["id"]
                  for e in d.events_list("acme")}
        missing = {i for i in acked if stored.get(i) != acked[i]}
        self.assertEqual(missing, set(), "acknowledged but not stored")

    def test_keepalive_connection_takes_no_new_request_once_stopping(self):
        # While a stop drains, a fresh request on an open keep-alive
        # connection is new work: taking it lets busy senders hold the
        # stop open until drain_ms runs out.
        d = self.daemon()
        keep = d.connect()
        first = d.post_signed("acme", "shop", b'{"n":1}', conn=keep)
        self.assertEqual(first.status, 202, first.body)
        with d.raw() as holder:
            body = b'{"n":"holds the drain open"}'
            headers = signed_headers(SECRETS[("acme", "shop")], body)
            start_request_in_flight(holder, hook_path("acme", "shop"),
                                    headers, body, 5)
            d.send_signal(signal.SIGTERM)
            d.wait_log(re.compile(r"msg=\"stopping"), scale(5))
            late_id = new_id()
            try:
                late = d.post_signed("acme", "shop", b'{"n":2}',
                                     msg_id=late_id, conn=keep)
            except (OSError, http.client.HTTPException):
                late = None  # closed: what a stopping server should do
            finally:
                keep.close()
            holder.sendall(body[5:])
            self.assertEqual(read_http_response(holder, scale(10)).status,
                             202)
        d.stop()
        if late is not None:
            self.assertEqual(late.status, 503,
                             "a new request during the stop was taken: %r"
                             % late)
        stored = by_webhook_id(d.events_list("acme"), late_id)
        self.assertEqual(stored, [])

    def test_stop_under_keepalive_load_exits_0_without_aborting(self):
        # Stopping while keep-alive clients keep sending must exit 0. Seen
        # instead: libmicrohttpd aborts the process (SIGABRT) with
        # "MHD_stop_daemon() called while we have suspended connections".
        # It happens often but not every time, so try a few stops.
        attempts = 16 if SANITIZED else 8
        for attempt in range(attempts):
            d = self.daemon(config="return { limits = { drain_ms = 200 } }\n")
            threads, acked = self.keepalive_load(d)
            d.send_signal(signal.SIGTERM)
            try:
                code = d.wait_exit(scale(30))
            finally:
                self.check_acked_stored(d, threads, acked)
            self.assertEqual(code, 0, "stop %d of %d ended with %d"
                             % (attempt + 1, attempts, code))


class CommandLineTest(unittest.TestCase):
    """`referee` without a daemon: help, version, usage errors, config."""

    def run_ok(self, *args):
        res = run_cli(*args)
        self.assertEqual(res.returncode, 0, res)
        self.assertEqual(res.stderr, b"")
        return res.stdout.decode()

    def run_usage_error(self, *args):
        res = run_cli(*args)
        self.assertEqual(res.returncode, 2, res)
        self.assertEqual(res.stdout, b"")
        lines = res.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, res.stderr)
        return lines[0]

    def test_help(self):
        for flag in ("--help", "-h"):
            with self.subTest(flag):
                out = self.run_ok(flag)
                self.assertIn("Usage: referee COMMAND [OPTIONS]", out)
                for command in ("run", "events", "help", "version"):
                    self.assertRegex(out, r"(?m)^  %s +\S" % command)
        self.assertEqual(self.run_ok("help"), self.run_ok("--help"))

    def test_help_for_a_command(self):
        out = self.run_ok("help", "run")
        for flag in ("--config FILE", "--listen HOST:PORT", "--data DIR",
                     "--tenants DIR"):
            self.assertIn(flag, out)
        out = self.run_ok("help", "events")
        self.assertIn("referee events list --data DIR --tenant ID", out)
        # the same text from --help after the command, and with the
        # subcommand as one word or two
        self.assertEqual(self.run_ok("run", "--help"), self.run_ok("help",
                                                                   "run"))
        self.assertEqual(self.run_ok("events", "list", "--help"), out)
        self.assertEqual(self.run_ok("help", "events list"), out)
        self.assertEqual(self.run_ok("help", "events", "list"), out)
        # but --help does not make an unknown subcommand valid
        res = run_cli("events", "nope", "--help")
        self.assertEqual((res.returncode, res.stdout), (2, b""))
        self.assertEqual(res.stderr, b"referee events: expected 'list' (see "
                                     b"'referee help events')\n")

    def test_help_refuses_words_it_would_ignore(self):
        for argv, msg in ((("help", "run", "extra"),
                           "'run' has no subcommand 'extra'"),
                          (("help", "events", "lst"),
                           "'events' has no subcommand 'lst'"),
                          (("help", "events", "list", "x"),
                           "takes a command and at most one subcommand, "
                           "got 'x'")):
            with self.subTest(argv=argv):
                res = run_cli(*argv)
                self.assertEqual((res.returncode, res.stdout), (2, b""))
                self.assertEqual(res.stderr.decode(),
                                 "referee help: %s (see 'referee help help')"
                                 "\n" % msg)

    def test_version(self):
        out = self.run_ok("version")
        self.assertRegex(out, r"^referee \d+\.\d+\.\d+\n$")
        self.assertEqual(self.run_ok("--version"), out)

    def test_unknown_command_exits_2_with_one_line(self):
        line = self.run_usage_error("frobnicate")
        self.assertIn("'frobnicate'", line)
        line = self.run_usage_error("help", "frobnicate")
        self.assertIn("'frobnicate'", line)

    def test_unknown_flag_exits_2_with_one_line(self):
        for args in (("run", "--frobnicate"),
                     ("run", "--listen"),
                     ("run", "--listen", "no-port"),
                     ("events", "list", "--data", "x", "--tenant", "acme",
                      "--frobnicate"),
                     ("events", "list", "--tenant", "acme"),
                     ("events", "purge"),
                     ("version", "extra")):
            with self.subTest(args=args):
                line = self.run_usage_error(*args)
                self.assertTrue(line.startswith("referee "), line)
        line = self.run_usage_error("run", "--frobnicate")
        self.assertIn("'--frobnicate'", line)

    def config_error(self, text):
        """Runs the daemon with config text; returns its one stderr line
        with the temporary path replaced by CONFIG."""
        with tempfile.TemporaryDirectory(prefix="referee-cli-") as root:
            path = os.path.join(root, "config.lua")
            with open(path, "w") as f:
                f.write(text)
            res = run_cli("run", "--config", path, "--listen",
                          "127.0.0.1:0", "--data", os.path.join(root, "d"),
                          "--tenants", root)
            self.assertEqual(res.returncode, 2, res)
            self.assertNotIn(b"listening", res.stderr)
            lines = res.stderr.decode().splitlines()
            self.assertEqual(len(lines), 1, res.stderr)
            return lines[0].replace(path, "CONFIG")

    def test_config_syntax_error_names_file_and_line(self):
        line = self.config_error(
            'return {\n'                        # 1
            '  listen = "127.0.0.1:8080",\n'    # 2
            '  limits = {\n'                    # 3
            '    body_max = = 1024,\n'          # 4: the error
            '  },\n'                            # 5
            '}\n')
        self.assertRegex(line, r"^referee: CONFIG:4: ")

    def test_config_wrong_type_names_line_and_setting(self):
        line = self.config_error(
            '-- limits for the test daemon\n'   # 1
            'return {\n'                        # 2
            '  log = { level = "info" },\n'     # 3
            '  limits = {\n'                    # 4
            '    body_max = 1024,\n'            # 5
            '    header_timeout_ms = "2s",\n'   # 6: the error
            '  },\n'                            # 7
            '}\n')
        self.assertEqual(line, "referee: CONFIG:6: setting "
                               "'limits.header_timeout_ms': expected an "
                               "integer, got string")

    def test_config_unknown_setting_names_line_and_setting(self):
        line = self.config_error(
            'return {\n'                        # 1
            '  limits = {\n'                    # 2
            '    body_max = 1024,\n'            # 3
            '  },\n'                            # 4
            '  store = {\n'                     # 5
            '    sync = true,\n'                # 6
            '    fsync_every = 10,\n'           # 7: the error
            '  },\n'                            # 8
            '}\n')
        self.assertEqual(line, "referee: CONFIG:7: setting "
                               "'store.fsync_every': unknown setting")

    def test_config_value_out_of_range_names_line_and_setting(self):
        line = self.config_error(
            'return {\n'                        # 1
            '  store = { sync = true },\n'      # 2
            '  limits = { header_timeout_ms = 5 },\n'  # 3: the error
            '}\n')
        self.assertRegex(line, r"^referee: CONFIG:3: setting "
                               r"'limits\.header_timeout_ms': must be between")

    def test_config_not_a_table(self):
        line = self.config_error('return "listen here"\n')
        self.assertRegex(line, r"^referee: CONFIG:1: .*table")

    def test_config_error_line_skips_a_commented_out_setting(self):
        line = self.config_error(
            'return {\n'                        # 1
            '  limits = {\n'                    # 2
            '    -- header_timeout_ms = 5000,\n'  # 3: only a comment
            '    header_timeout_ms = "5s",\n'   # 4: the error
            '  },\n'                            # 5
            '}\n')
        self.assertRegex(line, r"^referee: CONFIG:4: setting "
                               r"'limits\.header_timeout_ms'")

    def test_missing_config_file(self):
        res = run_cli("run", "--config", "/nonexistent/referee.lua")
        self.assertEqual(res.returncode, 2, res)
        self.assertIn(b"/nonexistent/referee.lua", res.stderr)


if __name__ == "__main__":
    unittest.main()
