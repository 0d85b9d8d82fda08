"""What each field and mutation does: checks, orchestration, calls into graph/ and workers/."""
