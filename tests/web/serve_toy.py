"""Serve the toy engine in this process (``python serve_toy.py HOME PORT``): for crash tests."""

import sys

from aiohttp import web

from web_support import toy_engine
from gouache.web.server import create_app

if __name__ == "__main__":
    web.run_app(create_app(toy_engine(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), print=None)
