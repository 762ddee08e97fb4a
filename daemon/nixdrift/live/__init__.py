"""Records of live state, one module per source, and their pure helpers.

`capture/` fills them and `compare/` reads them; neither imports the other, and nothing here
imports either (tests/unit/test_import_boundaries.py keeps it so).
"""
