"""The import pipeline, one module per stage, in the order data flows through it:

sources -> mapping -> validation -> chunking -> submission -> polling -> reporting

``run.py`` wires the stages together; ``shandy_cli.import_files`` is its public face.
"""
