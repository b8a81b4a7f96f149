-- bxt-mid: needs bxt-base 1.x.
local base = require("bxt_base")
local M = { base_version = base.version }
function M.quadruple(x) return base.double(base.double(x)) end
M.util = require("bxt_mid.util")
return M
