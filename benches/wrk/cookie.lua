-- Sends `Cookie: sid=$AUTHLAB_SID` (the session backend).
dofile((os.getenv("AUTHLAB_WRK_DIR") or ".") .. "/report.lua")
local sid = os.getenv("AUTHLAB_SID")
if not sid or sid == "" then
  error("set AUTHLAB_SID to a session id (the sid cookie of POST /session/login)")
end
wrk.headers["Cookie"] = "sid=" .. sid
