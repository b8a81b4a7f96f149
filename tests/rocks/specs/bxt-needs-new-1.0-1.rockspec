package = "bxt-needs-new"
version = "1.0-1"
source = { url = "@SRC@/bxt-needs-new-1.0.tar.gz", dir = "bxt-needs-new-1.0" }
description = { summary = "Needs a bxt-base that no server has", license = "MIT", homepage = "https://example.invalid/bxt-needs-new" }
dependencies = { "lua >= 5.1", "bxt-base >= 3.0" }
build = { type = "builtin", modules = { bxt_needs_new = "bxt_needs_new.lua" } }
