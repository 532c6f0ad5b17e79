"""`companion generate` and `companion eval continuation`: file -> file generation through the live modes."""
