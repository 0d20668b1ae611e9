"""The HTTP edge: app wiring, state, search handlers, the events endpoint, the in-process API."""
