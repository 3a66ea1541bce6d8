-- One manifest per partition range instead of one per hourly commit.
CALL $catalog.system.rewrite_manifests(table => '$table')
