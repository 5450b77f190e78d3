"""Faults injected on purpose: errors, 429s, slowness, odd token answers.

A fault is a named rule with either a ``count`` (how many more times it
fires) or a ``rate`` (probability per eligible request, until cleared), and
a ``target``: ``api`` (REST calls, the default), ``token`` (the accounts
server) or ``any``. Thread-safe on its own lock.
"""
import random
import threading

NAMES = ("http_500", "http_429", "slow", "refresh_missing_expires_in",
         "token_error", "watch_fail")
DEFAULT_TARGET = {"refresh_missing_expires_in": "token",
                  "token_error": "token", "watch_fail": "watch"}


class Faults:
    """The active fault rules."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = {}
        self._random = random.Random(0)
        self.fired = {}

    def clear(self):
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def set(self, body):
        """Add rules from a control-API body; raise ValueError if bad.

        Accepted keys: ``http_500``, ``http_429``, ``token_error``,
        ``refresh_missing_expires_in``, ``watch_fail`` (each a count or a
        rule object), ``slow`` (a rule object with ``ms``) or the short
        form ``{"slow_ms": 300, "count": 10}``, and ``seed``.
        """
        rules = {}
        if "seed" in body:
            self._random.seed(body["seed"])
        if "slow_ms" in body:
            rules["slow"] = _rule("slow", {
                "ms": body["slow_ms"], "count": body.get("count"),
                "rate": body.get("rate"), "target": body.get("target")})
        for name in NAMES:
            if name in body:
                rules[name] = _rule(name, body[name])
        with self._lock:
            for name, rule in rules.items():
                if rule["rate"] is None and rule["count"] <= 0:
                    self._rules.pop(name, None)
                else:
                    self._rules[name] = rule
        return sorted(rules)

    def take(self, name, target):
        """Consume one firing of a rule that applies to ``target``.

        Returns the rule (a dict) if it fires now, else None.
        """
        with self._lock:
            rule = self._rules.get(name)
            if rule is None or rule["target"] not in (target, "any"):
                return None
            if rule["rate"] is not None:
                if self._random.random() >= rule["rate"]:
                    return None
            else:
                rule["count"] -= 1
                if rule["count"] <= 0:
                    del self._rules[name]
            self.fired[name] = self.fired.get(name, 0) + 1
            return dict(rule)

    def describe(self):
        """The active rules and how often each kind fired."""
        with self._lock:
            return {"active": {k: dict(v) for k, v in self._rules.items()},
                    "fired": dict(self.fired)}


def _rule(name, spec):
    if isinstance(spec, bool) or spec is None:
        spec = {"count": 1 if spec else 0}
    elif isinstance(spec, (int, float)):
        spec = {"count": int(spec)}
    if not isinstance(spec, dict):
        raise ValueError("%s: expected a count or an object" % name)
    rule = dict(spec)
    rate = rule.get("rate")
    count = rule.get("count")
    if rate is None:
        count = 1 if count is None else int(count)
    elif not 0 <= float(rate) <= 1:
        raise ValueError("%s: rate must be between 0 and 1" % name)
    rule["rate"] = None if rate is None else float(rate)
    rule["count"] = count
    rule["target"] = rule.get("target") or DEFAULT_TARGET.get(name, "api")
    if rule["target"] not in ("api", "token", "any", "watch"):
        raise ValueError("%s: target must be api, token or any" % name)
    if name == "slow":
        rule["ms"] = int(rule.get("ms", rule.get("slow_ms", 0)))
    return rule
