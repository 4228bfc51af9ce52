"""The A/B report: metrics (reading), histogram, analysis, render, knee; the CLI in __main__."""
