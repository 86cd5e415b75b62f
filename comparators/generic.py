"""The generic comparator (`json`): status, headers and the body's tree, for any answer.

The tree walk itself is the diff layer's (`harness.diff.tree`), which the domain comparators
also use for what they do not know; this plugin only registers it under its name."""

from __future__ import annotations

from harness.diff.base import register
from harness.diff.tree import compare_json

register("json", identical_is_match=True)(compare_json)
