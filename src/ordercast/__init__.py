"""ordercast: a self-hostable order events hub for restaurant technology."""

__version__ = "0.1.0"
