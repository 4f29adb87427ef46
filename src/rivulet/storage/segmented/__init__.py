"""The durable, segmented partition log (see :mod:`rivulet.storage.segmented.log`)."""
