package = "bio_compute"
version = "1.0-1"
source = { url = "@SRC@/bio_compute-1.0.tar.gz", dir = "bio_compute-1.0" }
description = { summary = "Biological computations for the specification examples", license = "MIT", homepage = "https://example.invalid/bio_compute" }
dependencies = { "lua >= 5.1", "bxt-base >= 1.0" }
build = { type = "builtin", modules = { bio_compute = "bio_compute.lua" } }
