"""A stand-in for a gift-card provider, for the tests and `make demo`
(standard library only).

POST /v1/cards with "Authorization: Bearer <api key>" and a JSON body
{external_id, amount, currency, recipient, product, message} issues a card.
Like real providers it honours the "Idempotency-Key" header (or, without
one, external_id): a request repeating a key gets the first answer again
and pays nothing more; the same key with a different amount or currency is
refused with 409. It counts what it actually paid.

POST /webhook records what it receives (headers and JSON body), as a
webhook receiver would, for tests of the webhook plugin.

Control API (no auth): GET /_fake/payments lists the cards issued, in
order, and the webhooks received; POST /_fake/faults {"fail": N, "status": 503} makes the next N card
requests fail with that status before paying, {"drop_after_pay": N} pays
and then closes the connection without answering (an unknown outcome).

Run alone: python3 fake_giftcard.py PORT API_KEY
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Provider:
    def __init__(self, api_key):
        self.api_key = api_key
        self.lock = threading.Lock()
        self.by_key = {}      # key -> (request fingerprint, card)
        self.paid = []        # cards actually issued
        self.requests = 0
        self.fail = 0
        self.fail_status = 503
        self.drop_after_pay = 0
        self.webhooks = []    # webhooks received on /webhook

    def issue(self, key, req):
        """Returns (status, answer, drop)."""
        fp = (req.get("amount"), req.get("currency"))
        with self.lock:
            self.requests += 1
            if self.fail > 0:
                self.fail -= 1
                return self.fail_status, {"error": "try again"}, False
            if key in self.by_key:
                old_fp, card = self.by_key[key]
                if old_fp != fp:
                    return 409, {"error": "idempotency key reused with "
                                          "other parameters"}, False
                return 200, card, False
            card = {"id": "card_%d" % (len(self.paid) + 1),
                    "external_id": req.get("external_id"),
                    "idempotency_key": key,
                    "amount": req.get("amount"),
                    "currency": req.get("currency"),
                    "recipient": req.get("recipient"),
                    "code": "GC-%06d" % (len(self.paid) + 1)}
            self.by_key[key] = (fp, card)
            self.paid.append(card)
            drop = self.drop_after_pay > 0
            if drop:
                self.drop_after_pay -= 1
            return 201, card, drop


def make_handler(p):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            self.raw = raw
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return None

        def do_GET(self):
            if self.path == "/_fake/payments":
                with p.lock:
                    self.answer(200, {"paid": list(p.paid),
                                      "requests": p.requests,
                                      "webhooks": list(p.webhooks)})
            else:
                self.answer(404, {"error": "not found"})

        def do_POST(self):
            req = self.body()
            if self.path == "/_fake/faults":
                with p.lock:
                    p.fail = int(req.get("fail", 0))
                    p.fail_status = int(req.get("status", 503))
                    p.drop_after_pay = int(req.get("drop_after_pay", 0))
                self.answer(200, {"ok": True})
                return
            if self.path == "/webhook":
                with p.lock:
                    p.webhooks.append({"headers": {
                        k.lower(): v for k, v in self.headers.items()},
                        "body": req, "raw": self.raw.decode()})
                self.answer(200, {"ok": True})
                return
            if self.path != "/v1/cards":
                self.answer(404, {"error": "not found"})
                return
            if self.headers.get("Authorization") != "Bearer " + p.api_key:
                self.answer(401, {"error": "bad api key"})
                return
            if not isinstance(req, dict) or not isinstance(
                    req.get("amount"), (int, float)) or not req.get(
                    "currency"):
                self.answer(400, {"error": "amount and currency needed"})
                return
            key = self.headers.get("Idempotency-Key") or req.get(
                "external_id")
            if not key:
                self.answer(400, {"error": "Idempotency-Key needed"})
                return
            status, card, drop = p.issue(key, req)
            if drop:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.answer(status, card)

    return Handler


def start(api_key="test-giftcard-key", port=0):
    """Starts the provider on 127.0.0.1 in a thread; returns the server,
    whose .provider holds the state and .url the base URL."""
    p = Provider(api_key)
    srv = ThreadingHTTPServer(("127.0.0.1", port), make_handler(p))
    srv.daemon_threads = True
    srv.provider = p
    srv.url = "http://127.0.0.1:%d" % srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


if __name__ == "__main__":
    s = start(sys.argv[2] if len(sys.argv) > 2 else "test-giftcard-key",
              int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(s.url, flush=True)
    threading.Event().wait()
