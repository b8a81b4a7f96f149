package = "bxt-tool"
version = "1.0-1"
source = { url = "@SRC@/bxt-tool-1.0.tar.gz", dir = "bxt-tool-1.0" }
description = { summary = "A rock with a command", license = "MIT", homepage = "https://example.invalid/bxt-tool" }
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = { bxt_tool = "bxt_tool.lua" }, install = { bin = { ["bxt-tool"] = "bin/bxt-tool" } } }
