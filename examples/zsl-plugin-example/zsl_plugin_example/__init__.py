"""A zsl-repro method plugin: ALE. Kept free of imports, as zsl-repro reads the plugin's files
(schema, default configs) before it imports any method."""
