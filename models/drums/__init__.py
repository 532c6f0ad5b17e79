"""The drum-bar GAN: Groove MIDI bars, the model, its training and its evaluation (issue 17)."""
