-- A pure-Lua module that needs the C module bxt_cmod.
local c = require("bxt_cmod")
return { sum = function(a, b) return c.add(a, b) end }
