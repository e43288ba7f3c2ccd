-- 50 secrets in rotation over the AWS-agent path form, with the agent's token header.
local n = 0
request = function()
  n = n + 1
  local path = string.format("/v1/bench-%02d", (n % 50) + 1)
  return wrk.format("GET", path, { ["X-Aws-Parameters-Secrets-Token"] = "bench-token" })
end
