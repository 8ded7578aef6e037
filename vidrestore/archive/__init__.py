"""Archive mode: hours of footage in frame-exact chunks, resumable after any crash, on many workers.

plan (keyframe index, chunks at scene cuts) -> chunk (restore one chunk) on workers (local processes,
or Ray) -> join (the chunks' packets with the source's other streams) -> job (resume, retries, report).
"""
