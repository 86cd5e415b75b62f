"""Compare stage: judge exchanges (diff with comparators, count noise, give verdicts)."""
