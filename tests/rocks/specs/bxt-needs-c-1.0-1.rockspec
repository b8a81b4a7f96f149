package = "bxt-needs-c"
version = "1.0-1"
source = { url = "@SRC@/bxt-needs-c-1.0.tar.gz", dir = "bxt-needs-c-1.0" }
description = { summary = "Pure-Lua module over a C module", license = "MIT", homepage = "https://example.invalid/bxt-needs-c" }
dependencies = { "lua >= 5.1", "bxt-cmod" }
build = { type = "builtin", modules = { bxt_needs_c = "bxt_needs_c.lua" } }
