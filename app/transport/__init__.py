"""Transport layer: FastAPI routes. The only layer that imports FastAPI."""
