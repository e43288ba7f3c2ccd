-- 50 secrets in rotation over the AWS agent's own route, with its token header.
local n = 0
request = function()
  n = n + 1
  local path = string.format("/secretsmanager/get?secretId=bench-%02d", (n % 50) + 1)
  return wrk.format("GET", path, { ["X-Aws-Parameters-Secrets-Token"] = "bench-token" })
end
