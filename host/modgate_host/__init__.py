"""modgate host companion: configures, drives and checks a modgate device from a laptop."""

__version__ = "0.1.0"
