"""Fault tests: Forgeline's promises checked against real processes under faults.

A harness starts a recording sink (``sink.py``), the hub as one API and two worker processes
(``forgeline serve --role …``) on PostgreSQL and NATS JetStream, and a load generator
(``load.py``); each scenario (``scenarios.py``) injects one fault — kill -9 of a worker or of
the API, a NATS or PostgreSQL restart, a worker paused past its lease, a sink refusing 10% of
first attempts — and the checker (``checker.py``, after Jepsen's queue checker) classifies the
history: lost, unexpected, duplicated, reordered per key. ``test_faults.py`` runs them under
pytest (markers ``slow`` and ``faults``); ``python -m tests.faults`` (``make faults``) prints
the table.
"""
