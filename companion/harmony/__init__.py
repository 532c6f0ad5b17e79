"""Live harmony: the harmonizer and chord-model workers, their model pools, voicings and chord plans."""
