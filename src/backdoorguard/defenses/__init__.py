"""Defenses, grouped by what they need and return: detection, audit,
training-time, post-training purification."""
