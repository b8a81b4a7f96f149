-- bio_compute: the package of the specification's examples. It sets the global
-- `bio_compute` (as the examples use it after a bare require) and returns it.
local base = require("bxt_base")
local M = {}

-- compute(n): n squared, through the dependency.
function M.compute(n)
  return math.floor(base.double(n) * n / 2)
end

-- analyze_sequence(seq): base counts and GC content of a DNA sequence.
function M.analyze_sequence(seq)
  local counts = { A = 0, C = 0, G = 0, T = 0 }
  for c in seq:upper():gmatch(".") do
    if counts[c] then counts[c] = counts[c] + 1 end
  end
  local n = #seq
  local gc = n > 0 and math.floor((counts.G + counts.C) * 100 / n) or 0
  return string.format("length=%d A=%d C=%d G=%d T=%d GC=%d%%", n, counts.A, counts.C, counts.G, counts.T, gc)
end

bio_compute = M
return M
