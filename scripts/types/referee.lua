---@meta
-- Annotations of the API referee gives tenant scripts, for the Lua language
-- server. Point your editor's Lua workspace library at scripts/types/.
-- docs/scripting.md describes each function in full.

---Reads an environment variable while the script loads; loading fails when
---it is not set or not the tenant's own: its name starts with the tenant id
---upper-cased, '-' as '_', then two underscores (acme: ACME__SHOP_SECRET).
---Use it for secrets.
---@param name string
---@return string
function env(name) end

---Reads a regular file inside the tenant folder while the script loads (a
---final newline is dropped; at most 4 KiB). Use it for secrets. Symbolic
---links may not lead outside the tenant folder.
---@param path string
---@return string
function file(path) end

---@class referee.HttpRequest
---@field method? "GET"|"POST"|"PUT"|"PATCH"|"DELETE"|"HEAD"|"OPTIONS"|string 1 to 16 upper-case letters
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

---Stores a JSON value; returns true once it is on disk, or nil and a
---message (also when the tenant's values would go over limits.store_mb).
---Only inside a hook.
---@param key string
---@param value any
---@return boolean|nil ok
---@return string? message
function store.put(key, value) end

---@param key string
---@return boolean|nil ok
---@return string? message
function store.delete(key) end

crm = {}

---A Zoho CRM record as json.decode gives it: ids and text as strings,
---json.null for empty fields, lookups (Owner, Account_Name) as tables.
---@alias referee.CrmRecord table<string, any>

---Zoho's code ("INVALID_DATA", "NO_PERMISSION", ...) or ours.
---@alias referee.CrmCode string|"no_connection"|"limit"|"timeout"|"stopping"|"config"|"denied"|"http"|"connection"|"too_big"|"bad_answer"|"no_memory"

---A list of field API names, or "Email,Last_Name".
---@alias referee.CrmFields string[]|string

---One condition: { field, operator, value }; a list of values serves
---"in", "between" and several "equals"; json.null matches empty fields.
---@alias referee.CrmCondition { [1]: string, [2]: "equals"|"not_equal"|"starts_with"|"in"|"greater_than"|"greater_equal"|"less_than"|"less_equal"|"between", [3]: string|number|boolean|lightuserdata|(string|number|boolean)[] }

---The outcome of one written record.
---@class referee.CrmResult
---@field ok boolean Zoho wrote the record
---@field code string "SUCCESS", "INVALID_DATA", "MANDATORY_NOT_FOUND", ...
---@field message? string
---@field id? string the record's id
---@field action? "insert"|"update"
---@field field? string the field Zoho refused
---@field duplicate_field? string the field an upsert matched on

---@class referee.CrmGetOpts
---@field fields? referee.CrmFields

---@class referee.CrmSearchOpts
---@field fields? referee.CrmFields
---@field page? integer from 1
---@field per_page? integer 1 to 200, default 200

---@class referee.CrmListOpts
---@field fields referee.CrmFields required, at most 50
---@field sort_by? "id"|"Created_Time"|"Modified_Time"
---@field sort_order? "asc"|"desc"
---@field modified_since? string|number "2026-03-04T10:21:09+05:30" or seconds
---@field max? integer records to return, default 200, at most 2000

---@class referee.CrmWriteOpts
---@field trigger? string[] automations to run ("workflow", "approval", "blueprint"); {} runs none
---@field duplicate_check_fields? string[] upsert: fields to match records on

---One record by id; a single nil when there is none. Waits; only inside
---a hook.
---@param module string API name: "Contacts", "Leads", ...
---@param id string
---@param opts? referee.CrmGetOpts
---@return referee.CrmRecord|nil record
---@return string? message
---@return referee.CrmCode? code
function crm.get(module, id, opts) end

---One page of the records matching `criteria`: Zoho's text, or a list of
---conditions joined by and (`join = "or"` in the list: by or). Waits;
---only inside a hook.
---@param module string
---@param criteria string|referee.CrmCondition[]|{ join?: "and"|"or" }
---@param opts? referee.CrmSearchOpts
---@return referee.CrmRecord[]|nil records
---@return boolean|string more Zoho has further pages; else the message
---@return referee.CrmCode? code
function crm.search(module, criteria, opts) end

---Up to `opts.max` records, read page by page. Waits; only inside a hook.
---@param module string
---@param opts referee.CrmListOpts
---@return referee.CrmRecord[]|nil records
---@return boolean|string more Zoho has more records; else the message
---@return referee.CrmCode? code
function crm.list(module, opts) end

---Inserts or updates (matched on duplicate_check_fields) one record, or a
---list of up to 1000 (then a result per record, in order). A single record
---Zoho refused gives nil, message, code, result. Waits; only inside a hook.
---@param module string
---@param records referee.CrmRecord|referee.CrmRecord[]
---@param opts? referee.CrmWriteOpts
---@return referee.CrmResult|referee.CrmResult[]|nil result
---@return string? message
---@return referee.CrmCode? code
---@return referee.CrmResult? refused
function crm.upsert(module, records, opts) end

---Updates the given fields of one record. Zoho refusing it gives nil,
---message, code, result. Waits; only inside a hook.
---@param module string
---@param id string
---@param fields table<string, any>
---@param opts? { trigger?: string[] }
---@return referee.CrmResult|nil result
---@return string? message
---@return referee.CrmCode? code
---@return referee.CrmResult? refused
function crm.update(module, id, fields, opts) end

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

---Formats as Zoho writes date-times, e.g. "2026-03-04T10:21:09+05:30";
---offset "Z" writes "2026-03-04T04:51:09Z" instead of "+00:00".
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
---@field limits? { memory_mb?: integer, cpu_ms?: integer, store_mb?: integer }
---@field zoho? table the Zoho CRM connection (docs/zoho.md); enables crm.*
---@field cohort? fun(contact: table): boolean
---@field capture? fun(referral: table, referrer: table): table
---@field milestone? fun(record: table, referral: table): table|nil
---@field reward? fun(referral: table, referrer: table): table
