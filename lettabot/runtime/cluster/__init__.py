"""Several lettabot replicas on one PostgreSQL store (``[cluster]``).

- :mod:`~lettabot.runtime.cluster.inbox`: every accepted message is a durable
  procrastinate job, locked by its scope, so a scope's messages run one at a time and in
  order on whichever replica is free; a job whose replica stopped sending heartbeats is
  taken over by another (its thread is told).
- :mod:`~lettabot.runtime.cluster.bus`: LISTEN/NOTIFY between replicas, for what must reach
  the replica running a turn (an approval click, a Stop) whichever replica got it.
"""
