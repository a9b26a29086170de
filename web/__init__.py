"""The web server and browser editor: REST + websocket API, run queue and history, static editor.

It learns node types only from the engine's registry; it never imports ``gouache.nodes``.
"""
