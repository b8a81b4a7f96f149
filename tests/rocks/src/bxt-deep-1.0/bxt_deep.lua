-- Depends on bxt-mid, which depends on bxt-base.
local mid = require("bxt_mid")
return { octuple = function(x) return 2 * mid.quadruple(x) end }
