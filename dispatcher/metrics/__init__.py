"""Prometheus metrics: counted cheaply on the hot path (``counts.py``), exported when
scraped (``export.py``), served on a port of each role's own (``serve.py``)."""

PATH = "/metrics"  # every role serves its metrics here
