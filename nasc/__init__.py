"""nasc: search, compile and ship networks for edge devices."""

__version__ = "0.1.0"
