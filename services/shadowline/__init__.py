"""shadowline: master/shadow high availability for configuration."""

__version__ = "0.1.0"
