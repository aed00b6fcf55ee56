"""Encoders: a decoded `Weld` → four token sequences with positions. `demo`: the built-in light ones."""
