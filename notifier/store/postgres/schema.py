"""The store's tables in PostgreSQL: the ``store`` migration set (`notifier.schema_migrations` applies it).

Tables
------
``workflows``: one row per workflow, the same columns as the SQLite index's (`sqlite.schema`)
but two: ``path`` (there is no file; a result is a row of ``results``) and ``purge_started_at``
(a purge here is one transaction, so there is no half-done purge to mark). Types chosen so a row
reads back exactly as it was written:

- times are ``double precision`` Unix seconds, as the records carry them: ``timestamptz`` keeps
  microseconds, and a time that does not read back equal would make an idempotent finish look
  like a different one;
- Discord ids are ``bigint`` (snowflakes fit in 63 bits until 2084);
- ``options`` is ``jsonb`` (read back as the dict it was; key order is not kept, and dicts do not
  compare it); ``url`` and ``depth`` are copied out of it for the indexes;
- ``workflow_id`` is ``text COLLATE "C"``: byte order, so its unique index also serves
  autocomplete's ``LIKE 'ab12%'`` prefix search;
- ``id``, an identity column, orders rows that share a ``created_at`` newest-inserted first, as
  SQLite's rowid does.

``results``: one row per finished workflow holding its document: ``bytea`` of exactly the bytes
`document.encode_for_storage` produces, the bytes a result file holds, so every view renders the
same document whichever backend stored it. (Not ``jsonb``: jsonb re-orders keys, drops duplicate
ones, rewrites numbers (``1e300`` as 301 digits), and refuses ``\\u0000`` and lone surrogates,
which a result may hold; nor was it faster: `store` has the figures.) A foreign key to
``workflows`` with ``ON DELETE CASCADE``: retention deletes the row and its result goes with it.

``workflow_steps``: a workflow's recorded steps, ``(workflow_id, step_index)`` the primary key,
the value ``bytea`` of the JSON `steps.encode_step` produces (configured secrets masked). Cascades
with its workflow, like the result.

``store_notes``: what the store keeps about itself (retention's last sweep: `clock_check`).

Indexes are the SQLite index's, for the same queries (`index`): a user's results newest first,
everyone's by time, by status, by command, retention (finished rows), undelivered results,
duration history and running rows (partial), plus a ``pg_trgm`` GIN index on ``url`` that serves
``ILIKE '%needle%'`` for URL substring search (the trigram extension must be creatable by the
role that migrates: it is a trusted extension since PostgreSQL 13, so a database owner can).

Later versions are new `Migration` entries appended to `STORE_SCHEMA`; never edit a step that
has shipped. The outbox and the users' settings are sets of their own (`notifier.schema_migrations` says how).
"""

from __future__ import annotations

from typing import Final

from ...schema_migrations import Migration, MigrationSet, register

__all__ = ["STORE_SCHEMA"]

_V1: Final = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE workflows (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id    text COLLATE "C" NOT NULL UNIQUE CHECK (workflow_id ~ '^[0-9a-f]{32}$'),
    command        text             NOT NULL,
    user_id        bigint           NOT NULL,
    user_name      text             NOT NULL DEFAULT '',
    guild_id       bigint,
    channel_id     bigint,
    ephemeral      boolean          NOT NULL DEFAULT false,
    options        jsonb            NOT NULL DEFAULT '{}',
    url            text             NOT NULL DEFAULT '',
    depth          text             NOT NULL DEFAULT '',
    status         text             NOT NULL CHECK (status IN
                       ('running', 'completed', 'failed', 'interrupted', 'cancelled', 'lost')),
    stage          text             NOT NULL DEFAULT '',
    progress       double precision NOT NULL DEFAULT 0,
    created_at     double precision NOT NULL,
    finished_at    double precision,
    size_bytes     integer,
    delivery_state text             NOT NULL DEFAULT 'pending'
                       CHECK (delivery_state IN ('pending', 'delivered', 'undeliverable')),
    delivered_via  text,
    delivered_at   double precision,
    error          text             NOT NULL DEFAULT '',
    resumes        integer          NOT NULL DEFAULT 0
);
CREATE INDEX workflows_user_created ON workflows (user_id, created_at DESC, id DESC);
CREATE INDEX workflows_created ON workflows (created_at DESC, id DESC);
CREATE INDEX workflows_status_created ON workflows (status, created_at DESC, id DESC);
CREATE INDEX workflows_command_created ON workflows (command, created_at DESC, id DESC);
CREATE INDEX workflows_finished ON workflows (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX workflows_undelivered ON workflows (finished_at, id)
    WHERE delivery_state = 'pending' AND finished_at IS NOT NULL;
CREATE INDEX workflows_durations ON workflows (command, depth, finished_at DESC)
    WHERE status = 'completed';
CREATE INDEX workflows_running ON workflows (created_at, id) WHERE status = 'running';
CREATE INDEX workflows_url_trigrams ON workflows USING gin (url gin_trgm_ops);

CREATE TABLE results (
    workflow_id text COLLATE "C" PRIMARY KEY
                REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    document    bytea            NOT NULL,
    stored_at   double precision NOT NULL
);

CREATE TABLE workflow_steps (
    workflow_id text COLLATE "C" NOT NULL
                REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    step_index  integer          NOT NULL CHECK (step_index >= 0),
    name        text             NOT NULL,
    value       bytea            NOT NULL,
    recorded_at double precision NOT NULL,
    PRIMARY KEY (workflow_id, step_index)
);

CREATE TABLE store_notes (
    key   text PRIMARY KEY,
    value text NOT NULL
);
"""

STORE_SCHEMA: Final = register(
    MigrationSet(
        "store",
        (
            Migration(
                1,
                "workflows, results, workflow_steps and store_notes; pg_trgm for URL search",
                _V1,
            ),
            Migration(
                2,
                "workflows.cancel_requested: a gateway asks the worker running a workflow to stop",
                "ALTER TABLE workflows ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;",
            ),
            Migration(
                3,
                "workflows.runner_job: the queue job running a workflow (one runner at a time)",
                "ALTER TABLE workflows ADD COLUMN runner_job bigint;",
            ),
            Migration(
                4,
                "workflows.runner_until: the lease of the worker running a workflow",
                "ALTER TABLE workflows ADD COLUMN runner_until double precision;",
            ),
        ),
    )
)
