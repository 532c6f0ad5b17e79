"""Companion: a live MIDI companion that answers a player in time with small trained models."""

__version__ = "0.1.0"
