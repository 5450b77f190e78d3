"""`make demo`'s flow (scripts/demo) with the built binary: the report's
figures equal what the sample data implies (demo_expect.py computes them
from data/zoho-sample alone), the troublesome referrals are refused with
their reasons, and the gift-card provider paid exactly one card to each
side of every referral whose deal was won."""

import collections
import os
import tempfile
import unittest
import urllib.parse

from harness import BIN, KEEP_TMP, scale
import demo_expect


class DemoTest(unittest.TestCase):

    def test_demo_flow_matches_the_sample(self):
        demo_mod = demo_expect.load_demo()
        want = demo_expect.expected()
        tmp = tempfile.mkdtemp(prefix="referee-demo-")
        lines = []
        demo = demo_mod.Demo(BIN, out_dir=os.path.join(tmp, "demo"),
                             echo=lines.append)
        try:
            took = demo.run()
            report = demo.report()[1]
            payments = demo.payments()
            ids = demo.referral_ids()
            stored = demo.stored_referrals()
            lead = demo_mod.http("GET", "%s/_sim/records/Leads?Email=%s" % (
                demo.sim, urllib.parse.quote(stored[0]["person"]["email"])))[1]["data"]
        except Exception:
            print("\n".join(lines))
            raise
        finally:
            demo.stop()
            if not KEEP_TMP:
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
        print("demo took %.1f s" % took)
        self.assertLess(took, scale(120))

        total = report["total"]
        for key in ("enrolled", "received", "refused", "in_crm",
                    "qualified", "rejected", "reversed", "refused_by_reason",
                    "rewards"):
            self.assertEqual(total[key], want[key], key)
        self.assertEqual(total["visits"], 0)
        self.assertEqual(total["dead_letters"], 0)
        self.assertEqual(total["review"], 0)
        self.assertAlmostEqual(total["qualification_rate"],
                               want["qualified"] / want["in_crm"])
        self.assertEqual(len(demo.approved), want["review_held"])

        # The first referral's lead, as capture() mapped it.
        self.assertEqual(len(lead), 1)
        self.assertEqual(lead[0]["Lead_Source"], "External Referral")
        self.assertEqual(lead[0]["Referral_Code_Used"], stored[0]["code"])
        self.assertEqual(lead[0]["Referred_By"]["id"], stored[0]["referrer"])

        # Each troublesome referral is refused with its own reason.
        for i, ref in enumerate(demo.referrals):
            r = stored[i]
            self.assertEqual(r["person"]["email"], ref["referred"]["email"])
            if ref["kind"] in demo_expect.REFUSED_KINDS:
                self.assertEqual((r["status"], r["reason"]),
                                 ("refused", ref["kind"]), i)
            else:
                self.assertNotEqual(r["status"], "refused", i)

        # Exactly one card per side per won deal, and nothing else.
        keys = collections.Counter(c["idempotency_key"]
                                   for c in payments["paid"])
        expect = collections.Counter()
        for i in want["won"]:
            expect["reward:%d:referrer_giftcard" % ids[i]] = 1
            expect["reward:%d:friend_discount" % ids[i]] = 1
        self.assertEqual(keys, expect)
        by_key = {c["idempotency_key"]: c for c in payments["paid"]}
        for i in want["won"]:
            friend = by_key["reward:%d:friend_discount" % ids[i]]
            self.assertEqual(friend["recipient"]["email"],
                             demo.referrals[i]["referred"]["email"])
            self.assertEqual((friend["amount"], friend["currency"]),
                             (demo_expect.FRIEND_VOUCHER, "EUR"))


if __name__ == "__main__":
    unittest.main()
