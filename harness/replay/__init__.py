"""Replay recorded exchanges against live environments (the nightly shadow replay)."""
