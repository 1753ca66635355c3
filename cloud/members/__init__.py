"""Golden member records at HQ: imports, identity resolution, merges, erasure — issue 9."""
