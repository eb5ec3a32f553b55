"""Grammars both the SDK and the local platform read: permission patterns, field paths, and
wire keys' spelling.

Leaf modules with no dependency inside or outside tracengent, so the platform shares the SDK's
exact reading of a pattern or a path without importing the SDK's private modules.
"""
