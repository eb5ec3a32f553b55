"""Tracengent: observe and govern LLM agents.

The 0.2 client is being rebuilt on the generated low-level API (`tracengent_api`).
"""

__version__ = "0.2.0"
