-- wrk script for bench/ingest: sends pre-signed Standard Webhooks requests,
-- each with its own webhook-id, so that none is answered as a duplicate.
--
--   wrk ... URL -- SIGNED_FILE BODY_FILE THREADS
--
-- SIGNED_FILE holds one "id timestamp signature" line per request; thread k
-- of THREADS takes lines k, k + THREADS, ... so threads never share an id.
-- At the end one line "RESULT {json}" carries the figures bench/ingest reads.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local heads, nheads, prefix, body
local next_head = 1
sent = 0
wrapped = 0

local function read_file(path)
   local f = assert(io.open(path, "rb"))
   local s = f:read("*a")
   f:close()
   return s
end

function init(args)
   local nthreads = tonumber(args[3])
   local lineno = 0

   body = read_file(args[2])
   heads, nheads = {}, 0
   for line in io.lines(args[1]) do
      if lineno % nthreads == tid then
         local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
         nheads = nheads + 1
         heads[nheads] = "webhook-id: " .. id .. "\r\nwebhook-timestamp: " ..
            ts .. "\r\nwebhook-signature: " .. sig .. "\r\n"
      end
      lineno = lineno + 1
   end
   assert(nheads > 0, "no signed requests for this thread")
   prefix = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.host ..
      ":" .. wrk.port .. "\r\nContent-Type: application/json\r\n" ..
      "User-Agent: referee-bench\r\nContent-Length: " .. #body .. "\r\n"
end

function request()
   local h = heads[next_head]

   next_head = next_head + 1
   if next_head > nheads then
      next_head = 1 -- ids repeat from here on: the run is not valid
      wrapped = 1
   end
   sent = sent + 1
   return prefix .. h .. "\r\n" .. body
end

function done(summary, latency, requests)
   local total_sent, any_wrapped = 0, 0
   local e = summary.errors

   for _, t in ipairs(threads) do
      total_sent = total_sent + t:get("sent")
      any_wrapped = math.max(any_wrapped, t:get("wrapped"))
   end
   io.write(string.format(
      'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"sent":%d,"wrapped":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, total_sent,
      any_wrapped, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
