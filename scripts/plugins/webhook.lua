-- webhook: outgoing webhooks signed as Standard Webhooks
-- (https://www.standardwebhooks.com), for actions { kind = "webhook" }.
--
-- Configure the signing secret once at the top of tenant.lua:
--
--   require("webhook").configure{ secret = env("ACME__WEBHOOK_SECRET") }
--   -- secret: "whsec_" and base64 text, or plain text used as it is;
--   -- several secrets: configure("crm", {...}) and account = "crm"
--
-- and return actions such as
--
--   { kind = "webhook", rule = "notify_shop",
--     url = "https://shop.example/hooks",
--     body = { type = "referral.rewarded", referral = referral.id } }
--
-- pay(action, key) POSTs json.encode(action.body) (an empty object when
-- there is none) with the headers webhook-id (the job's idempotency key,
-- the same on every attempt, so the receiver can de-duplicate),
-- webhook-timestamp (seconds) and webhook-signature
-- "v1,<base64 HMAC-SHA256 of id.timestamp.body>". The url's host must be
-- in the tenant's allowed_hosts.
--
-- Returns { ok = true, id = key, status = ... } on 2xx, or nil, message,
-- class as giftcard does (4xx permanent except 408, 425 and 429; those
-- and 5xx transient; timeouts and broken connections unknown).
local M = {}

local secrets = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64decode(s)
  local map, out, bits, n = {}, {}, 0, 0
  for i = 1, #B64 do map[B64:sub(i, i)] = i - 1 end
  for c in s:gmatch("[^=%s]") do
    local v = map[c]
    if v == nil then return nil end
    bits = (bits << 6) | v
    n = n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char((bits >> n) & 0xff)
    end
  end
  return table.concat(out)
end

function M.configure(name, opts)
  if opts == nil then
    name, opts = "default", name
  end
  if type(opts) ~= "table" or type(opts.secret) ~= "string"
      or opts.secret == "" then
    error("webhook.configure: secret is needed", 2)
  end
  local key = opts.secret
  if key:sub(1, 6) == "whsec_" then
    key = b64decode(key:sub(7))
    if key == nil or key == "" then
      error("webhook.configure: the whsec_ secret is not base64", 2)
    end
  end
  secrets[name] = { key = key, timeout_ms = opts.timeout_ms or 10000 }
  return M
end

-- The headers of one attempt; exposed for tests and receivers' examples.
function M.sign(secret_key, id, ts, body)
  return "v1," .. crypto.hmac_sha256(secret_key, id .. "." .. ts .. "." .. body,
                                     "base64")
end

function M.pay(action, key)
  local s = secrets[action.account or "default"]
  if s == nil then
    return nil, "webhook: secret '" .. tostring(action.account or "default")
      .. "' is not configured (webhook.configure in tenant.lua)", "permanent"
  end
  local body = json.encode(action.body == nil and json.object({})
                           or action.body)
  local ts = string.format("%d", math.floor(time.now()))
  local resp, err, code = http.request{
    method = "POST", url = action.url, body = body, timeout_ms = s.timeout_ms,
    headers = { ["content-type"] = "application/json",
                ["webhook-id"] = key, ["webhook-timestamp"] = ts,
                ["webhook-signature"] = M.sign(s.key, key, ts, body) },
  }
  if resp == nil then
    return nil, "webhook: " .. tostring(err),
      code == "denied" and "permanent" or "unknown"
  end
  if resp.status >= 200 and resp.status <= 299 then
    return { ok = true, id = key, status = resp.status }
  end
  local class = (resp.status == 408 or resp.status == 425
                 or resp.status == 429 or resp.status >= 500)
                and "transient" or "permanent"
  return nil, string.format("webhook: HTTP %d", resp.status), class
end

return M
