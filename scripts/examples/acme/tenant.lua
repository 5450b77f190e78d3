-- Example tenant "acme": a customer-referral program run out of Acme's
-- Zoho CRM organisation (the bundled sample org, data/zoho-sample/).
--
--   1. Enrol. Every Contact that Zoho changes goes to cohort(); the ones
--      it accepts become referrers with a referral code, written back to
--      the contact's Referral_Code and Referral_Link fields.
--   2. Capture. A referred person posted to POST /t/acme/referrals passes
--      referee's own rules (email, known code, no self-referral, first
--      referrer wins), then capture() maps it onto a Zoho Lead.
--   3. Qualify. The sales team works the lead: it converts it into a
--      contact and a deal. milestone() sees the lead, then the deal, and
--      qualifies the referral when the deal is Closed Won.
--   4. Reward. reward() gives the referrer a gift card and the friend a
--      discount voucher; deals above 10,000 wait for an operator
--      (referee review list|approve|reject).
--
-- docs/workflow.md explains the states and what each hook receives and
-- returns; docs/scripting.md the API; docs/zoho.md the `zoho` table.
--
-- Settings that differ per installation come from the environment
-- (env() fails loading when a variable is unset, so nothing is silently
-- missing). `make demo` (scripts/demo) sets them to point at the Zoho
-- simulator and the stand-in gift-card provider:
--
--   ACME__ZOHO_CLIENT_ID, ACME__ZOHO_CLIENT_SECRET, ACME__ZOHO_REFRESH_TOKEN
--       the Zoho API client and its refresh token
--   ACME__ZOHO_ACCOUNTS_URL   optional: another accounts server (the
--       simulator); unset for the real Zoho, which the data centre names
--   ACME__ZOHO_POLL_S         optional: seconds between polls (default 300)
--   ACME__NOTIFY_URL, ACME__NOTIFY_TOKEN
--       optional: where Zoho's Watch notifications reach this host
--       (https://<host>/t/acme/zoho/notify) and the channel's secret token
--   ACME__REFERRALS_SECRET    signs referral posts relayed by acme's website
--   ACME__GIFTCARD_URL, ACME__GIFTCARD_KEY
--       the gift-card provider's API and key

-- An optional setting: nil when the variable is unset or empty.
local function optional_env(name)
  local ok, value = pcall(env, name)
  if ok and value ~= "" then
    return value
  end
  return nil
end

-- allowed_hosts entry for an http(s) URL. A plain-http or loopback URL
-- (the simulator, the stand-in provider) has to be allowed explicitly:
-- scripts never reach private addresses unless told to.
local function host_of(url)
  local scheme, host, port = url:match("^(https?)://([^/:]+):?(%d*)")
  assert(scheme, "not an http(s) URL: " .. url)
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  local private = host == "localhost" or host:match("^127%.") ~= nil
    or host:match("^10%.") ~= nil or host:match("^192%.168%.") ~= nil
  return { host = host, port = port, http = scheme == "http",
           private = private }
end

local GIFTCARD_URL = env("ACME__GIFTCARD_URL")
local ZOHO_ACCOUNTS_URL = optional_env("ACME__ZOHO_ACCOUNTS_URL")
local NOTIFY_URL = optional_env("ACME__NOTIFY_URL")

-- Reward providers (scripts/plugins/). Their secrets stay in the script
-- state: never in the store, the audit log or an outbox job.
require("giftcard").configure{
  base_url = GIFTCARD_URL,
  api_key = env("ACME__GIFTCARD_KEY"),
}

-- The program's rules in one place.
local COHORT_TIERS = { Gold = true, Platinum = true }
local COHORT_MIN_NPS = 8
local REFERRER_CARD = { amount = 50, currency = "EUR", product = "universal" }
local FRIEND_VOUCHER = { amount = 25, currency = "EUR",
                         product = "acme-discount" }
local REVIEW_ABOVE = 10000 -- deal amount (the org's currency)

-- Zoho's empty fields arrive as json.null, which is truthy in Lua: test
-- the type, not the truth.
local function text(v)
  return type(v) == "string" and v ~= "" and v or nil
end

return {
  zoho = {
    client_id = env("ACME__ZOHO_CLIENT_ID"),
    client_secret = env("ACME__ZOHO_CLIENT_SECRET"),
    refresh_token = env("ACME__ZOHO_REFRESH_TOKEN"),
    dc = "eu",
    accounts_url = ZOHO_ACCOUNTS_URL,
    allowed_hosts = ZOHO_ACCOUNTS_URL and { host_of(ZOHO_ACCOUNTS_URL) }
                    or nil,
    -- What referee reads from each module (Zoho requires naming fields).
    -- Contacts: what cohort() needs. Leads: what milestone() looks at
    -- (the conversion fields are added by referee). Deals: stage and
    -- amount.
    modules = {
      Contacts = { "Email", "Full_Name", "Customer_Tier", "NPS_Score",
                   "Email_Opt_Out" },
      Leads = { "Email", "Lead_Status" },
      Deals = { "Deal_Name", "Stage", "Amount" },
    },
    -- How often referee asks Zoho what changed (5 s to a day). The demo
    -- polls every 5 s so that the sales team's work shows at once.
    poll_every_s = tonumber(optional_env("ACME__ZOHO_POLL_S")) or 300,
    -- With a public URL, Zoho's Watch API tells referee about changes as
    -- they happen, and the poll becomes the safety net (every 30 min).
    notify = NOTIFY_URL and {
      url = NOTIFY_URL,
      token = env("ACME__NOTIFY_TOKEN"),
    } or nil,
  },

  allowed_hosts = { host_of(GIFTCARD_URL) },

  program = {
    -- Each referrer's link; GET /r/{code} redirects to the landing page.
    link = "https://go.acme.example/r/{code}",
    landing = "https://acme.example/refer?code={code}",
    -- The new referrer's code and link are written back to the contact,
    -- so that mail merges and the sales team see them in Zoho.
    code_field = "Referral_Code",
    link_field = "Referral_Link",
    -- acme's website relays its referral form server to server, signed
    -- (Standard Webhooks); unsigned posts straight from browsers are
    -- limited per address.
    secret = env("ACME__REFERRALS_SECRET"),
    form_per_minute = 10,
  },

  -- 1. Enrol: loyal, happy customers we may write to.
  --    Gold or Platinum tier, NPS 8 or more (a number; empty is json.null),
  --    an email, and not opted out of email.
  cohort = function(contact)
    local nps = contact.NPS_Score
    return COHORT_TIERS[contact.Customer_Tier] == true
      and type(nps) == "number" and nps >= COHORT_MIN_NPS
      and text(contact.Email) ~= nil
      and contact.Email_Opt_Out ~= true
  end,

  -- 2. Capture: the referral passed referee's rules; map the person onto
  --    a Lead. referral.person holds what the form sent (first_name,
  --    last_name, email, company); referrer is the enrolled referrer
  --    (contact_id, email, name, code). The upsert matches on Email, so a
  --    retried job never makes a second lead.
  capture = function(referral, referrer)
    local p = referral.person
    local lead = {
      Email = p.email,
      First_Name = text(p.first_name),
      Last_Name = text(p.last_name) or "(unknown)", -- mandatory in Zoho
      Company = text(p.company),
      Lead_Source = "External Referral",
      Lead_Status = "Not Contacted",
      Referral_Code_Used = referral.code,
    }
    -- Referred_By is a custom lookup field to Contacts. Referrers who
    -- joined through the form (POST /t/acme/join) are no contacts yet
    -- (their id is "join:<n>"); their code says who they are.
    if referrer and tostring(referrer.contact_id):match("^%d+$") then
      lead.Referred_By = { id = referrer.contact_id }
    end
    return { module = "Leads", record = lead,
             duplicate_check_fields = { "Email" } }
  end,

  -- 3. Qualify. referee gives this hook every change of a record linked
  --    to the referral: the lead, and after conversion the contact and the
  --    deal it became. Answer "qualified", "rejected", nil (nothing yet),
  --    or a table with a reason.
  milestone = function(record, referral)
    local stage = text(record.Stage)
    if stage == "Closed Won" then
      -- Remember the amount for reward() (a deal above REVIEW_ABOVE is
      -- reviewed). A repeated call writes the same value.
      store.put("deal_amount:" .. referral.id, record.Amount)
      return { status = "qualified", reason = "deal won" }
    elseif stage == "Closed Lost" then
      return { status = "rejected", reason = "deal lost" }
    elseif stage == nil and record.Lead_Status == "Junk Lead" then
      -- The sales team disqualified the lead: no deal will follow.
      return { status = "rejected", reason = "junk lead" }
    end
    return nil
  end,

  -- 4. Reward, once the referral qualified. Each action is an outbox job
  --    keyed "reward:<referral>:<rule>", paid exactly once, also across
  --    crashes. Both sides go through the gift-card provider, which takes
  --    that key as its idempotency key: the referrer gets a gift card,
  --    the friend a discount voucher for their first Acme order. (A
  --    webhook to a billing system would do for the voucher too, but
  --    webhooks are delivered at least once and the receiver would have
  --    to de-duplicate on webhook-id; the provider does it for us.)
  reward = function(referral, referrer)
    if referral.reversed then
      -- The won deal was reopened or lost after the reward. Gift cards
      -- are not taken back; the audit log keeps the reversal.
      return nil
    end
    local actions = {}
    if referrer and text(referrer.email) then
      actions[#actions + 1] = {
        kind = "reward", rule = "referrer_giftcard", to = "referrer",
        plugin = "giftcard", amount = REFERRER_CARD.amount,
        currency = REFERRER_CARD.currency, product = REFERRER_CARD.product,
        email = referrer.email,
        message = "Thank you for referring " .. (text(referral.person
          .first_name) or "a friend") .. " to Acme!",
      }
    end
    actions[#actions + 1] = {
      kind = "reward", rule = "friend_discount", to = "referred",
      plugin = "giftcard", amount = FRIEND_VOUCHER.amount,
      currency = FRIEND_VOUCHER.currency, product = FRIEND_VOUCHER.product,
      email = referral.person.email,
      message = "Welcome to Acme: your discount for your first order.",
    }
    -- The deal's amount, as milestone() saw it when the deal was won;
    -- read from Zoho if it was not kept.
    local amount = store.get("deal_amount:" .. referral.id)
    if type(amount) ~= "number" and referral.deal then
      local deal = crm.get("Deals", referral.deal, { "Amount" })
      amount = deal and deal.Amount
    end
    local out = { actions = actions }
    if type(amount) == "number" and amount > REVIEW_ABOVE then
      out.review = string.format("deal of %.2f is above %d", amount,
                                 REVIEW_ABOVE)
    end
    return out
  end,
}
