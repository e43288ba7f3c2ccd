-- 50 secrets in rotation with the AWS agent's token header; ROUTE=agent asks on the agent's own route
-- (/secretsmanager/get?secretId=...), anything else on its path form (/v1/<id>).
local n = 0
local agent = os.getenv("ROUTE") == "agent"
request = function()
  n = n + 1
  local id = string.format("bench-%02d", (n % 50) + 1)
  local path = agent and ("/secretsmanager/get?secretId=" .. id) or ("/v1/" .. id)
  return wrk.format("GET", path, { ["X-Aws-Parameters-Secrets-Token"] = "bench-token" })
end
