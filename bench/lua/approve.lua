-- PUT /people-task/tasks/{id}/approve?secret=SECRET, a different pending task each time.
--
--   wrk ... -s approve.lua URL -- IDS_FILE
--
-- IDS_FILE holds one pending task per line: its id and its approver secret, separated
-- by a space (a task secret is that task's). Run with -t1 (one thread, one counter):
-- every request then approves a task no other request touched. When the tasks run
-- out they start over and the service answers 409 (already decided), which wrk counts
-- as "Non-2xx or 3xx responses".

local paths = {}
local next_index = 1

function init(args)
  local path = args[1] or error("usage: -- IDS_FILE")
  for line in io.lines(path) do
    local id, secret = line:match("^(%S+) (%S+)$")
    if id then
      paths[#paths + 1] = "/people-task/tasks/" .. id .. "/approve?secret=" .. secret
    end
  end
  if #paths == 0 then
    error("no tasks in " .. path)
  end
end

function request()
  local path = paths[next_index]
  next_index = next_index % #paths + 1
  return wrk.format("PUT", path)
end
