"""AutoMoT command-line front end (the library lives in `model`, `runtime`, `agent` and `world`)."""

__version__ = "0.1.0"
