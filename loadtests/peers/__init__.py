"""Peer benchmark: brum against the servers a user would run instead, on the same ONNX variant.

Imports nothing: the peers' own modules here run in the peers' own virtual environments.
"""
