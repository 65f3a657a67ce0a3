"""One-off admin processes (factor XII), run from the same build and config as the rest."""
