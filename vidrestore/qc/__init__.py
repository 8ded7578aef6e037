"""`vidrestore qc`: proof of what a restoration changed (frames, streams, background) and of how stable
its faces are over time (warping error, landmark jitter, identity drift), with a report and pictures."""
