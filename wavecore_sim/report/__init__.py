"""Report stage: summaries, tables, timelines, Perfetto traces and figures."""
