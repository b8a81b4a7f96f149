package = "bxt-cmod"
version = "1.0-1"
source = { url = "@SRC@/bxt-cmod-1.0.tar.gz", dir = "bxt-cmod-1.0" }
description = { summary = "A C module compiled at install", license = "MIT", homepage = "https://example.invalid/bxt-cmod" }
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = { bxt_cmod = { sources = { "bxt_cmod.c" } } } }
