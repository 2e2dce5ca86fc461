"""detective: says what an image shows and whether it is a real photo or AI-generated."""

__version__ = "0.1.0"
