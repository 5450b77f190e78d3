"""Crash soak of `make demo`'s flow: referee is killed with SIGKILL at
random points (cohort sync, referral intake, the sales team's work,
reviews, payouts) at least 20 times and restarted each time. The final
report equals an uninterrupted run's and the stand-in gift-card provider
(which honours idempotency keys and counts what it really paid) paid
exactly once per reward. Runs under `make soak` (label soak)."""

import collections
import os
import random
import shutil
import tempfile
import threading
import time
import unittest

from harness import BIN, KEEP_TMP
import demo_expect

KILLS = int(os.environ.get("REFEREE_DEMO_KILLS", "20"))


class DemoCrashTest(unittest.TestCase):

    def setUp(self):
        self.demo_mod = demo_expect.load_demo()
        self.tmp = tempfile.mkdtemp(prefix="referee-demo-crash-")

    def tearDown(self):
        if not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run_demo(self, name, killer=None):
        lines = []
        demo = self.demo_mod.Demo(BIN, out_dir=os.path.join(self.tmp, name),
                                  echo=lines.append)
        stop = threading.Event()
        thread = None
        if killer is not None:
            thread = threading.Thread(target=killer, args=(demo, stop),
                                      daemon=True)
            thread.start()
        try:
            demo.run()
            stop.set()
            if thread is not None:
                thread.join()
            out = {"report": demo.report()[1], "payments": demo.payments(),
                   "referrals": demo.stored_referrals(),
                   "ids": demo.referral_ids(), "restarts": demo.restarts,
                   "phases": getattr(demo, "kill_phases", None)}
        except Exception:
            print("\n".join(lines))
            raise
        finally:
            stop.set()
            demo.stop()
        return out

    @staticmethod
    def killer(demo, stop):
        """Kills referee at random moments until the flow ends."""
        rng = random.Random()
        demo.kill_phases = collections.Counter()
        while not stop.is_set() and demo.referee is None:
            time.sleep(0.01)
        # Short phases (intake takes about a second) get denser kills.
        while not stop.wait(rng.uniform(0.02, 0.25) if demo.phase in (
                "cohort", "referrals", "crm") else rng.uniform(0.05, 0.6)):
            with demo.lock:
                if stop.is_set():
                    return
                demo.kill_phases[demo.phase] += 1
                demo.kill_referee()
                demo.start_referee()

    def test_killed_twenty_times_same_report_paid_once(self):
        calm = self.run_demo("calm")
        crashed = self.run_demo("crashed", self.killer)
        print("referee killed %d times during the flow: %s" % (
            crashed["restarts"], dict(crashed["phases"])))
        self.assertGreaterEqual(crashed["restarts"], KILLS)
        self.assertGreaterEqual(len(crashed["phases"]), 3)

        def figures(report):
            days = [{k: v for k, v in d.items() if k != "day"}
                    for d in report["days"]]
            return report["total"], days
        if [d["day"] for d in calm["report"]["days"]] == \
                [d["day"] for d in crashed["report"]["days"]]:
            self.assertEqual(crashed["report"]["days"],
                             calm["report"]["days"])
        self.assertEqual(figures(crashed["report"]),
                         figures(calm["report"]))

        want = demo_expect.expected()
        self.assertEqual(crashed["report"]["total"]["qualified"],
                         want["qualified"])
        # The provider paid once per reward: one card per key, and the keys
        # are exactly the rewards referee recorded.
        for run in (calm, crashed):
            keys = collections.Counter(c["idempotency_key"]
                                       for c in run["payments"]["paid"])
            self.assertEqual(set(keys.values()), {1})
            recorded = [x["key"] for r in run["referrals"]
                        for x in r.get("rewards") or []]
            self.assertEqual(sorted(recorded), sorted(keys))
            self.assertEqual(len(keys), 2 * want["qualified"])
            ids = run["ids"]
            self.assertEqual(sorted(keys), sorted(
                "reward:%d:%s" % (ids[i], rule) for i in want["won"]
                for rule in ("referrer_giftcard", "friend_discount")))


if __name__ == "__main__":
    unittest.main()
