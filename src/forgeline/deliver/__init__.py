"""The deliver stage: sinks, retry schedule, dispatcher."""
