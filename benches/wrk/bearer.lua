-- Sends `Authorization: Bearer $AUTHLAB_TOKEN` (the redis and jwt backends).
dofile((os.getenv("AUTHLAB_WRK_DIR") or ".") .. "/report.lua")
local token = os.getenv("AUTHLAB_TOKEN")
if not token or token == "" then
  error("set AUTHLAB_TOKEN to an access token (POST /redis/login or /jwt/login)")
end
wrk.headers["Authorization"] = "Bearer " .. token
