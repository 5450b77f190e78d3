"""Crash rounds for the durable-intake tests (test_crash, test_soak_crash).

A round sends a batch of signed webhooks with distinct delivery ids from
several threads over keep-alive connections, kills the daemon with SIGKILL
once a randomly chosen number of them has been acknowledged, checks the
store of the dead daemon, restarts it on the same data directory, and
resends what was not acknowledged plus a sample of what was. The Ledger
keeps what the senders know; verify() holds the store to it.
"""

import http.client
import json
import random
import threading
import time

from harness import event_body, new_id, scale, wait_until

TENANT, SOURCE = "acme", "shop"


class Ledger:
    """Every delivery sent so far: its body and, once acknowledged, the
    event id the acknowledgement carried."""

    def __init__(self):
        self.bodies = {}
        self.acked = {}
        self.problems = []  # answers no correct daemon gives
        self.lock = threading.Lock()

    def add_batch(self, rng, count, tag):
        ids = []
        for _ in range(count):
            msg_id = new_id(tag)
            pad = "p" * rng.randrange(0, 3000)
            self.bodies[msg_id] = json.dumps(
                {"delivery": msg_id, "pad": pad}).encode()
            ids.append(msg_id)
        return ids

    def unacked(self):
        with self.lock:
            return [i for i in self.bodies if i not in self.acked]

    def record(self, msg_id, resp, must_be_duplicate):
        """Books one answer; returns whether it was an acknowledgement."""
        if resp.status not in (200, 202):
            self.problem("%s: unexpected answer %r" % (msg_id, resp))
            return False
        doc = resp.json()
        event_id = doc.get("event_id")
        with self.lock:
            known = self.acked.get(msg_id)
            if known is not None and known != event_id:
                self.problems.append("%s: acknowledged as %s, now as %s"
                                     % (msg_id, known, event_id))
            if known is not None and resp.status != 200:
                self.problems.append("%s: acknowledged as %s, then stored "
                                     "again as %s" % (msg_id, known,
                                                      event_id))
            if must_be_duplicate and doc != {"event_id": known,
                                             "duplicate": True}:
                self.problems.append("%s: resent after an ack, answered %r"
                                     % (msg_id, resp))
            if known is None:
                self.acked[msg_id] = event_id
        return True

    def problem(self, text):
        with self.lock:
            self.problems.append(text)


class Pass:
    """One sending pass: threads split `ids` and send them back to back on
    keep-alive connections; kill_after (a number of acknowledgements in
    this pass) makes the pass SIGKILL the daemon once it is reached."""

    def __init__(self, daemon, ledger, ids, threads, resent_acked=()):
        self.d = daemon
        self.ledger = ledger
        self.ids = list(ids)
        self.dup = set(resent_acked)
        self.nthreads = threads
        self.acks = 0
        self.finished = 0
        self.killed = threading.Event()
        self.lock = threading.Lock()

    def worker(self, share):
        conn = self.d.connect()
        try:
            for msg_id in share:
                if self.killed.is_set():
                    return
                try:
                    resp = self.d.post_signed(TENANT, SOURCE,
                                              self.ledger.bodies[msg_id],
                                              msg_id=msg_id, conn=conn)
                except (OSError, http.client.HTTPException) as e:
                    if not self.killed.is_set():
                        self.ledger.problem("%s: %r with the daemon up"
                                            % (msg_id, e))
                    return
                if self.ledger.record(msg_id, resp, msg_id in self.dup):
                    with self.lock:
                        self.acks += 1
        finally:
            conn.close()
            with self.lock:
                self.finished += 1

    def run(self, rng, kill_after=None):
        """Sends everything (or until the kill); returns whether it
        killed the daemon."""
        shares = [self.ids[i::self.nthreads] for i in range(self.nthreads)]
        threads = [threading.Thread(target=self.worker, args=(share,))
                   for share in shares]
        for t in threads:
            t.start()
        killed = False
        try:
            if kill_after is not None:
                wait_until(lambda: (self.acks >= kill_after
                                    or self.finished == len(threads)),
                           scale(120), "%d acknowledgements" % kill_after,
                           interval=0.0005)
                if self.finished < len(threads):
                    time.sleep(rng.uniform(0, 0.003))
                    self.killed.set()
                    self.d.kill()
                    killed = True
        finally:
            for t in threads:
                t.join(scale(60))
        return killed


def verify(test, daemon, ledger, complete):
    """Checks the store against the ledger: each acknowledged delivery is
    stored exactly once, under the event id its acknowledgement named, with
    the body sent; with `complete`, every delivery sent is stored. Works on
    a stopped or killed daemon's data directory too."""
    events = daemon.events_list(TENANT)
    ids = [e["id"] for e in events]
    test.assertEqual(ids, sorted(set(ids)), "event ids not unique/ordered")
    stored = {}
    for e in events:
        stored.setdefault(e["headers"].get("webhook-id"), []).append(e)
    unknown = set(stored) - set(ledger.bodies)
    test.assertEqual(unknown, set(), "events nobody sent")
    twice = {i: [e["id"] for e in v] for i, v in stored.items() if len(v) > 1}
    test.assertEqual(twice, {}, "deliveries stored more than once")
    with ledger.lock:
        acked = dict(ledger.acked)
    lost = sorted(i for i in acked if i not in stored)
    test.assertEqual(lost, [], "acknowledged but not stored (%d of %d)"
                     % (len(lost), len(acked)))
    moved = {i: (acked[i], stored[i][0]["id"]) for i in acked
             if stored[i][0]["id"] != acked[i]}
    test.assertEqual(moved, {}, "stored under another event id than acked")
    for msg_id, (event,) in stored.items():
        if event_body(event) != ledger.bodies[msg_id]:
            test.fail("%s: stored body differs from the one sent" % msg_id)
        test.assertEqual(event["source"], SOURCE)
    if complete:
        missing = set(ledger.bodies) - set(stored)
        test.assertEqual(missing, set(), "sent, resent, never stored")
    return len(events)


def crash_round(test, daemon, ledger, rng, count, kill_after, threads=8,
                resend_sample=100, kill_resend=None):
    """One round: send `count` new deliveries, SIGKILL after kill_after
    acknowledgements, verify the dead store, restart, resend until every
    delivery is acknowledged (killing again after kill_resend acks when
    given), and verify the whole store. Returns the number of kills."""
    batch = ledger.add_batch(rng, count, "r")
    kills = 0
    first = Pass(daemon, ledger, batch, threads)
    if first.run(rng, kill_after):
        kills += 1
    test.assertEqual(ledger.problems, [])
    if daemon.proc is None:
        on_disk = verify(test, daemon, ledger, complete=False)
        unacked = len(ledger.unacked())
        daemon.start()
        print("  killed after %d acks: %d unacknowledged, %d of them "
              "stored" % (first.acks, unacked,
                          on_disk - (len(ledger.bodies) - unacked)),
              flush=True)
    while True:
        todo = ledger.unacked()
        acked = [i for i in batch if i in ledger.acked and i not in todo]
        sample = rng.sample(acked, min(resend_sample, len(acked)))
        resend = todo + sample
        rng.shuffle(resend)
        p = Pass(daemon, ledger, resend, threads, resent_acked=sample)
        again = kill_resend(len(resend)) if kill_resend and todo else None
        if p.run(rng, again):
            kills += 1
            test.assertEqual(ledger.problems, [])
            verify(test, daemon, ledger, complete=False)
            daemon.start()
            continue
        test.assertEqual(ledger.problems, [])
        if not ledger.unacked():
            break
    verify(test, daemon, ledger, complete=True)
    return kills


def seeded_rng(test, env_value):
    """A Random seeded from env_value (for replaying a failure) or the
    clock; the seed is printed so a failing run can be repeated."""
    seed = int(env_value) if env_value else random.randrange(1 << 32)
    print("\n%s: seed %d (set REFEREE_CRASH_SEED=%d to replay)"
          % (test.id(), seed, seed), flush=True)
    return random.Random(seed)
