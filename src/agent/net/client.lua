-- Networked VM, client mode: connects, reads the server's greeting, sends one line.
-- Run by the host as an agent `exec` whose single argument is a JSON object:
--   host             server host name or address
--   port             server port
--   message          line to send (default "Hello from Lua Client!")
--   connect_timeout  seconds for connecting and for each read/write (default: no limit)
-- Returns { greeting = <line read>, sent = <message> }. A failed connection is an
-- error (also written to stderr).
local opts = ...
if type(opts) ~= "table" then error("client: expects one JSON object argument", 0) end
local socket = require("socket")

local host, port = opts.host, opts.port
if type(host) ~= "string" or not host:find("%S") then error("client: host cannot be empty", 0) end
if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then
  error("client: port must be an integer between 1 and 65535", 0)
end
local message = opts.message
if message == nil then message = "Hello from Lua Client!" end
if type(message) ~= "string" then error("client: message must be a string", 0) end
local timeout = opts.connect_timeout
if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
  error("client: connect_timeout must be a non-negative number of seconds", 0)
end
local where = host .. ":" .. tostring(port)

local client = socket.tcp()
client:settimeout(timeout)
local ok, err = client:connect(host, port)
if not ok then
  client:close()
  local msg = "Lua Client: Failed to connect to " .. where .. ": " .. tostring(err)
  io.stderr:write(msg, "\n")
  error(msg, 0)
end
print("Lua Client: Connected to server at " .. where)

local greeting, recv_err = client:receive("*l")
if greeting then
  print("Lua Client: Received from server: " .. greeting)
else
  io.stderr:write("Lua Client: Error receiving initial message from server: ", tostring(recv_err), "\n")
end
local sent, send_err = client:send(message .. "\n")
if not sent then
  io.stderr:write("Lua Client: Error sending message to server: ", tostring(send_err), "\n")
end
print("Lua Client: Sent message: '" .. message .. "'")
client:close()
print("Lua Client: Connection closed.")
return { greeting = greeting, sent = message }
