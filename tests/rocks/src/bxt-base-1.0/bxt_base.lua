-- bxt-base 1.0: a pure-Lua test rock.
local M = { version = "1.0" }
function M.double(x) return 2 * x end
return M
