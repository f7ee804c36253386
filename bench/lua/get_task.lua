-- GET /people-task/tasks/{id}, cycling through existing task ids.
--
--   wrk ... -H "Authorization: Bearer TOKEN" -s get_task.lua URL -- IDS_FILE
--
-- IDS_FILE holds one task id per line. Run with -t1: the cycle is per thread.

local ids = {}
local next_index = 1

function init(args)
  local path = args[1] or error("usage: -- IDS_FILE")
  for line in io.lines(path) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("no task ids in " .. path)
  end
end

function request()
  local id = ids[next_index]
  next_index = next_index % #ids + 1
  return wrk.format("GET", "/people-task/tasks/" .. id)
end
