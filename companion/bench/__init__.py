"""`companion bench`: the sections that measure timing and model speed, their load and verdicts."""
