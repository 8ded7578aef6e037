"""Live mode: webcams and network feeds restored as they play, with bounded latency."""
