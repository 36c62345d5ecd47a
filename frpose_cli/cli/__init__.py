"""The ``frpose`` command line: one module per verb, each thin over the core."""
