-- Shared by the benchmark scripts: each wrk thread takes its own slice of the
-- documents listed in a file (one "<id> <etag>" per line).
local common = {}
local threads_made = 0

-- Runs in wrk's main Lua state, once per thread, before that thread's init().
function common.setup(thread)
  thread:set("slice", threads_made)
  threads_made = threads_made + 1
end

-- The ids (and their ETags) of this thread's slice of the file at `path`.
function common.load(path, nthreads)
  local ids, etags = {}, {}
  local index = 0
  for line in io.lines(path) do
    local id, etag = line:match("^(%x+)%s+(%x+)")
    if id then
      if index % nthreads == slice then
        ids[#ids + 1] = id
        etags[id] = etag
      end
      index = index + 1
    end
  end
  if #ids == 0 then
    error("no documents for thread " .. tostring(slice) .. " in " .. path)
  end
  return ids, etags
end

return common
