#!/usr/bin/env python3
"""Delivers the sample referrals to a running referee as signed webhooks
(Standard Webhooks), then prints what the store kept. Used by make demo."""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import subprocess
import sys
import time


def wait_for_port(log_path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(log_path, encoding="utf-8") as f:
                m = re.search(r"addr=127\.0\.0\.1:(\d+)", f.read())
            if m:
                return int(m.group(1))
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    sys.exit("demo: referee did not start; see " + log_path)


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def post(conn, path, body, headers):
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


def main():
    ap = argparse.ArgumentParser()
    for flag in ("log", "sample", "tenant", "source", "bin", "data"):
        ap.add_argument("--" + flag, required=True)
    a = ap.parse_args()
    secret = os.environ["ACME_SITE_SECRET"]
    port = wait_for_port(a.log)
    with open(os.path.join(a.sample, "referrals.json"), encoding="utf-8") as f:
        referrals = json.load(f)

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    path = f"/t/{a.tenant}/hooks/{a.source}"
    counts = {}
    for i, ref in enumerate(referrals):
        body = json.dumps({"type": "referral.submitted", "data": ref}).encode()
        msg_id, ts = f"msg_demo_{i}", str(int(time.time()))
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": ts,
                   "webhook-signature": sign(secret, msg_id, ts, body)}
        status, _ = post(conn, path, body, headers)
        counts[status] = counts.get(status, 0) + 1
    # A sender retrying the first delivery, and a forged one.
    body = json.dumps({"type": "referral.submitted",
                       "data": referrals[0]}).encode()
    ts = str(int(time.time()))
    retry = {"content-type": "application/json", "webhook-id": "msg_demo_0",
             "webhook-timestamp": ts,
             "webhook-signature": sign(secret, "msg_demo_0", ts, body)}
    status, answer = post(conn, path, body, retry)
    print(f"retried delivery msg_demo_0 -> {status} {json.dumps(answer)}")
    forged = dict(retry, **{"webhook-id": "msg_forged"})
    status, answer = post(conn, path, body, forged)
    print(f"forged signature          -> {status} {json.dumps(answer)}")

    print(f"delivered {len(referrals)} referrals: " +
          ", ".join(f"{n} x HTTP {s}" for s, n in sorted(counts.items())))
    out = subprocess.run([a.bin, "events", "list", "--data", a.data,
                          "--tenant", a.tenant], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    print(f"events stored for tenant {a.tenant}: {len(out)}")
    first = json.loads(out[0])
    print("first stored event:", json.dumps(
        {k: first[k] for k in ("id", "received", "source", "headers")}))


if __name__ == "__main__":
    main()
