-- bxt-base 1.0, rebuilt with other content under the same version.
local M = { version = "1.0", tampered = true }
function M.double(x) return 2 * x end
return M
