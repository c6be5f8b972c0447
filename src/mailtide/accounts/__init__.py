"""Account lifecycle: OAuth consent, adding, re-authorising and removing accounts."""
