"""Training data: music21's corpus and user MIDI folders -> cached pieces -> augmented token windows."""
