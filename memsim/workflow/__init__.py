"""The library calls behind the CLI: resolve a MODEL argument, trace it (with an on-disk cache) and
simulate it (``memsim.profile``)."""
