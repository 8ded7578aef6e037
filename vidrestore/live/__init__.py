"""Live mode: webcams and network feeds restored as they play, with bounded latency."""

POLICIES = ("drop", "passthrough")  # what live mode does when restoration is behind (here: the parser needs no torch)
