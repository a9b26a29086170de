"""The ``gouache`` command line and pack installation, on top of the engine (``gouache.engine``).

The engine stays free of terminal and pip concerns; this package owns argument parsing, progress
bars, exit codes and ``gouache packs install|remove``.
"""
