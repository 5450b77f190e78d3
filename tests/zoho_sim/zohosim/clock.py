"""The simulator's clock.

Everything that depends on time (token expiry, Modified_Time of writes, the
credit window, watch channel expiry, page-token expiry) asks this clock, so a
test can jump forward an hour without waiting. The clock runs at real speed
from a chosen start unless it is frozen.
"""
import threading
import time


class SimClock:
    """A movable clock: real elapsed time plus an adjustable base."""

    def __init__(self, start=None, frozen=False):
        self._lock = threading.Lock()
        self._base_sim = 0.0
        self._base_real = 0.0
        self._frozen = False
        self.reset(start, frozen)

    def reset(self, start=None, frozen=False):
        """Restart at ``start`` (POSIX seconds; None means the real now)."""
        with self._lock:
            self._base_sim = time.time() if start is None else float(start)
            self._base_real = time.monotonic()
            self._frozen = bool(frozen)

    def now(self):
        """Return the simulated time in POSIX seconds."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self):
        if self._frozen:
            return self._base_sim
        return self._base_sim + (time.monotonic() - self._base_real)

    def _rebase_locked(self, sim_time):
        self._base_sim = sim_time
        self._base_real = time.monotonic()

    def advance(self, seconds):
        """Move the clock forward (or back, with a negative number)."""
        with self._lock:
            self._rebase_locked(self._now_locked() + float(seconds))

    def set(self, epoch):
        """Jump to an absolute time in POSIX seconds."""
        with self._lock:
            self._rebase_locked(float(epoch))

    def freeze(self, frozen):
        """Stop (True) or restart (False) the clock at the current time."""
        with self._lock:
            self._rebase_locked(self._now_locked())
            self._frozen = bool(frozen)

    @property
    def frozen(self):
        """True while the clock stands still."""
        return self._frozen
