-- PATCH with If-Match, cycling through the documents of a file and keeping each
-- document's latest ETag from the responses (every PATCH names the current ETag,
-- so none is refused with 412 unless the server gets concurrency wrong).
-- wrk ... -s patch.lua URL -- DOCS_FILE PATH_PREFIX THREADS
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local ids, etags, prefix
local position, counter = 0, 0

setup = common.setup

function init(args)
  ids, etags = common.load(args[1], tonumber(args[3]))
  prefix = args[2]
end

function request()
  position = position % #ids + 1
  counter = counter + 1
  local id = ids[position]
  local headers = {
    ["Content-Type"] = "application/json",
    ["If-Match"] = '"' .. etags[id] .. '"',
  }
  return wrk.format("PATCH", prefix .. id, headers, string.format('{"qty":%d}', counter))
end

function response(status, headers, body)
  if status == 200 then
    local id = body:match('"_id":%s*"(%x+)"')
    local etag = body:match('"_etag":%s*"(%x+)"')
    if id and etag and etags[id] then
      etags[id] = etag
    end
  end
end
