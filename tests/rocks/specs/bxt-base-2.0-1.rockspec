package = "bxt-base"
version = "2.0-1"
source = { url = "@SRC@/bxt-base-2.0.tar.gz", dir = "bxt-base-2.0" }
description = { summary = "Base test rock, second version", license = "MIT", homepage = "https://example.invalid/bxt-base" }
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = { bxt_base = "bxt_base.lua" } }
