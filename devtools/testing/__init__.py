"""Helpers that start real services on free local ports for tests and benchmarks.

Nothing here ever touches a server it did not start itself.
"""
