"""Engine modes, one module each."""
