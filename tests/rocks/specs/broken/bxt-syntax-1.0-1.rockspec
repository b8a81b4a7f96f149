-- A rockspec that is not valid Lua: luarocks cannot load it.
package = "bxt-syntax"
version = "1.0-1"
source = { url = "@SRC@/bxt-base-1.0.tar.gz", dir = "bxt-base-1.0"
build = { type = "builtin", modules = { bxt_syntax = "bxt_base.lua" } }
