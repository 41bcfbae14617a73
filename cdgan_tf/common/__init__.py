"""Small helpers shared by every package: argument checks and atomic file writes."""
