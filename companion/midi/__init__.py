"""Adapters at the edge: MIDI ports and clocks."""
