"""The distributed mode: gateways and workers sharing one PostgreSQL database.

``notifier run`` (the embedded default, ``--role all``) runs workflows in the process that holds
the gateway. With ``storage.backend: postgres``, the work can be split:

- ``notifier run --role gateway`` (one or more, each with its `discord.shard_ids`) answers
  commands within 3 s, stores each workflow with its interaction token and queues its job in one
  transaction (`gateway.GatewayRunner`), and serves ``/retrieve_results``, ``/results`` and
  ``/workflow status`` from the database;
- ``notifier worker`` (any number, on any machine) takes the jobs (`queue`: procrastinate) and
  runs each workflow to a delivered result (`worker.Worker`, `Runner.run_job`): follow-ups on
  the interaction while its token lives, then the channel and DM rungs, notices through the
  shared outbox.

A worker that dies is found by its heartbeat and its workflow resumes on another worker from the
last recorded step; a gateway that dies loses nothing (workers deliver without it); PostgreSQL
restarting is waited out (results are held in memory and written when it is back). Everything
here needs the ``postgres`` extra (psycopg, procrastinate) and is imported only by the roles that
use it.
"""
