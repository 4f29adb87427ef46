"""Rivulet: event-driven Python services on the Kafka protocol.

The embedded broker lives in :mod:`rivulet.broker`; the service framework's public
names are re-exported here as they land.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
