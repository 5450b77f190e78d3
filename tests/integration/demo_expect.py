"""What the sample org implies for the demo, computed from
data/zoho-sample/*.json alone (never from referee's output): the cohort
rule of data/README.md, the kinds of referrals.json and the sales team's
steps in progress.json, read with the example tenant's rules
(scripts/examples/acme/tenant.lua)."""

import collections
import importlib.machinery
import importlib.util
import json
import os

from harness import SOURCE_DIR

SAMPLE = os.path.join(SOURCE_DIR, "data", "zoho-sample")
REFUSED_KINDS = ("self_referral", "duplicate_person", "invalid_email",
                 "unknown_referrer")
REFERRER_CARD, FRIEND_VOUCHER, REVIEW_ABOVE = 50, 25, 10000


def load_demo():
    """scripts/demo as a module (its Demo class drives the flow)."""
    path = os.path.join(SOURCE_DIR, "scripts", "demo")
    loader = importlib.machinery.SourceFileLoader("referee_demo", path)
    spec = importlib.util.spec_from_loader("referee_demo", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _load(name):
    with open(os.path.join(SAMPLE, name)) as f:
        data = json.load(f)
    return data["data"] if isinstance(data, dict) else data


def expected():
    contacts = _load("contacts.json")
    referrals = _load("referrals.json")
    progress = _load("progress.json")

    def in_cohort(c):
        nps = c.get("NPS_Score")
        return (c.get("Customer_Tier") in ("Gold", "Platinum")
                and isinstance(nps, (int, float)) and not isinstance(nps, bool)
                and nps >= 8 and isinstance(c.get("Email"), str)
                and c["Email"] != "" and c.get("Email_Opt_Out") is not True)

    kinds = collections.Counter(r["kind"] for r in referrals)
    normal = {i for i, r in enumerate(referrals) if r["kind"] == "normal"}
    # Each referral's story: the last lead status before conversion and
    # the deal's stages after it, with its amount.
    lead_status, converted, stages = {}, set(), collections.defaultdict(list)
    for s in progress:
        i = s["referral"]
        if i not in normal:
            continue  # no lead was made for it: the step is skipped
        if s["action"] == "lead_status" and i not in converted:
            lead_status[i] = s["value"]
        elif s["action"] == "convert":
            converted.add(i)
        elif s["action"] == "deal_stage" and i in converted:
            stages[i].append((s["value"], s.get("amount")))
    qualified, rejected, reversed_, review = set(), set(), set(), set()
    for i in normal:
        decided = None
        if lead_status.get(i) == "Junk Lead" and i not in converted:
            decided = "rejected"
        for stage, amount in stages.get(i, []):
            if stage == "Closed Won" and decided is None:
                decided = "qualified"
                if amount is not None and amount > REVIEW_ABOVE:
                    review.add(i)
            elif stage == "Closed Lost":
                if decided is None:
                    decided = "rejected"
                elif decided == "qualified":
                    reversed_.add(i)
        if decided == "qualified":
            qualified.add(i)
        elif decided == "rejected":
            rejected.add(i)
    return {
        "enrolled": sum(1 for c in contacts if in_cohort(c)),
        "received": len(referrals),
        "refused": sum(kinds[k] for k in REFUSED_KINDS),
        "refused_by_reason": {k: kinds[k] for k in REFUSED_KINDS if kinds[k]},
        "in_crm": len(normal),
        "qualified": len(qualified),
        "rejected": len(rejected),
        "reversed": len(reversed_),
        "rewards": {"count": 2 * len(qualified),
                    "value": {"EUR": (REFERRER_CARD + FRIEND_VOUCHER) *
                              len(qualified)}},
        "review_held": len(review),
        "won": sorted(qualified),  # indexes into referrals.json
    }
