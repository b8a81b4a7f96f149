package = "bxt-badc"
version = "1.0-1"
source = { url = "@SRC@/bxt-badc-1.0.tar.gz", dir = "bxt-badc-1.0" }
description = { summary = "A C module that does not compile", license = "MIT", homepage = "https://example.invalid/bxt-badc" }
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = { bxt_badc = { sources = { "bxt_badc.c" } } } }
