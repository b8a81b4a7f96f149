package = "bxt-base"
version = "1.0-1"
source = { url = "@SRC@/bxt-base-1.0-tampered.tar.gz", dir = "bxt-base-1.0-tampered" }
description = { summary = "Base test rock, first version", license = "MIT", homepage = "https://example.invalid/bxt-base" }
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = { bxt_base = "bxt_base.lua" } }
