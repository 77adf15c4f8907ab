"""The decoder-only Transformer shared by AudioLM's three stages, and its training adapter."""
