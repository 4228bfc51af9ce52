"""Offline pipeline: turns a Hugging Face checkpoint into variants of a brum model repository."""
