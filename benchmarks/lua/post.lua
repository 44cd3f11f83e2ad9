-- POST one new document per request (the harness deletes them afterwards by title).
-- wrk ... -s post.lua URL -- PATH
local path, counter = "/items", 0

function init(args)
  path = args[1] or path
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"title":"posted by wrk","sku":"WRK-%05d","qty":%d,"price":9.5,'
      .. '"tags":["bench","post"],"in_stock":true}',
    counter % 100000, counter)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
