"""Lead conversion: a lead becomes a contact, an account and maybe a deal.

Used by ``POST /crm/vN/Leads/{id}/actions/convert`` and by the progress
replay. Fields the lead shares by API name with Contacts are copied over,
plus the standard mappings (City -> Mailing_City and so on). The lead stays,
marked converted, with lookups to what it became.
"""
from . import errors
from . import records_api
from .errors import ApiError, error_item
from .messages import Reply

LEAD_TO_CONTACT = {"City": "Mailing_City", "Country": "Mailing_Country",
                   "Street": "Mailing_Street", "State": "Mailing_State",
                   "Zip_Code": "Mailing_Zip", "Designation": "Title"}
SKIP = {"id", "Owner", "Created_Time", "Modified_Time", "Created_By",
        "Modified_By", "Full_Name", "Company", "Lead_Status", "Tag"}


class ConvertError(Exception):
    """Conversion refused; ``item`` is the error element."""

    def __init__(self, code, message, details):
        super().__init__(code)
        self.item = error_item(code, message, details)


def convert_lead(sim, lead_id, options, user):
    """Convert a lead; return {"Contacts": id, "Accounts": id, "Deals": id}.

    ``options`` follows the v8 body element: ``Accounts``/``Contacts`` ({id}
    or a bare id) pick existing records, ``Deals`` describes a deal to
    create, ``assign_to`` sets the owner, ``overwrite`` lets lead values
    replace those of an existing contact. Raises ConvertError.
    """
    store = sim.store
    leads = store.module("Leads")
    lead = leads.records.get(lead_id)
    if lead is None:
        raise ConvertError("INVALID_DATA", "the id given seems to be invalid",
                           {"id": lead_id})
    if leads.meta[int(lead_id)].converted:
        raise ConvertError("ID_ALREADY_CONVERTED",
                           "the id given is already converted",
                           {"id": lead_id})
    owner = _owner(store, options, lead, user)
    deal_values = _deal_values(sim, options.get("Deals"))
    now = sim.clock.now()
    account_id = _account(sim, options, lead, owner, now, user)
    contact_id = _contact(sim, options, lead, owner, account_id, now, user)
    deal_id = None
    if deal_values is not None:
        deal_id = _deal(sim, deal_values, lead, owner, account_id, contact_id,
                        now, user)
    _mark(sim, lead_id, account_id, contact_id, deal_id, now, user)
    return {"Contacts": contact_id, "Accounts": account_id, "Deals": deal_id}


def _ref(value):
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value is not None else None


def _owner(store, options, lead, user):
    wanted = _ref(options.get("assign_to"))
    if wanted:
        found = store.user(wanted)
        if found is None:
            raise ConvertError("INVALID_DATA", "invalid data",
                               {"api_name": "assign_to"})
        return found
    return lead.get("Owner") or user


def _deal_values(sim, spec):
    """Check the Deals part of the body before anything is written."""
    if spec is None:
        return None
    deals = sim.store.module("Deals")
    try:
        clean = records_api.clean_values(sim, deals, spec,
                                         "$.data[0].Deals", True)
    except records_api.RecordError as exc:
        raise ConvertError(exc.item["code"], exc.item["message"],
                           exc.item["details"]) from None
    return clean


def _account(sim, options, lead, owner, now, user):
    accounts = sim.store.module("Accounts")
    wanted = _ref(options.get("Accounts"))
    if wanted:
        if wanted not in accounts.records:
            raise ConvertError("INVALID_DATA", "invalid data",
                               {"api_name": "Accounts"})
        return wanted
    company = lead.get("Company")
    if not company:
        return None
    found = accounts.find("Account_Name", company)
    if found:
        return found[0]
    return sim.store.create(accounts, {"Account_Name": company,
                                       "Owner": owner}, now, user)


def _contact(sim, options, lead, owner, account_id, now, user):
    store = sim.store
    contacts = store.module("Contacts")
    values = {}
    for name, value in lead.items():
        target = LEAD_TO_CONTACT.get(name, name)
        if name in SKIP or name.startswith("Converted") or value is None:
            continue
        field = contacts.fields.get(target)
        if field is not None and not field.read_only:
            values[target] = value
    if account_id:
        values["Account_Name"] = store.resolve("Accounts", account_id)
    wanted = _ref(options.get("Contacts"))
    if wanted:
        if wanted not in contacts.records:
            raise ConvertError("INVALID_DATA", "invalid data",
                               {"api_name": "Contacts"})
        if options.get("overwrite"):
            store.modify(contacts, wanted, values, now, user)
        return wanted
    values["Owner"] = owner
    return store.create(contacts, values, now, user)


def _deal(sim, values, lead, owner, account_id, contact_id, now, user):
    store = sim.store
    values = dict(values)
    values.setdefault("Owner", owner)
    values["Contact_Name"] = store.resolve("Contacts", contact_id)
    if account_id:
        values["Account_Name"] = store.resolve("Accounts", account_id)
    if lead.get("Lead_Source") and "Lead_Source" not in values:
        values["Lead_Source"] = lead["Lead_Source"]
    return store.create(store.module("Deals"), values, now, user)


def _mark(sim, lead_id, account_id, contact_id, deal_id, now, user):
    store = sim.store
    leads = store.module("Leads")
    values = {"Converted__s": True,
              "Converted_Date_Time": store.fmt(now),
              "Converted_Contact": store.resolve("Contacts", contact_id),
              "Converted_Account": store.resolve("Accounts", account_id)
              if account_id else None,
              "Converted_Deal": store.resolve("Deals", deal_id)
              if deal_id else None}
    leads.mark_converted(lead_id)
    store.modify(leads, lead_id, values, now, user)
    leads.records[lead_id]["$converted"] = True


def convert_call(sim, call, lead_id):
    """POST /Leads/{id}/actions/convert."""
    options = {}
    if call.body:
        data = call.json().get("data")
        if data is not None:
            if not isinstance(data, list) or len(data) != 1 or \
                    not isinstance(data[0], dict):
                raise errors.bad_body("data must hold one object")
            options = data[0]
    user = records_api.acting_user(sim, call)
    try:
        made = convert_lead(sim, lead_id, options, user)
    except ConvertError as exc:
        raise ApiError(400, exc.item["code"], exc.item["message"],
                       exc.item["details"], wrap="data") from None
    details = {}
    for module_name, rid in made.items():
        if call.version < 3:
            details[module_name] = rid
        elif rid is None:
            details[module_name] = None
        else:
            details[module_name] = sim.store.resolve(module_name, rid)
    return Reply(200, {"data": [{
        "code": "SUCCESS", "details": details,
        "message": "The record has been converted successfully",
        "status": "success"}]})
