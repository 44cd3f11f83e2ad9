-- GET one item per request, cycling through the documents of a file.
-- wrk ... -s get.lua URL -- IDS_FILE PATH_PREFIX THREADS
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local ids, prefix
local position = 0

setup = common.setup

function init(args)
  ids = common.load(args[1], tonumber(args[3]))
  prefix = args[2]
end

function request()
  position = position % #ids + 1
  return wrk.format("GET", prefix .. ids[position])
end
