-- POST /people-task/tasks with a different, realistic task each time.
--
--   wrk ... -H "Authorization: Bearer TOKEN" -s create.lua URL -- APPROVERS REQUESTERS TAG
--
-- Approvers are approver0000@example.com ... (APPROVERS of them) and requesters
-- requester00@example.com ... (REQUESTERS), as the bench's fill writes them, so
-- creating a task finds both people already known, as it mostly would in use.
-- Deadlines spread over the coming year. TAG keeps titles apart between runs.

local approvers = 1000
local requesters = 50
local tag = "run"
local counter = 0
local now = 0
local year = 365 * 24 * 3600

local description = "Please review the request and approve or reject it before the deadline. "
  .. "Budget line, justification and the requester's notes are attached."

function init(args)
  approvers = tonumber(args[1]) or approvers
  requesters = tonumber(args[2]) or requesters
  tag = args[3] or tag
  now = os.time()
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local deadline = os.date("!%Y-%m-%dT%H:%M:%SZ", now + 3600 + (counter * 7919) % year)
  local body = string.format(
    '{"title":"Purchase request %s-%d","requester":"requester%02d@example.com",'
      .. '"approver":"approver%04d@example.com","description":"%s","decisionBy":"%s"}',
    tag,
    counter,
    counter % requesters,
    (counter * 7) % approvers,
    description,
    deadline
  )
  return wrk.format("POST", "/people-task/tasks", nil, body)
end
