"""Soak variant of test_crash (runs under `make soak` only): many SIGKILLs
at random moments, some of them while the unacknowledged deliveries are
being resent, a few graceful restarts in between, and a small initial map
so that the store also grows between crashes.

REFEREE_CRASH_SEED replays a run (the seed is printed); REFEREE_SOAK_ROUNDS
sets the number of rounds (default 24)."""

import os
import re
import unittest

from crash import Ledger, crash_round, seeded_rng
from harness import DaemonTestCase

COUNT = 2000
ROUNDS = int(os.environ.get("REFEREE_SOAK_ROUNDS", "24"))


class SoakCrashTest(DaemonTestCase):

    def test_many_kill_9_points_lose_and_repeat_nothing(self):
        rng = seeded_rng(self, os.environ.get("REFEREE_CRASH_SEED"))
        d = self.daemon(config="return { store = { map_size_mb = 2 } }\n",
                        label="soak crash daemon")
        ledger = Ledger()
        kills = 0

        def kill_resend(n):
            # A third of the resends are cut short by another kill.
            return rng.randint(1, max(1, n - 1)) if rng.random() < 0.33 \
                else None

        for n in range(ROUNDS):
            kill_after = rng.choice([1, rng.randint(1, 50),
                                     rng.randint(1, COUNT - 5),
                                     rng.randint(COUNT - 100, COUNT - 5)])
            with self.subTest(round=n, kill_after=kill_after):
                kills += crash_round(self, d, ledger, rng, COUNT, kill_after,
                                     kill_resend=kill_resend)
            if n % 6 == 5:
                d.restart()  # a graceful restart now and then
        print("  %d kills in %d rounds" % (kills, ROUNDS), flush=True)
        self.assertGreaterEqual(kills, ROUNDS)
        self.assertEqual(len(d.events_list("acme")), COUNT * ROUNDS)
        d.wait_log(re.compile(r'msg="map grown to'), 1)
        d.stop()


if __name__ == "__main__":
    unittest.main()
