"""Benchmarks that run a peer and us side by side in one process."""
