"""Route stage: decide which subscriptions receive each event."""
