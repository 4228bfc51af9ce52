"""brum: serve compressed transformer classifiers and compare them on live traffic."""

__version__ = "0.1.0"
