package = "bxt-missing-file"
version = "1.0-1"
source = { url = "@SRC@/bxt-missing-file-1.0.tar.gz", dir = "bxt-missing-file-1.0" }
description = { summary = "Its rockspec names a file its source lacks", license = "MIT", homepage = "https://example.invalid/bxt-missing-file" }
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = { bxt_missing = "bxt_missing.lua" } }
