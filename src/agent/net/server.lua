-- Networked VM, server mode: accepts exactly one client, greets it, reads one line.
-- Run by the host as an agent `exec` whose single argument is a JSON object:
--   port            number to listen on (0: any free port; the printed line shows it)
--   bind            address to listen on (default "127.0.0.1"; "*" for all interfaces)
--   accept_timeout  seconds to wait for the client (default: no limit)
--   receive_timeout seconds to wait for the client's line (default: no limit)
-- Returns { received = <line>, client = <ip> }. A bind failure or accept timeout is an
-- error (also written to stderr).
local opts = ...
if type(opts) ~= "table" then error("server: expects one JSON object argument", 0) end
local socket = require("socket")

local port = opts.port
if type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0 then
  error("server: port must be an integer between 0 and 65535", 0)
end
local bind = opts.bind or "127.0.0.1"
if type(bind) ~= "string" or bind == "" then error("server: bind must be a non-empty string", 0) end

local function seconds(name)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "number" or v < 0) then
    error("server: " .. name .. " must be a non-negative number of seconds", 0)
  end
  return v
end
local accept_timeout, receive_timeout = seconds("accept_timeout"), seconds("receive_timeout")

local function fail(msg)
  io.stderr:write(msg, "\n")
  error(msg, 0)
end

local server, err = socket.bind(bind, port)
if not server then
  fail("Lua Server: Failed to bind to port " .. port .. ": " .. tostring(err))
end
local _, actual_port = server:getsockname()
print("Lua Server: Listening on port " .. tostring(actual_port) .. "...")

server:settimeout(accept_timeout)
local client
client, err = server:accept()
if not client then
  server:close()
  fail("Lua Server: No client connected: " .. tostring(err))
end
server:close()

local ip = client:getpeername()
print("Lua Server: Client connected from " .. tostring(ip))
client:settimeout(receive_timeout)
client:send("Hello from Lua Server! What's your message?\n")
local data, recv_err = client:receive("*l")
if data then
  print("Lua Server: Received from client: " .. data)
else
  io.stderr:write("Lua Server: Error receiving data or client disconnected: ", tostring(recv_err), "\n")
end
client:close()
print("Lua Server: Connection closed.")
return { received = data, client = ip }
