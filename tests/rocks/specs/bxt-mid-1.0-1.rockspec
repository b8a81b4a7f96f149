package = "bxt-mid"
version = "1.0-1"
source = { url = "@SRC@/bxt-mid-1.0.tar.gz", dir = "bxt-mid-1.0" }
description = { summary = "Middle test rock that needs bxt-base 1.x", license = "MIT", homepage = "https://example.invalid/bxt-mid" }
dependencies = { "lua >= 5.1", "bxt-base >= 1.0, < 2.0" }
build = { type = "builtin", modules = { bxt_mid = "bxt_mid/init.lua", ["bxt_mid.util"] = "bxt_mid/util.lua" } }
