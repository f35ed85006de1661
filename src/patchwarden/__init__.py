"""patchwarden: exact vulnerability matching, risk ranking and safe patch deployment."""

__version__ = "0.1.0"
