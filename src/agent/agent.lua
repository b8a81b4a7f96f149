-- bioxen_vm agent: runs Lua code for a host over length-prefixed frames (see
-- PROTOCOL.md). Lua 5.1-5.4, standard library only. The interpreter is started
-- as `lua -e <bootstrap>`; the bootstrap reads this text from stdin and runs it
-- under the chunk name "=(bioxen_agent)" (so that its frames can be cut from
-- user tracebacks). Requests arrive on stdin; frames go out on descriptor 3;
-- the interpreter's real stdout and stderr belong to user code and the
-- processes it starts, and the host captures them apart from the frames.
local type, tostring, tonumber, select, next, pcall, xpcall, error, rawget, setmetatable =
      type, tostring, tonumber, select, next, pcall, xpcall, error, rawget, setmetatable
local format, byte, char, sub, find, gsub, gmatch, match =
      string.format, string.byte, string.char, string.sub, string.find, string.gsub, string.gmatch, string.match
local concat, sort, floor, huge, mtype = table.concat, table.sort, math.floor, math.huge, math.type
local unpack = table.unpack or unpack
local rawlen = rawlen or function(t) return #t end
local io, os, debug = io, os, debug
local dgetmt, dsetmt, traceback = debug.getmetatable, debug.setmetatable, debug.traceback
local exit = os.exit
local real_open = io.open
local LUA51 = _VERSION == "Lua 5.1"
local loadstring, load = loadstring, load
local NOSTDIN = "stdin is not available in a process VM"
local BINARY = "attempt to load a binary chunk (mode is 't')"
-- This chunk, for the host's `code` request (its bytecode, so that later agents on the
-- same interpreter start without compiling this source).
local SELF = debug.getinfo(1, "f").func
local sdump = string.dump

---------------------------------------------------------------- frames
local IN, RAW_OUT = io.stdin, io.stdout
local OUT = real_open("/dev/fd/3", "wb")
if not OUT then
  io.stderr:write("bioxen_vm agent: cannot open the frame channel /dev/fd/3\n")
  exit(71)
end
local fwrite, fflush, fread = OUT.write, OUT.flush, IN.read
local raw_flush = RAW_OUT.flush
OUT:setvbuf("full")

-- Every frame for a request carries the request's token (TOK, #TOK as TOKN):
-- a frame the host did not ask for, or one left over from an earlier request,
-- is told apart at once. LIMIT bounds what one request may send back in its
-- values and error text (the host's max_output).
local TOK, TOKN, LIMIT, DROPPED = "", "0", 16777216, 0

local function send(kind, a) -- kind carries its trailing space: "out "
  fwrite(OUT, kind, TOKN, " ", #a, "\n", TOK, a)
  fflush(OUT)
end
-- Cuts text to LIMIT bytes, counting what it cuts in DROPPED.
local function bounded(s)
  if #s > LIMIT then
    DROPPED = DROPPED + #s - LIMIT
    return sub(s, 1, LIMIT)
  end
  return s
end
local function done_frame(status, values, err)
  local d = tostring(DROPPED)
  return "done ", TOKN, " ", #status, " ", #values, " ", #err, " ", #d, "\n", TOK, status, values, err, d
end
local function send_done(status, values, err)
  err = bounded(err)
  raw_flush(RAW_OUT)
  fwrite(OUT, done_frame(status, values, err))
  fflush(OUT)
end
local function fatal(msg)
  fwrite(OUT, "fatal ", #msg, "\n", msg)
  fflush(OUT)
  exit(70)
end

---------------------------------------------------------------- values out
local HAS_P = pcall(format, "%p", {}) -- 5.4: the address without metamethods

-- The tostring text of a table/function/userdata/thread without metamethods.
local function opaque(v)
  if HAS_P then return type(v) .. ": " .. format("%p", v) end
  local mt = dgetmt(v)
  if mt == nil then return tostring(v) end
  dsetmt(v, nil)
  local ok, s = pcall(tostring, v)
  dsetmt(v, mt)
  return ok and s or type(v)
end

-- As the REPL prints a value: tostring, __tostring honoured.
local function repl_text(v)
  local t = type(v)
  if t == "string" then return v end
  if t ~= "table" and t ~= "userdata" then return tostring(v) end
  local ok, s = pcall(tostring, v)
  if type(s) == "string" then
    if ok then return s end
    return "<tostring failed: " .. s .. ">"
  end
  return opaque(v)
end

local esc = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
              ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
for i = 0, 31 do
  local c = char(i)
  if not esc[c] then esc[c] = format("\\u%04x", i) end
end

-- Replaces each invalid UTF-8 sequence (maximal subpart) with U+FFFD.
local function fix_utf8(s)
  local out, n, i, start = {}, 0, 1, 1
  while true do
    local p = find(s, "[\128-\255]", i)
    if not p then break end
    local b = byte(s, p)
    local need, lo, hi = 0, 128, 191
    if b >= 194 and b <= 223 then need = 1
    elseif b >= 224 and b <= 239 then
      need = 2
      if b == 224 then lo = 160 elseif b == 237 then hi = 159 end
    elseif b >= 240 and b <= 244 then
      need = 3
      if b == 240 then lo = 144 elseif b == 244 then hi = 143 end
    end
    local q, valid = p + 1, need > 0
    for _ = 1, need do
      local c = byte(s, q)
      if not c or c < lo or c > hi then valid = false; break end
      q, lo, hi = q + 1, 128, 191
    end
    if not valid then
      out[n + 1], out[n + 2] = sub(s, start, p - 1), "\239\191\189"
      n, start = n + 2, q
    end
    i = q
  end
  if n == 0 then return s end
  out[n + 1] = sub(s, start)
  return concat(out)
end

-- Lua 5.4's utf8.len refuses exactly what fix_utf8 replaces (overlong forms,
-- surrogates, code points past U+10FFFF); 5.3's accepts surrogates, so only 5.4's is
-- used as the fast test.
local utf8len = _VERSION == "Lua 5.4" and utf8 and utf8.len
local CTRL = {}
for i = 0, 31 do CTRL[i + 1] = char(i) end
CTRL[33], CTRL[34] = '"', "\\"

-- Whether a string holds a byte JSON must escape. The pattern matcher costs about 30 ns a
-- byte; for long strings, one memchr-speed plain search per such byte is far quicker.
local function needs_escape(s)
  if #s < 4096 then return find(s, '[%z\1-\31"\\]') ~= nil end
  for i = 1, 34 do
    if find(s, CTRL[i], 1, true) then return true end
  end
  return false
end

local function needs_fix(s)
  if utf8len and #s >= 4096 then return utf8len(s) == nil end
  return find(s, "[\128-\255]") ~= nil
end

local function enc_str(s)
  if needs_fix(s) then s = fix_utf8(s) end
  if needs_escape(s) then s = gsub(s, '[%z\1-\31"\\]', esc) end
  return '"' .. s .. '"'
end

local function enc_num(v)
  if v ~= v or v == huge or v == -huge then return enc_str(tostring(v)) end
  if mtype then
    if mtype(v) == "integer" then return tostring(v) end
  elseif v == floor(v) and v > -2^63 and v < 2^63 then
    if v == 0 and 1 / v < 0 then return "-0.0" end
    return format("%.0f", v)
  end
  local s = format("%.15g", v)
  if tonumber(s) ~= v then
    s = format("%.16g", v)
    if tonumber(s) ~= v then s = format("%.17g", v) end
  end
  if find(s, "e", 1, true) then return (gsub(s, "e%+?(%-?)0*(%d)", "e%1%2")) end
  if not find(s, ".", 1, true) then return s .. ".0" end
  return s
end

-- The JSON text is built in B[1..BN]; BS counts its bytes, which may not pass
-- LIMIT: the encoder stops with TOOBIG as soon as they would.
local B, BN, BS, PATH = {}, 0, 0, {}
local MAX_DEPTH = 64
local TOOBIG = {}
local enc

local function put(s)
  BS = BS + #s
  if BS > LIMIT then error(TOOBIG, 0) end
  BN = BN + 1; B[BN] = s
end

-- The JSON text of a table key as a value (for sorting and for $lua_pairs).
local function key_json(k)
  local tk = type(k)
  if tk == "string" then return enc_str(k) end
  if tk == "number" then return enc_num(k) end
  if tk == "boolean" then return k and "true" or "false" end
  return enc_str(opaque(k))
end

-- The JSON object key a table key becomes.
local function key_text(k)
  local tk = type(k)
  if tk == "string" then return k end
  if tk == "number" or tk == "boolean" then return tostring(k) end
  return opaque(k)
end

local function enc_table(t, depth)
  if depth >= MAX_DEPTH or PATH[t] then put(enc_str(opaque(t))); return end
  PATH[t] = true
  local n = rawlen(t)
  local count, arr = 0, n > 0
  for k in next, t do
    count = count + 1
    if arr and not (type(k) == "number" and k >= 1 and k <= n and k == floor(k)) then arr = false end
  end
  if arr and count == n then
    put("[")
    for i = 1, n do
      if i > 1 then put(",") end
      enc(rawget(t, i), depth + 1)
    end
    put("]")
  else
    -- Keys that collide as JSON object keys (1 and "1") make the table a
    -- sorted list of pairs, so that nothing is lost.
    local seen, clash = {}, false
    for k in next, t do
      local kt = key_text(k)
      if seen[kt] then clash = true; break end
      seen[kt] = true
    end
    if clash then
      local pairs_, m = {}, 0
      for k, v in next, t do m = m + 1; pairs_[m] = { key_json(k), v } end
      sort(pairs_, function(a, b) return a[1] < b[1] end)
      put('{"$lua_pairs":[')
      for i = 1, m do
        if i > 1 then put(",") end
        put("[" .. pairs_[i][1] .. ",")
        enc(pairs_[i][2], depth + 1)
        put("]")
      end
      put("]}")
    else
      put("{")
      local first = true
      for k, v in next, t do
        if first then first = false else put(",") end
        put(enc_str(key_text(k)) .. ":")
        enc(v, depth + 1)
      end
      put("}")
    end
  end
  PATH[t] = nil
end

enc = function(v, depth)
  local t = type(v)
  if t == "string" then put(enc_str(v))
  elseif t == "number" then put(enc_num(v))
  elseif t == "boolean" then put(v and "true" or "false")
  elseif t == "nil" then put("null")
  elseif t == "table" then enc_table(v, depth)
  else put(enc_str(opaque(v))) end
end

-- REPL text (cut to LIMIT) and JSON array of the values in
-- vals[1..n]; the JSON is nil when it does not fit in LIMIT bytes, with the
-- number of bytes it had reached.
local function encode_values(vals, n)
  local text, tn, size = {}, 0, 0
  for i = 1, n do
    if size > LIMIT then break end
    local s = repl_text(vals[i])
    if i > 1 then tn = tn + 1; text[tn] = "\t"; size = size + 1 end
    tn = tn + 1; text[tn] = s; size = size + #s
  end
  tn = tn + 1; text[tn] = "\n"
  local txt = bounded(concat(text))
  B, BN, BS, PATH = {}, 0, 0, {}
  local ok, e = pcall(function()
    put("[")
    for i = 1, n do
      if i > 1 then put(",") end
      enc(vals[i], 0)
    end
    put("]")
  end)
  local reached = BS
  local json = ok and concat(B) or nil
  B, PATH = {}, {}
  if not ok and e ~= TOOBIG then error(e, 0) end
  return txt, json, reached
end

---------------------------------------------------------------- JSON in
local function jerr(msg, i) error(format("%s at byte %d", msg, i), 0) end
local function skip(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function utf8_char(cp)
  if cp < 128 then return char(cp) end
  if cp < 2048 then return char(192 + floor(cp / 64), 128 + cp % 64) end
  if cp < 65536 then
    return char(224 + floor(cp / 4096), 128 + floor(cp / 64) % 64, 128 + cp % 64)
  end
  return char(240 + floor(cp / 262144), 128 + floor(cp / 4096) % 64,
              128 + floor(cp / 64) % 64, 128 + cp % 64)
end

local function hex4(s, i)
  local h = sub(s, i, i + 3)
  if not find(h, "^%x%x%x%x$") then jerr("invalid \\u escape", i) end
  return tonumber(h, 16)
end

local unesc = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f',
                n = '\n', r = '\r', t = '\t' }

local function dec_str(s, i) -- s[i] is the opening quote
  local parts, pn, j = nil, 0, i + 1
  while true do
    local p = find(s, '[%z\1-\31"\\]', j)
    if not p then jerr("unterminated string", i) end
    local c = byte(s, p)
    if c == 34 then
      if not parts then return sub(s, j, p - 1), p + 1 end
      parts[pn + 1] = sub(s, j, p - 1)
      return concat(parts), p + 1
    elseif c == 92 then
      parts = parts or {}
      pn = pn + 1; parts[pn] = sub(s, j, p - 1)
      local e = sub(s, p + 1, p + 1)
      if e == "u" then
        local cp = hex4(s, p + 2)
        j = p + 6
        if cp >= 55296 and cp <= 56319 and sub(s, j, j + 1) == "\\u" then
          local lo = hex4(s, j + 2)
          if lo >= 56320 and lo <= 57343 then
            cp, j = 65536 + (cp - 55296) * 1024 + (lo - 56320), j + 6
          end
        end
        if cp >= 55296 and cp <= 57343 then cp = 65533 end -- lone surrogate
        pn = pn + 1; parts[pn] = utf8_char(cp)
      else
        local r = unesc[e]
        if not r then jerr("invalid escape", p) end
        pn = pn + 1; parts[pn] = r
        j = p + 2
      end
    else
      jerr("control character in string", p)
    end
  end
end

local function dec_num(s, i)
  local _, e = find(s, "^-?%d+", i)
  if not e then jerr("unexpected character", i) end
  if find(s, "^-?0%d", i) then jerr("leading zero in number", i) end
  local _, e2 = find(s, "^%.%d+", e + 1)
  if e2 then e = e2 end
  _, e2 = find(s, "^[eE][-+]?%d+", e + 1)
  if e2 then e = e2 end
  return tonumber(sub(s, i, e)), e + 1
end

local MAX_JSON_DEPTH = 200
local dec

local function dec_arr(s, i, depth) -- s[i] is '['; returns table, next index, length
  if depth > MAX_JSON_DEPTH then jerr("nested too deeply", i) end
  local t, n = {}, 0
  i = skip(s, i + 1)
  if byte(s, i) == 93 then return t, i + 1, 0 end
  while true do
    local v
    v, i = dec(s, i, depth + 1)
    n = n + 1; t[n] = v
    i = skip(s, i)
    local c = byte(s, i)
    if c == 93 then return t, i + 1, n end
    if c ~= 44 then jerr("expected ',' or ']'", i) end
    i = i + 1
  end
end

local function dec_obj(s, i, depth)
  if depth > MAX_JSON_DEPTH then jerr("nested too deeply", i) end
  local t = {}
  i = skip(s, i + 1)
  if byte(s, i) == 125 then return t, i + 1 end
  while true do
    if byte(s, i) ~= 34 then jerr("expected a string key", i) end
    local k, v
    k, i = dec_str(s, i)
    i = skip(s, i)
    if byte(s, i) ~= 58 then jerr("expected ':'", i) end
    v, i = dec(s, i + 1, depth + 1)
    t[k] = v
    i = skip(s, i)
    local c = byte(s, i)
    if c == 125 then return t, i + 1 end
    if c ~= 44 then jerr("expected ',' or '}'", i) end
    i = skip(s, i + 1)
  end
end

dec = function(s, i, depth)
  i = skip(s, i)
  local c = byte(s, i)
  if c == 34 then return dec_str(s, i)
  elseif c == 123 then return dec_obj(s, i, depth)
  elseif c == 91 then
    local t, j = dec_arr(s, i, depth)
    return t, j
  elseif c == 116 then if sub(s, i, i + 3) == "true" then return true, i + 4 end
  elseif c == 102 then if sub(s, i, i + 4) == "false" then return false, i + 5 end
  elseif c == 110 then if sub(s, i, i + 3) == "null" then return nil, i + 4 end
  elseif c == 45 or (c and c >= 48 and c <= 57) then return dec_num(s, i)
  end
  jerr(c and "unexpected character" or "unexpected end of input", i)
end

local function decode_args(s)
  local i = skip(s, 1)
  if byte(s, i) ~= 91 then error("arguments must be a JSON array", 0) end
  local t, j, n = dec_arr(s, i, 0)
  j = skip(s, j)
  if j <= #s then jerr("trailing characters", j) end
  return t, n
end

---------------------------------------------------------------- running code
local cache, cache_n = {}, 0

local function compile(code, name)
  local bucket = cache[name]
  local f = bucket and bucket[code]
  if f then return f end
  local err
  if LUA51 then
    if byte(code, 1) == 27 then return nil, BINARY end
    f, err = loadstring(code, name)
  else
    f, err = load(code, name, "t")
  end
  if not f then return nil, err end
  if #code <= 65536 then
    if cache_n >= 64 then cache, cache_n, bucket = {}, 0, nil end
    if not bucket then bucket = {}; cache[name] = bucket end
    bucket[code] = f
    cache_n = cache_n + 1
  end
  return f
end

-- The standalone lua's message handler: message plus traceback.
local plain_error = false
local function handler(e)
  local te = type(e)
  if te ~= "string" and te ~= "number" then
    local mt = dgetmt(e)
    local ts = type(mt) == "table" and rawget(mt, "__tostring")
    if ts then
      local ok, s = pcall(ts, e)
      if ok and type(s) == "string" then plain_error = true; return s end
    end
    e = "(error object is a " .. te .. " value)"
  end
  return traceback(e, 2)
end

local TB = "\nstack traceback:\n"
local function agent_line(l) return find(l, "^%s*%(bioxen_agent%)") ~= nil end
local function tail_line(l)
  return agent_line(l) or find(l, "^%s*%[C%]:") or find(l, "^%s*%(%.%.%.tail calls%.%.%.%)")
      or find(l, "^%s*%(command line%)")
      or find(l, "^%s*%(tail call%)")
end

-- Cuts the agent's own frames out of a traceback.
local function clean(msg)
  local s, e = find(msg, TB, 1, true)
  if not s then return msg end
  while true do
    local s2, e2 = find(msg, TB, e + 1, true)
    if not s2 then break end
    s, e = s2, e2
  end
  local lines, n = {}, 0
  for l in gmatch(sub(msg, e + 1), "[^\n]+") do n = n + 1; lines[n] = l end
  while n > 0 and tail_line(lines[n]) do lines[n] = nil; n = n - 1 end
  local kept, k = {}, 0
  for i = 1, n do
    if not agent_line(lines[i]) then k = k + 1; kept[k] = lines[i] end
  end
  return sub(msg, 1, s - 1) .. TB .. concat(kept, "\n")
end

local cur_f, cur_args, cur_n

local function finish(ok, ...)
  cur_f, cur_args = nil, nil
  if not ok then
    local m = tostring((...))
    if not plain_error then m = clean(m) end
    return send_done("error", "[]", m)
  end
  local n = select("#", ...)
  if n == 0 then return send_done("ok", "[]", "") end
  local vals = { ... }
  local eok, text, json, reached = pcall(encode_values, vals, n)
  if not eok then
    return send_done("error", "[]", "cannot encode the returned values: " .. tostring(text))
  end
  if not json then
    send("out ", text)
    DROPPED = DROPPED + (reached > LIMIT and reached - LIMIT or 1)
    return send_done("toobig", "[]", "")
  end
  raw_flush(RAW_OUT)
  fwrite(OUT, "out ", TOKN, " ", #text, "\n", TOK, text, done_frame("ok", json, ""))
  fflush(OUT)
end

local function runner() return cur_f(unpack(cur_args, 1, cur_n)) end -- 5.1: tail call

local function run(f, args, n)
  plain_error = false
  if n == 0 then return finish(xpcall(f, handler)) end
  if LUA51 then
    cur_f, cur_args, cur_n = f, args, n
    return finish(xpcall(runner, handler))
  end
  return finish(xpcall(f, handler, unpack(args, 1, n)))
end

local NOARGS = {}
local function do_exec(code, args_json, name)
  if byte(name, 1) == 64 then -- a file: skip a BOM and a first line starting with '#'
    if sub(code, 1, 3) == "\239\187\191" then code = sub(code, 4) end
    if byte(code, 1) == 35 then code = gsub(code, "^[^\n]*", "", 1) end
  end
  local f, err = compile(code, name)
  if not f then return send_done("error", "[]", err) end
  local args, n = NOARGS, 0
  if args_json ~= "" then
    local ok, a, m = pcall(decode_args, args_json)
    if not ok then return send_done("error", "[]", "invalid JSON arguments: " .. tostring(a)) end
    args, n = a, m
  end
  return run(f, args, n)
end

local function incomplete(msg)
  return sub(msg, -5) == "<eof>" or sub(msg, -7) == "'<eof>'"
end

local function do_repl(chunk, first)
  if byte(chunk, 1) == 61 then chunk = "return " .. sub(chunk, 2) end -- "=expr"
  local f, err
  if first then f = compile("return " .. chunk .. ";", "=stdin") end
  if not f then
    f, err = compile(chunk, "=stdin")
    if not f then
      if incomplete(err) then return send_done("incomplete", "[]", "") end
      return send_done("error", "[]", err)
    end
  end
  return run(f, NOARGS, 0)
end

---------------------------------------------------------------- the standard streams
local real = {
  write = io.write, output = io.output, input = io.input, read = io.read, lines = io.lines,
  close = io.close, type = io.type, popen = io.popen, execute = os.execute,
  dofile = dofile, loadfile = loadfile,
}
local out_proxy, err_proxy, in_proxy = {}, {}, {}
local proxies = { [out_proxy] = "stdout", [err_proxy] = "stderr", [in_proxy] = "stdin" }
local cur_out, cur_in = out_proxy, nil

local function nostdin() error(NOSTDIN, 2) end
local function std_close() return nil, "cannot close standard file" end
local function no_seek() return nil, "Illegal seek", 29 end
local function not_readable() error("standard output is not readable", 2) end

-- The bytes of write(...) arguments, as file:write formats them.
local function wtext(...)
  local n = select("#", ...)
  if n == 1 then
    local s = ...
    if type(s) == "string" then return s end
  end
  local t = { ... }
  for i = 1, n do
    local v = t[i]
    local tv = type(v)
    if tv == "number" then
      t[i] = (mtype and mtype(v) == "integer") and tostring(v) or format("%.14g", v)
    elseif tv ~= "string" then
      error(format("bad argument #%d to 'write' (string expected, got %s)", i, tv), 3)
    end
  end
  return concat(t)
end

local function stream(proxy, kind)
  local function check(self)
    if self ~= proxy then error("bad argument #1 (FILE* expected)", 3) end
  end
  local m = {
    write = function(self, ...)
      check(self)
      local s = wtext(...)
      if s ~= "" then send(kind, s) end
      return self
    end,
    flush = function(self) check(self); return self end,
    setvbuf = function(self) check(self); return true end,
    close = std_close, seek = no_seek, read = not_readable, lines = not_readable,
  }
  setmetatable(proxy, { __index = m, __name = "FILE*",
    __tostring = function() return "file (" .. proxies[proxy] .. ")" end })
end
stream(out_proxy, "out ")
stream(err_proxy, "err ")
setmetatable(in_proxy, { __name = "FILE*",
  __index = { read = nostdin, lines = nostdin, write = nostdin, seek = nostdin,
              setvbuf = nostdin, flush = nostdin, close = std_close },
  __tostring = function() return "file (stdin)" end })

io.stdout, io.stderr, io.stdin = out_proxy, err_proxy, in_proxy

function print(...)
  local n = select("#", ...)
  local s
  if n == 1 then
    s = tostring((...)) .. "\n"
  else
    local t = { ... }
    for i = 1, n do t[i] = tostring(t[i]) end
    s = concat(t, "\t") .. "\n"
  end
  send("out ", s)
end

function io.write(...)
  if cur_out == out_proxy then
    local s = wtext(...)
    if s ~= "" then send("out ", s) end
    return out_proxy
  end
  if proxies[cur_out] then return cur_out:write(...) end
  return real.write(...)
end

function io.output(f)
  if f == nil then return cur_out end
  if proxies[f] then cur_out = f; return f end
  cur_out = real.output(f)
  return cur_out
end

function io.input(f)
  if f == nil then
    if cur_in == nil then error(NOSTDIN, 2) end
    return cur_in
  end
  if f == in_proxy then cur_in = nil; return f end
  if proxies[f] then error("bad argument #1 to 'input' (not readable)", 2) end
  cur_in = real.input(f)
  return cur_in
end

function io.read(...)
  if cur_in == nil then error(NOSTDIN, 2) end
  return real.read(...)
end

function io.lines(name, ...)
  if name == nil and cur_in == nil then error(NOSTDIN, 2) end
  return real.lines(name, ...)
end

function io.close(f)
  if f == nil then
    if proxies[cur_out] then return std_close() end
    return real.close()
  end
  if proxies[f] then return std_close() end
  return real.close(f)
end

function io.type(f)
  if proxies[f] then return "file" end
  return real.type(f)
end

function dofile(name)
  if name == nil then error(NOSTDIN, 2) end
  return real.dofile(name)
end

function loadfile(name, ...)
  if name == nil then return nil, NOSTDIN end
  return real.loadfile(name, ...)
end

debug.debug = nostdin

-- Child processes must not read the requests: their stdin is /dev/null (a
-- popen "w" child reads what the caller writes). Their stdout and stderr are
-- the interpreter's real ones, which the host captures apart from the frames.
-- os.execute is fenced by sync frames, so that the host places what the child
-- wrote between the output before it and the output after it.
if real.popen then
  function io.popen(prog, mode)
    if type(prog) ~= "string" or find(mode or "r", "w", 1, true) then
      return real.popen(prog, mode)
    end
    return real.popen("(" .. prog .. "\n) </dev/null", mode)
  end
end

local function sync()
  fwrite(OUT, "sync ", TOKN, "\n", TOK)
  fflush(OUT)
end

local function synced(...)
  sync()
  return ...
end

function os.execute(cmd, ...)
  if type(cmd) ~= "string" then return real.execute(cmd, ...) end
  raw_flush(RAW_OUT)
  sync()
  return synced(real.execute("(" .. cmd .. "\n) </dev/null"))
end

---------------------------------------------------------------- main loop
local function len(s, line)
  if #s > 15 then fatal("bad frame header: " .. line) end
  return tonumber(s)
end

local function field(n)
  if n == 0 then return "" end
  local s = fread(IN, n)
  if s == nil or #s < n then fatal("truncated frame") end
  return s
end

-- The token and the limit that open every exec and repl request.
local function begin(tok, limit)
  if not match(tok, "^%x+$") or #tok > 64 then fatal("bad request token") end
  local l = tonumber(limit)
  if not l or l < 1 then fatal("bad request limit") end
  TOK, TOKN, LIMIT, DROPPED = tok, tostring(#tok), l, 0
end

fwrite(OUT, "ready 1 ", #_VERSION, "\n2", _VERSION)
fflush(OUT)

while true do
  local line = fread(IN, "*l")
  if line == nil then exit(0) end
  local kind, rest = match(line, "^(%l+)(.*)$")
  local ok, err = true, nil
  if kind == "exec" then
    local t, a, b, c, l = match(rest, "^ (%d+) (%d+) (%d+) (%d+) (%d+)$")
    if not t then fatal("bad frame header: " .. line) end
    t, a, b, c, l = len(t, line), len(a, line), len(b, line), len(c, line), len(l, line)
    local tok, code, args, name = field(t), field(a), field(b), field(c)
    begin(tok, field(l))
    ok, err = pcall(do_exec, code, args, name)
  elseif kind == "repl" then
    local t, a, b, l = match(rest, "^ (%d+) (%d+) (%d+) (%d+)$")
    if not t then fatal("bad frame header: " .. line) end
    t, a, b, l = len(t, line), len(a, line), len(b, line), len(l, line)
    local tok, chunk, first = field(t), field(a), field(b)
    begin(tok, field(l))
    ok, err = pcall(do_repl, chunk, first == "1")
  elseif kind == "ping" then
    local t = match(rest, "^ (%d+)$")
    if not t then fatal("bad frame header: " .. line) end
    begin(field(len(t, line)), LIMIT)
    fwrite(OUT, "pong ", TOKN, "\n", TOK)
    fflush(OUT)
  elseif kind == "code" then
    local t = match(rest, "^ (%d+)$")
    if not t then fatal("bad frame header: " .. line) end
    begin(field(len(t, line)), LIMIT)
    local dumped, code = pcall(sdump, SELF)
    if not dumped then code = "" end
    fwrite(OUT, "code ", TOKN, " ", #code, "\n", TOK, code)
    fflush(OUT)
  elseif kind == "quit" and rest == "" then
    exit(0)
  else
    fatal("bad request: " .. line)
  end
  if not ok then send_done("error", "[]", "agent error: " .. tostring(err)) end
end
