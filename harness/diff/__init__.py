"""Diff: two answers in, differences out (Diffy's lift and diff). The public API of comparators.

    base.py         Lifted, CompareOptions, Incomparable, and the registry comparators join by name
    lift.py         a recorded answer lifted into a neutral tree (status, headers, parsed body)
    paths.py        the one difference-path grammar: building paths, globs, generalising indices
    values.py       numbers, times, value formatting, columns and shifts (domain comparators)
    tree.py         the generic tree walk (the `json` comparator's work; others use it for the rest)
    orders.py       what an order is made of (its intent fields, the dry-run echo status)

Nothing here judges: noise, verdicts and gates are the judge layer's. Nothing is imported by this
package itself, so the shadow proxy can read configuration without loading numpy or deepdiff.
"""
