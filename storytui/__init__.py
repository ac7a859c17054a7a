"""storytui: a terminal co-writing assistant backed by a story model you train yourself."""

__version__ = "0.1.0"
