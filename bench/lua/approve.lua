-- PUT /people-task/tasks/{id}/approve?secret=SECRET, a different pending task each time.
--
--   wrk ... -s approve.lua URL -- IDS_FILE SECRET
--
-- IDS_FILE holds one pending task id per line, all with the approver whose
-- secret is SECRET. Run with -t1 (one thread, one counter): every request then
-- approves a task no other request touched. When the ids run out they start
-- over and the service answers 409 (already decided), which wrk counts as
-- "Non-2xx or 3xx responses".

local ids = {}
local next_index = 1
local suffix = ""

function init(args)
  local path = args[1] or error("usage: -- IDS_FILE SECRET")
  suffix = "/approve?secret=" .. (args[2] or error("usage: -- IDS_FILE SECRET"))
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
  return wrk.format("PUT", "/people-task/tasks/" .. id .. suffix)
end
