return { name = "bxt_mid.util" }
