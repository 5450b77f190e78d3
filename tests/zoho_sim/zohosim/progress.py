"""Replay of progress.json: what a sales team does with referred leads.

Each step names a referral (an index into referrals.json) and acts on the
lead that was created through the API for that referral's email: it changes
``Lead_Status``, converts the lead (contact, account and deal), or moves the
converted deal's ``Stage`` and ``Amount``. A step whose lead (or deal) does
not exist is skipped and reported. Every change bumps Modified_Time and fires
watch notifications like an API write.
"""
import datetime as dt
import json
import os

from . import convert
from . import ztime


class Progress:
    """The steps, the referrals they refer to, and how far replay got."""

    def __init__(self):
        self.steps = []
        self.referrals = []
        self.position = 0

    def load(self, data_dir):
        """Read progress.json and referrals.json (missing files: empty)."""
        self.steps = _read(os.path.join(data_dir, "progress.json"))
        self.referrals = _read(os.path.join(data_dir, "referrals.json"))
        self.position = 0

    def describe(self):
        """Where replay stands."""
        upcoming = self.steps[self.position] if \
            self.position < len(self.steps) else None
        return {"position": self.position, "total": len(self.steps),
                "remaining": len(self.steps) - self.position,
                "next": upcoming}

    def choose(self, body):
        """How many of the next steps a control body asks for."""
        left = len(self.steps) - self.position
        if body.get("all"):
            return left
        if "until" in body:
            limit = ztime.parse_loose(body["until"])
            count = 0
            while count < left and _at(
                    self.steps[self.position + count]) <= limit:
                count += 1
            return count
        steps = body.get("steps", 1)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError("steps must be a non-negative integer")
        return min(steps, left)

    def apply(self, sim, body):
        """Apply steps chosen by ``body``; return what happened.

        ``use_step_time: true`` moves the clock forward to each step's
        ``at`` (never backwards) before applying it. Each step is its own
        change set, so watch callbacks go out step by step.
        """
        count = self.choose(body)
        applied, skipped = [], []
        user = sim.store.user()
        for _ in range(count):
            index = self.position
            step = self.steps[index]
            self.position += 1
            if body.get("use_step_time"):
                at = _at(step)
                if at > sim.clock.now():
                    sim.clock.set(at)
            outcome = self._apply_one(sim, step, user)
            outcome.update(index=index, at=step.get("at"),
                           referral=step.get("referral"),
                           action=step.get("action"),
                           value=step.get("value"))
            (skipped if "reason" in outcome else applied).append(outcome)
            sim.flush_changes()
        result = {"applied": applied, "skipped": skipped}
        result.update(self.describe())
        return result

    def _apply_one(self, sim, step, user):
        email = self._email(step)
        if email is None:
            return {"reason": "step names no known referral"}
        lead_id = find_api_lead(sim, email)
        if lead_id is None:
            return {"reason": "no lead created through the API for %s" %
                    email, "email": email}
        action = step.get("action")
        if action == "lead_status":
            return self._lead_status(sim, lead_id, step, user)
        if action == "convert":
            return self._convert(sim, lead_id, user)
        if action == "deal_stage":
            return self._deal_stage(sim, lead_id, step, user)
        return {"reason": "unknown action %r" % action, "lead_id": lead_id}

    def _email(self, step):
        index = step.get("referral")
        if not isinstance(index, int) or not \
                0 <= index < len(self.referrals):
            return None
        return (self.referrals[index].get("referred") or {}).get("email")

    @staticmethod
    def _lead_status(sim, lead_id, step, user):
        leads = sim.store.module("Leads")
        if leads.meta[int(lead_id)].converted:
            return {"reason": "lead already converted", "lead_id": lead_id}
        sim.store.modify(leads, lead_id, {"Lead_Status": step.get("value")},
                         sim.clock.now(), user)
        return {"lead_id": lead_id}

    @staticmethod
    def _convert(sim, lead_id, user):
        lead = sim.store.module("Leads").records[lead_id]
        now = sim.clock.now()
        name = lead.get("Company") or lead.get("Full_Name") or "Referral"
        closing = dt.datetime.fromtimestamp(now + 30 * 86400,
                                            dt.timezone.utc).date()
        deal = {"Deal_Name": "%s - Referral" % name, "Stage": "Qualification",
                "Closing_Date": closing.isoformat(), "Pipeline":
                "Standard (Standard)"}
        try:
            made = convert.convert_lead(sim, lead_id, {"Deals": deal}, user)
        except convert.ConvertError as exc:
            return {"reason": exc.item["code"], "lead_id": lead_id}
        return {"lead_id": lead_id, "contact_id": made["Contacts"],
                "account_id": made["Accounts"], "deal_id": made["Deals"]}

    @staticmethod
    def _deal_stage(sim, lead_id, step, user):
        lead = sim.store.module("Leads").records[lead_id]
        deal_ref = lead.get("Converted_Deal") or {}
        deals = sim.store.module("Deals")
        deal_id = deal_ref.get("id")
        if deal_id not in deals.records:
            return {"reason": "lead has no converted deal", "lead_id": lead_id}
        values = {"Stage": step.get("value")}
        if step.get("amount") is not None:
            values["Amount"] = step["amount"]
        sim.store.modify(deals, deal_id, values, sim.clock.now(), user)
        return {"lead_id": lead_id, "deal_id": deal_id}


def find_api_lead(sim, email):
    """The oldest lead created through the API with this email, or None."""
    leads = sim.store.module("Leads")
    if leads is None or not email:
        return None
    for rid in leads.find("Email", email):
        if leads.meta[int(rid)].api_created:
            return rid
    return None


def _at(step):
    return ztime.parse_loose(step.get("at", "1970-01-01T00:00:00Z"))


def _read(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
