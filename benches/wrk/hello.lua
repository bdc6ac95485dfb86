-- GET /hello with no credential: the baseline.
dofile((os.getenv("AUTHLAB_WRK_DIR") or ".") .. "/report.lua")
