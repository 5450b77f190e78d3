---@meta
-- Annotations of the API referee gives tenant scripts, for the Lua language
-- server. Point your editor's Lua workspace library at scripts/types/.
-- docs/scripting.md describes each function in full.

---Reads an environment variable while the script loads; loading fails when
---it is not set. Use it for secrets.
---@param name string
---@return string
function env(name) end

---Reads a file inside the tenant folder while the script loads (a final
---newline is dropped). Use it for secrets.
---@param path string
---@return string
function file(path) end

---@class referee.HttpRequest
---@field method? "GET"|"POST"|"PUT"|"PATCH"|"DELETE"|"HEAD"
---@field url string
---@field headers? table<string, string>
---@field body? string
---@field timeout_ms? integer

---@class referee.HttpResponse
---@field status integer
---@field headers table<string, string> names in lower case
---@field body string

http = {}

---Sends a request to an allowed host and waits for the answer (the hook
---yields meanwhile). Only inside a hook.
---@param req referee.HttpRequest
---@return referee.HttpResponse|nil resp
---@return string? message
---@return "denied"|"timeout"|"too_big"|"connection"|"stopping"|nil code
function http.request(req) end

json = {}

---The value that stands for JSON null.
---@type lightuserdata
json.null = nil

---@param value any
---@return string
function json.encode(value) end

---@param text string
---@return any|nil value
---@return string? message
function json.decode(text) end

---Marks a table to encode as a JSON array (even when empty).
---@param t? table
---@return table
function json.array(t) end

---Marks a table to encode as a JSON object (even when empty).
---@param t? table
---@return table
function json.object(t) end

log = {}

---@param fmt string
---@param ... any
function log.debug(fmt, ...) end

---@param fmt string
---@param ... any
function log.info(fmt, ...) end

---@param fmt string
---@param ... any
function log.warn(fmt, ...) end

---@param fmt string
---@param ... any
function log.error(fmt, ...) end

store = {}

---The tenant's value under key, or nil. Only inside a hook.
---@param key string
---@return any
function store.get(key) end

---Stores a JSON value; returns once it is on disk. Only inside a hook.
---@param key string
---@param value any
---@return boolean|nil ok
---@return string? message
function store.put(key, value) end

---@param key string
---@return boolean|nil ok
---@return string? message
function store.delete(key) end

crypto = {}

---@alias referee.Encoding "hex"|"base64"|"base64url"|"raw"

---@param key string
---@param data string
---@param enc? referee.Encoding default "hex"
---@return string
function crypto.hmac_sha256(key, data, enc) end

---@param data string
---@param enc? referee.Encoding default "hex"
---@return string
function crypto.sha256(data, enc) end

---@param bytes? integer default 16, at most 256
---@param enc? referee.Encoding default "base64url"
---@return string
function crypto.random_token(bytes, enc) end

time = {}

---Seconds since 1970 (UTC), with fractions.
---@return number
function time.now() end

---Parses "2026-03-04T10:21:09+05:30", "...Z" or "2026-03-04".
---@param s string
---@return number|nil seconds
---@return string? message
function time.parse(s) end

---Formats as Zoho writes date-times, e.g. "2026-03-04T10:21:09+05:30".
---@param t number seconds
---@param offset? string|integer "+05:30", "Z" or minutes
---@return string
function time.format(t, offset) end

---@class referee.Event
---@field id string
---@field received string
---@field source string
---@field headers table<string, string>
---@field body? string
---@field body_base64? string
---@field json? any the body decoded, when it is JSON

---@class referee.Tenant
---@field sources? table<string, table>
---@field allowed_hosts? (string|table)[]
---@field limits? { memory_mb?: integer, cpu_ms?: integer }
---@field cohort? fun(contact: table): boolean
---@field capture? fun(referral: table, referrer: table): table
---@field milestone? fun(record: table, referral: table): table|nil
---@field reward? fun(referral: table, referrer: table): table
