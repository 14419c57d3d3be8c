"""The transaction graph (networkx) and the measures detectors take over it."""
