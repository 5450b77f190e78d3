"""Crash test of durable webhook intake: SIGKILL the daemon while signed
webhooks stream in, restart it on the same data directory, resend, and
check that every acknowledged delivery is stored exactly once under the
event id its acknowledgement named. The long variant is test_soak_crash.

REFEREE_CRASH_SEED replays a run's kill points (the seed is printed)."""

import os
import unittest

from crash import Ledger, crash_round, seeded_rng
from harness import SANITIZED, DaemonTestCase

COUNT = 2000


class CrashTest(DaemonTestCase):

    def kill_points(self, rng, rounds):
        """One early, one middle and one late kill, then random ones."""
        spans = [(1, 60), (COUNT // 3, 2 * COUNT // 3),
                 (COUNT - 150, COUNT - 5)]
        while len(spans) < rounds:
            spans.append((1, COUNT - 5))
        return [rng.randint(lo, hi) for lo, hi in spans[:rounds]]

    def run_rounds(self, rounds, config=None):
        rng = seeded_rng(self, os.environ.get("REFEREE_CRASH_SEED"))
        d = self.daemon(config=config, label="crash daemon")
        ledger = Ledger()
        for n, kill_after in enumerate(self.kill_points(rng, rounds)):
            with self.subTest(round=n, kill_after=kill_after):
                kills = crash_round(self, d, ledger, rng, COUNT, kill_after)
                self.assertGreaterEqual(kills, 1, "finished before the kill")
        self.assertEqual(len(d.events_list("acme")), COUNT * rounds)
        d.stop()

    def test_kill_9_while_webhooks_arrive_loses_and_repeats_nothing(self):
        self.run_rounds(3 if SANITIZED else 4)

    def test_kill_9_with_inline_commits(self):
        self.run_rounds(2, config='return { store = { commit = "inline" } }\n')


if __name__ == "__main__":
    unittest.main()
