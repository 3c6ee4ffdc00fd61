"""intercom-sync: keeps Intercom contacts in step with a business platform."""

__version__ = "0.1.0"
