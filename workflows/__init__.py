"""Workflows that ship with gouache (package data; every one validates and runs in the tests)."""
