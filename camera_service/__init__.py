"""camera-service: turns an edge box with USB cameras into a remotely controllable camera node."""

__version__ = "0.1.0"
API_VERSION = "1.1"
