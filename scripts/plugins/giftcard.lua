-- giftcard: a reward provider for gift-card style HTTP APIs.
--
-- Configure it once at the top of tenant.lua (secrets stay in the script
-- state; they are never stored with the jobs or written to the audit log):
--
--   local giftcard = require("giftcard").configure{
--     base_url = "https://api.giftcards.example",   -- also in allowed_hosts
--     api_key = env("ACME__GIFTCARD_KEY"),
--   }
--   -- several accounts: configure("eu", {...}) and account = "eu" in actions
--
-- and name it in a reward action:
--
--   { kind = "reward", rule = "referrer_giftcard", to = "referrer",
--     plugin = "giftcard", amount = 50, currency = "EUR",
--     email = referrer.email, product = "universal", message = "Thanks!" }
--
-- pay(action, key) sends POST <base_url>/v1/cards with the JSON body
-- { external_id = key, amount, currency, recipient = { email }, product,
-- message } and the headers "Idempotency-Key: <key>" and
-- "Authorization: Bearer <api_key>". key is the outbox job's idempotency
-- key ("reward:<referral>:<rule>"), the same on every attempt, so the
-- provider issues one card per referral and rule however often we ask.
-- The answer's JSON { id, amount, currency } becomes the reward's record.
--
-- Returns { ok = true, id = ..., amount = ... } or nil, message, class:
-- "permanent" (a 4xx other than 408, 425 and 429, or an address the tenant
-- does not allow), "transient" (408, 425, 429, 5xx) or "unknown" (a
-- timeout, a broken connection or an unreadable 2xx: it may have been
-- paid, so it is retried with the same key).
local M = {}

local accounts = {}

function M.configure(name, opts)
  if opts == nil then
    name, opts = "default", name
  end
  if type(opts) ~= "table" or type(opts.base_url) ~= "string"
      or not opts.base_url:match("^https?://") then
    error("giftcard.configure: base_url (an http(s) URL) is needed", 2)
  end
  if type(opts.api_key) ~= "string" or opts.api_key == "" then
    error("giftcard.configure: api_key is needed", 2)
  end
  accounts[name] = {
    base_url = (opts.base_url:gsub("/+$", "")),
    api_key = opts.api_key,
    timeout_ms = opts.timeout_ms or 10000,
  }
  return M
end

local function class_of(status)
  if status == 408 or status == 425 or status == 429 or status >= 500 then
    return "transient"
  end
  return "permanent"
end

function M.pay(action, key)
  local acc = accounts[action.account or "default"]
  if acc == nil then
    return nil, "giftcard: account '" .. tostring(action.account or "default")
      .. "' is not configured (giftcard.configure in tenant.lua)", "permanent"
  end
  local body = json.encode({
    external_id = key, amount = action.amount, currency = action.currency,
    recipient = json.object({ email = action.email }),
    product = action.product, message = action.message,
  })
  local resp, err, code = http.request{
    method = "POST", url = acc.base_url .. "/v1/cards", body = body,
    timeout_ms = acc.timeout_ms,
    headers = { ["content-type"] = "application/json",
                ["idempotency-key"] = key,
                ["authorization"] = "Bearer " .. acc.api_key },
  }
  if resp == nil then
    return nil, "giftcard: " .. tostring(err),
      code == "denied" and "permanent" or "unknown"
  end
  if resp.status < 200 or resp.status > 299 then
    return nil, string.format("giftcard: HTTP %d: %s", resp.status,
                              resp.body:sub(1, 200)), class_of(resp.status)
  end
  local card = json.decode(resp.body)
  if type(card) ~= "table" or card.id == nil then
    return nil, "giftcard: the answer carries no card id", "unknown"
  end
  return { ok = true, id = tostring(card.id),
           amount = tonumber(card.amount) or action.amount,
           currency = card.currency or action.currency }
end

return M
