"""Core layer: variant cards, the variant registry, prediction and metrics."""
