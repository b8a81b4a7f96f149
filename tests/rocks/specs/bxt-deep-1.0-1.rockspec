package = "bxt-deep"
version = "1.0-1"
source = { url = "@SRC@/bxt-deep-1.0.tar.gz", dir = "bxt-deep-1.0" }
description = { summary = "Two levels of dependencies", license = "MIT", homepage = "https://example.invalid/bxt-deep" }
dependencies = { "lua >= 5.1", "bxt-mid" }
build = { type = "builtin", modules = { bxt_deep = "bxt_deep.lua" } }
