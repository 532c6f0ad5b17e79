"""The files Companion reads and writes: bounded reads, atomic writes, standard MIDI files."""
