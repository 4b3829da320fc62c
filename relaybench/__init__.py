"""relaybench."""
