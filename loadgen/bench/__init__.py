"""The peers table: our dispatcher against Taskiq, Celery and arq, one method, one run.

``python -m loadgen.bench`` runs every system against the same pinned redis-server (Redis
on one CPU, every other process on another), in the same run:

1. the knee search (``loadgen.sweep.find_knee``) of every peer, ``--repeats`` times;
2. the best peer: the peer with the highest median knee;
3. per repeat, ours (a fresh ``dispatcher dev`` and one simulated agent process, one
   session for all its steps): its knee search, then fixed-rate steps at 500/s, at the
   best peer's knee and at 2000/s; and the same fixed-rate steps for every peer.

Every system gets one worker process with capacity 100 whose job only records its start;
a step is open-loop at its offered rate and counts dispatch time from the client's send
to the job's first statement. ``redis-benchmark`` (``XADD``) on the same server gives the
physical limit the Redis CPU per dispatch is compared with. The result is one table
(medians over repeats, with min-max), a JSON file with every step, and a sweep plot.
"""
