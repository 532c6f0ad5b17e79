"""The real-time process: runtime threads, scheduler, live clock and ports, UI pictures, the session socket."""
