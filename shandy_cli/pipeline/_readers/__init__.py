"""Private helpers of ``shandy_cli.pipeline.sources``: one module per file family.

Import from ``shandy_cli.pipeline.sources``, never from here: these names may move.
"""
