"""Recorded takes: the recorder, crash-safe journals, the runtime's keeper, and replaying a take's answers."""
