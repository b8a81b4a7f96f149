-- Networked VM, P2P mode: listens, connects to one peer, exchanges heartbeats.
-- Run by the host as an agent `exec` whose single argument is a JSON object:
--   local_port     port to listen on (0: any free port; the printed line shows it)
--   bind           address to listen on (default "127.0.0.1"; "*" for all interfaces)
--   peer_host, peer_port  the peer to connect to (optional; retried until it accepts,
--                  for at most run_duration)
--   run_duration   wall-clock seconds to run (default 30)
--   send_interval  seconds between heartbeats (default 5)
-- Every line received is printed; a heartbeat goes to every open connection (accepted
-- and outgoing). Idle periods are normal. Returns { sent = <lines sent>,
-- received = <lines received> }. A bind failure is an error (also written to stderr).
local opts = ...
if type(opts) ~= "table" then error("p2p: expects one JSON object argument", 0) end
local socket = require("socket")
local gettime, select_, sleep = socket.gettime, socket.select, socket.sleep

local function number(name, default, lo, hi, integer)
  local v = opts[name]
  if v == nil then v = default end
  if type(v) ~= "number" or v < lo or v > hi or (integer and v % 1 ~= 0) then
    error("p2p: " .. name .. " must be " .. (integer and "an integer" or "a number")
      .. " between " .. lo .. " and " .. hi, 0)
  end
  return v
end
local local_port = number("local_port", nil, 0, 65535, true)
local run_duration = number("run_duration", 30, 0, 1e9)
local send_interval = number("send_interval", 5, 0.001, 1e9)
local bind = opts.bind or "127.0.0.1"
if type(bind) ~= "string" or bind == "" then error("p2p: bind must be a non-empty string", 0) end
local peer_host, peer_port = opts.peer_host, opts.peer_port
if peer_host ~= nil or peer_port ~= nil then
  if type(peer_host) ~= "string" or not peer_host:find("%S") then error("p2p: peer_host cannot be empty", 0) end
  peer_port = number("peer_port", nil, 1, 65535, true)
end

local server, err = socket.bind(bind, local_port)
if not server then
  local msg = "P2P VM: Failed to bind to local port " .. local_port .. ": " .. tostring(err)
  io.stderr:write(msg, "\n")
  error(msg, 0)
end
server:settimeout(0)
local _, port = server:getsockname()
port = tostring(port)
print("P2P VM: Listening on local port " .. port .. "...")

local socks = { server } -- what select watches: the listener, then every connection
local peer_ip = {}       -- connection -> address printed for it
local pending = {}       -- connection -> partial line received so far
local sent, received = 0, 0
local start = gettime()
local deadline = start + run_duration

local function add(conn, ip)
  conn:settimeout(0)
  socks[#socks + 1] = conn
  peer_ip[conn] = tostring(ip)
end

local function drop(conn)
  conn:close()
  for i = 2, #socks do
    if socks[i] == conn then table.remove(socks, i); break end
  end
  peer_ip[conn], pending[conn] = nil, nil
end

local function send_line(conn, line)
  conn:settimeout(1)
  local ok, e = conn:send(line .. "\n")
  conn:settimeout(0)
  if ok then
    sent = sent + 1
  else
    io.stderr:write("P2P VM: Error sending to ", peer_ip[conn], ": ", tostring(e), "\n")
  end
end

local want_peer, next_try, peer_err = peer_host ~= nil, start, nil
local function try_peer(now)
  local conn = socket.tcp()
  conn:settimeout(math.max(0.05, math.min(0.5, deadline - now)))
  local ok, e = conn:connect(peer_host, peer_port)
  if not ok then
    conn:close()
    peer_err, next_try = e, gettime() + 0.2
    return
  end
  want_peer = false
  add(conn, (conn:getpeername()))
  print("P2P VM: Connected to peer at " .. peer_host .. ":" .. peer_port)
  send_line(conn, "Hello from P2P VM on port " .. port .. "!")
end

local function accept_all()
  while true do
    local conn = server:accept()
    if not conn then return end
    local ip, their_port = conn:getpeername()
    add(conn, ip)
    print("P2P VM: Accepted connection from " .. tostring(ip) .. ":" .. tostring(their_port))
    send_line(conn, "Welcome to P2P VM on port " .. port .. "!")
  end
end

-- Reads every complete line available (LuaSocket may hold several in its buffer).
local function read_from(conn)
  while peer_ip[conn] do
    local data, e, partial = conn:receive("*l", pending[conn])
    if data then
      pending[conn] = nil
      received = received + 1
      print("P2P VM: Received from " .. peer_ip[conn] .. ": " .. data)
    elseif e == "timeout" then
      pending[conn] = partial ~= "" and partial or nil
      return
    else
      print("P2P VM: Connection from " .. peer_ip[conn] .. " closed or error: " .. tostring(e))
      drop(conn)
    end
  end
end

local next_beat = start + send_interval
while true do
  local now = gettime()
  if now >= deadline then break end
  if want_peer and now >= next_try then
    try_peer(now)
    now = gettime()
  end
  local wait = math.min(0.1, deadline - now, math.max(0, next_beat - now))
  if wait < 0 then wait = 0 end
  local readable, _, serr = select_(socks, nil, wait)
  if serr and serr ~= "timeout" then
    io.stderr:write("P2P VM: socket.select error: ", tostring(serr), "\n")
    sleep(wait)
  end
  for _, s in ipairs(readable) do
    if s == server then accept_all() elseif peer_ip[s] then read_from(s) end
  end
  now = gettime()
  if now >= next_beat and now < deadline then
    local beat = "P2P VM " .. port .. ": Heartbeat at " .. string.format("%.2f", now - start)
    for i = 2, #socks do send_line(socks[i], beat) end
    next_beat = next_beat + send_interval
    if next_beat <= now then next_beat = now + send_interval end
  end
end

if want_peer then
  io.stderr:write("P2P VM: Failed to connect to peer ", peer_host, ":", tostring(peer_port), ": ",
    tostring(peer_err), "\n")
end
print("P2P VM: Shutting down after " .. tostring(run_duration) .. " seconds.")
for i = #socks, 2, -1 do socks[i]:close() end
server:close()
return { sent = sent, received = received }
