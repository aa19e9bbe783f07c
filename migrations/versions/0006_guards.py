"""Guards: the projection (items, head) is written only by functions that derive it from the log,
and a quarantine or a fence only moves the store into the next term.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Why functions: the least-privilege role used to hold INSERT/UPDATE on `items` and UPDATE on
# `store_head`, so its credentials could change what is served (or move the head) without any
# event, and INSERT on `events` could put a row past the head that no append would ever cover.
# Now the role may only EXECUTE these SECURITY DEFINER functions; each one writes the served rows
# from the events it inserts (or, for a bootstrap, into an empty store only), so whatever the
# role does, what is served is what the log says, and /audit/verify can recompute it.
#
# The term rule, shared by append, fence and quarantine. The database never sees the cluster key,
# so it cannot tell a genuine new term (a signed promote command, an authenticated fork answer)
# from a forged one: whatever a genuine recovery may do, a holder of the role's password may do
# too. What the rule guarantees is the part the database can check: `store_head.epoch` (the
# epoch of the head's event) and `fence_epoch` together name the store's newest term N =
# greatest(epoch, fence_epoch, 1), which no event in the log exceeds; a new term may only be
# N + 1, because every promotion is "newest epoch in the cluster + 1" and an instance learns of a
# newer epoch only from the first promotion after its own (GET /ha/peer/fork answers that one).
# So epochs cannot be exhausted (2147483647 in one call bricked every later promotion), and an
# append cannot go back to an older term or skip one.
_TERM = "greatest(head.epoch, head.fence_epoch, 1)"

# The hot path: one call, one statement from the client, one round trip per batch. Inside, the
# head's compare-and-set is still one UPDATE whose row lock serializes writers, so position order
# is commit order; a head that moved, or a fenced epoch, answers false as before (the writer
# re-reads the store). Malformed batches (positions not expected+1.., an epoch outside the term
# rule) raise check_violation, which the adapter reports as a refused append.
APPEND = """
CREATE FUNCTION shadowline_append(
  expected bigint, e_position bigint[], e_id uuid[], e_epoch integer[], e_type text[],
  e_kind text[], e_name text[], e_version integer[], e_data jsonb[], e_metadata jsonb[],
  e_recorded_at timestamptz[], e_chain bytea[], e_signature bytea[]
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  n integer := cardinality(e_position);
  head store_head%ROWTYPE;
  low integer;
  high integer;
  gap_free boolean;
  moved integer;
BEGIN
  IF n = 0 OR (n = ALL (ARRAY[cardinality(e_id), cardinality(e_epoch), cardinality(e_type),
      cardinality(e_kind), cardinality(e_name), cardinality(e_version), cardinality(e_data),
      cardinality(e_metadata), cardinality(e_recorded_at), cardinality(e_chain),
      cardinality(e_signature)])) IS NOT TRUE THEN
    RAISE EXCEPTION 'shadowline: an append needs one value of each field per event'
      USING ERRCODE = 'check_violation';
  END IF;
  -- One statement, as before 0006 (each statement of a function costs an executor run): the
  -- batch's checks, the head's compare-and-set (which holds the term rule against the head row
  -- it locks), then the events and the items rows derived from them, only if the head moved.
  WITH batch AS (
    SELECT min(t.epoch) AS low, max(t.epoch) AS high,
           bool_and(t.position IS NOT DISTINCT FROM expected + t.i) AS gap_free
    FROM unnest(e_epoch, e_position) WITH ORDINALITY AS t(epoch, position, i)
  ), moved_head AS (
    UPDATE store_head SET position = e_position[n], chain = e_chain[n],
                          recorded_at = e_recorded_at[n], epoch = batch.high
    FROM batch
    WHERE id = 1 AND store_head.position = expected AND batch.gap_free
      AND store_head.fence_epoch <= batch.low AND store_head.epoch <= batch.low
      AND batch.high <= greatest(store_head.epoch, store_head.fence_epoch, 1) + 1
      AND e_epoch[n] = batch.high
    RETURNING 1
  ), appended AS (
    INSERT INTO events (position, id, epoch, type, kind, name, version, data, metadata,
                        recorded_at, chain, signature)
    SELECT * FROM unnest(e_position, e_id, e_epoch, e_type, e_kind, e_name, e_version, e_data,
                         e_metadata, e_recorded_at, e_chain, e_signature)
    WHERE EXISTS (SELECT FROM moved_head)
  ), served AS (
    INSERT INTO items (kind, name, version, live, value, position, updated_at)
    SELECT DISTINCT ON (kind, name) kind, name, version, type <> 'ConfigDeleted',
           CASE WHEN type = 'ConfigDeleted' THEN NULL ELSE data END, position, recorded_at
    FROM unnest(e_position, e_type, e_kind, e_name, e_version, e_data, e_recorded_at)
      AS e(position, type, kind, name, version, data, recorded_at)
    WHERE kind IS NOT NULL AND type IN ('ConfigPut', 'ConfigDeleted')
      AND EXISTS (SELECT FROM moved_head)
    ORDER BY kind, name, position DESC
    ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, live = excluded.live,
      value = excluded.value, position = excluded.position, updated_at = excluded.updated_at
  )
  SELECT count(*) INTO moved FROM moved_head;
  IF moved = 1 THEN
    RETURN true;
  END IF;
  -- Why not (off the hot path): another writer moved the head, or this epoch is fenced (false,
  -- as before 0006), or the batch itself is refused.
  SELECT min(t.epoch), max(t.epoch), bool_and(t.position IS NOT DISTINCT FROM expected + t.i)
    INTO low, high, gap_free
    FROM unnest(e_epoch, e_position) WITH ORDINALITY AS t(epoch, position, i);
  IF gap_free IS NOT TRUE THEN
    RAISE EXCEPTION 'shadowline: positions must be %+1 to %+%, gap-free', expected, expected, n
      USING ERRCODE = 'check_violation';
  END IF;
  SELECT * INTO head FROM store_head WHERE id = 1;
  IF head.position IS DISTINCT FROM expected OR low < head.fence_epoch THEN
    RETURN false;
  END IF;
  RAISE EXCEPTION 'shadowline: epochs % to % do not follow the head''s epoch % (fence %)',
    low, high, head.epoch, head.fence_epoch USING ERRCODE = 'check_violation';
END
$$
"""

# A shadow's bootstrap: the master's item rows (versions, tombstones) have no events here yet, so
# they cannot be derived; they are accepted only into an empty store, where nothing is served
# that they could change. The snapshot's state is derived from the rows, not taken separately.
# Once the backfill has copied the history, /audit/verify compares these rows with the log.
INSTALL = """
CREATE FUNCTION shadowline_install(
  image_position bigint, image_chain bytea, image_epoch integer, image_digest text,
  r_kind text[], r_name text[], r_version integer[], r_live boolean[], r_value jsonb[],
  r_position bigint[], r_updated_at timestamptz[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  n integer := cardinality(r_kind);
BEGIN
  PERFORM FROM store_head WHERE id = 1 AND position = 0 FOR UPDATE;
  IF NOT FOUND OR EXISTS (SELECT FROM events) OR EXISTS (SELECT FROM items)
     OR EXISTS (SELECT FROM snapshots) THEN
    RAISE EXCEPTION 'shadowline: a store that already holds events cannot be bootstrapped'
      USING ERRCODE = 'check_violation';
  END IF;
  IF image_position < 1 OR image_epoch < 1 OR octet_length(image_chain) <> 32
     OR (n = ALL (ARRAY[cardinality(r_name), cardinality(r_version), cardinality(r_live),
        cardinality(r_value), cardinality(r_position), cardinality(r_updated_at)])) IS NOT TRUE
     OR EXISTS (SELECT FROM unnest(r_position, r_version) AS r(position, version)
                WHERE r.position NOT BETWEEN 1 AND image_position OR r.version < 1) THEN
    RAISE EXCEPTION 'shadowline: a malformed bootstrap image (position %, % rows)',
      image_position, n USING ERRCODE = 'check_violation';
  END IF;
  INSERT INTO items (kind, name, version, live, value, position, updated_at)
    SELECT * FROM unnest(r_kind, r_name, r_version, r_live, r_value, r_position, r_updated_at);
  INSERT INTO snapshots (position, taken_at, digest, item_count, state, chain, epoch)
    SELECT image_position, now(), image_digest, count(*) FILTER (WHERE live),
           COALESCE(jsonb_object_agg(kind || '/' || name, value) FILTER (WHERE live), '{}'),
           image_chain, image_epoch
    FROM items;
  UPDATE store_head SET position = image_position, chain = image_chain,
                        base_position = image_position, epoch = image_epoch
    WHERE id = 1;
END
$$
"""

# The history below a bootstrap: rows that change nothing served (the image's items stand for
# them), at or below `base_position` only, never of a term newer than the image's. The base goes
# to 0 (the history is complete: the audit can fold from genesis) only when every position below
# it is here and the last of them carries the image's chain value.
BACKFILL = """
CREATE FUNCTION shadowline_backfill(
  e_position bigint[], e_id uuid[], e_epoch integer[], e_type text[], e_kind text[],
  e_name text[], e_version integer[], e_data jsonb[], e_metadata jsonb[],
  e_recorded_at timestamptz[], e_chain bytea[], e_signature bytea[], new_base bigint
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  head store_head%ROWTYPE;
  image snapshots%ROWTYPE;
BEGIN
  SELECT * INTO head FROM store_head WHERE id = 1 FOR UPDATE;
  SELECT * INTO image FROM snapshots WHERE position = head.base_position;
  IF head.base_position = 0 OR image.position IS NULL THEN
    RAISE EXCEPTION 'shadowline: this store was not bootstrapped from an image: no backfill'
      USING ERRCODE = 'check_violation';
  END IF;
  IF EXISTS (SELECT FROM unnest(e_position, e_epoch) AS e(position, epoch)
             WHERE e.position NOT BETWEEN 1 AND head.base_position
                OR e.epoch NOT BETWEEN 1 AND COALESCE(image.epoch, head.epoch)) THEN
    RAISE EXCEPTION 'shadowline: backfill copies positions 1 to % of epochs up to % only',
      head.base_position, COALESCE(image.epoch, head.epoch) USING ERRCODE = 'check_violation';
  END IF;
  -- Only a page copied before (same positions) is skipped: a clash on another unique index (a
  -- command_id) would be a divergence and must fail, never leave a hole.
  INSERT INTO events (position, id, epoch, type, kind, name, version, data, metadata,
                      recorded_at, chain, signature)
    SELECT * FROM unnest(e_position, e_id, e_epoch, e_type, e_kind, e_name, e_version, e_data,
                         e_metadata, e_recorded_at, e_chain, e_signature)
  ON CONFLICT (position) DO NOTHING;
  IF new_base = head.base_position THEN
    RETURN;
  END IF;
  IF new_base <> 0
     OR (SELECT count(*) FROM events WHERE position <= head.base_position) <> head.base_position
     OR (SELECT chain FROM events WHERE position = head.base_position)
        IS DISTINCT FROM image.chain THEN
    RAISE EXCEPTION 'shadowline: the history below % is not complete or does not end in the '
      'image''s chain value', head.base_position USING ERRCODE = 'check_violation';
  END IF;
  UPDATE store_head SET base_position = 0 WHERE id = 1;
END
$$
"""

# A promotion fences older terms before its first write. Never down (an old master's writes would
# be let in again), and only into the next term (see the term rule).
FENCE = f"""
CREATE FUNCTION shadowline_fence(new_epoch integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  head store_head%ROWTYPE;
BEGIN
  SELECT * INTO head FROM store_head WHERE id = 1 FOR UPDATE;
  IF new_epoch > {_TERM} + 1 THEN
    RAISE EXCEPTION 'shadowline: epoch % is more than one term past this store''s newest (%)',
      new_epoch, {_TERM} USING ERRCODE = 'check_violation';
  END IF;
  UPDATE store_head SET fence_epoch = greatest(fence_epoch, new_epoch) WHERE id = 1;
  RETURN greatest(head.fence_epoch, new_epoch);
END
$$
"""

# The quarantine (0003, 0005), now checked against what the store records. A genuine recovery is
# an old master of term T whose successor took over at `fork`: everything after the fork was
# written by the old master itself, in T, and T is its newest term, not yet fenced (it was still
# writing). So: the events after the fork must all be of the head's epoch T with T >= fence, and
# `new_epoch` must be the next term (the term rule). Events of earlier terms, which the new master
# holds too, can never leave the log; a term can be cut only once, because the cut fences it (a
# second call finds T < fence and is refused); the fork lies in the log (base..head), so the
# head, its chain and the items are rebuilt from events that are there. What remains possible for
# the role, as for a genuine recovery, is ending the current term at a point of its choosing: its
# events are then in `quarantine`, listed and exportable, never dropped.
QUARANTINE = f"""
CREATE OR REPLACE FUNCTION shadowline_quarantine_after(fork bigint, new_epoch integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  head store_head%ROWTYPE;
  moved integer;
BEGIN
  SELECT * INTO head FROM store_head WHERE id = 1 FOR UPDATE;
  IF head.base_position > 0 THEN
    RAISE EXCEPTION 'shadowline: history below the bootstrap image is incomplete; cannot rebuild'
      USING ERRCODE = 'check_violation';
  END IF;
  IF fork IS NULL OR fork < 0 OR fork > head.position THEN
    RAISE EXCEPTION 'shadowline: fork position % is not in this log (0 to %)', fork,
      head.position USING ERRCODE = 'check_violation';
  END IF;
  IF new_epoch IS DISTINCT FROM {_TERM} + 1 THEN
    RAISE EXCEPTION 'shadowline: a recovery enters the next term (%), not epoch %',
      {_TERM} + 1, new_epoch USING ERRCODE = 'check_violation';
  END IF;
  IF head.epoch < head.fence_epoch
     OR EXISTS (SELECT FROM events WHERE position > fork AND epoch <> head.epoch) THEN
    RAISE EXCEPTION 'shadowline: only the writes of the current, unfenced term % after the fork '
      'may be quarantined; events after % belong to an earlier or ended term', head.epoch, fork
      USING ERRCODE = 'check_violation';
  END IF;
  INSERT INTO quarantine (position, id, epoch, type, kind, name, version, data, metadata,
                          recorded_at, chain, signature, fork_position, new_epoch)
    SELECT position, id, epoch, type, kind, name, version, data, metadata, recorded_at, chain,
           signature, fork, new_epoch
    FROM events WHERE position > fork
    ON CONFLICT (id) DO NOTHING;
  GET DIAGNOSTICS moved = ROW_COUNT;
  PERFORM set_config('shadowline.quarantine', 'on', true);
  DELETE FROM events WHERE position > fork;
  DELETE FROM snapshots WHERE position > fork;
  PERFORM set_config('shadowline.quarantine', 'off', true);
  DELETE FROM items;
  INSERT INTO items (kind, name, version, live, value, position, updated_at)
    SELECT DISTINCT ON (kind, name) kind, name, version, type <> 'ConfigDeleted',
           CASE WHEN type = 'ConfigDeleted' THEN NULL ELSE data END, position, recorded_at
    FROM events WHERE kind IS NOT NULL AND type IN ('ConfigPut', 'ConfigDeleted')
    ORDER BY kind, name, position DESC;
  UPDATE store_head SET
    position = fork,
    chain = COALESCE((SELECT chain FROM events WHERE position = fork),
                     (SELECT chain FROM snapshots WHERE position = fork),
                     decode(repeat('00', 32), 'hex')),
    recorded_at = (SELECT recorded_at FROM events WHERE position = fork),
    epoch = COALESCE((SELECT epoch FROM events WHERE position = fork),
                     (SELECT epoch FROM snapshots WHERE position = fork), 0),
    fence_epoch = new_epoch
  WHERE id = 1;
  UPDATE relay_cursor SET position = least(position, fork) WHERE id = 1;
  RETURN moved;
END
$$
"""

# The epoch of the head's event, kept by the functions above. On an existing store: the newest
# epoch of the log (or of the bootstrap snapshot at the head), which is the head's in any log the
# application wrote.
HEAD_EPOCH = """
UPDATE store_head SET epoch = greatest(
  COALESCE((SELECT max(epoch) FROM events), 0),
  COALESCE((SELECT epoch FROM snapshots s WHERE s.position = store_head.position), 0))
WHERE id = 1
"""

FUNCTIONS = {
    "shadowline_append": "bigint, bigint[], uuid[], integer[], text[], text[], text[], "
    "integer[], jsonb[], jsonb[], timestamptz[], bytea[], bytea[]",
    "shadowline_install": "bigint, bytea, integer, text, text[], text[], integer[], boolean[], "
    "jsonb[], bigint[], timestamptz[]",
    "shadowline_backfill": "bigint[], uuid[], integer[], text[], text[], text[], integer[], "
    "jsonb[], jsonb[], timestamptz[], bytea[], bytea[], bigint",
    "shadowline_fence": "integer",
}

# Roles that could write the projection or insert events directly lose that here (an upgrade must
# close the hole without waiting for `shadowline migrate --app-role` to be run again); those that
# could insert events were application roles, so they may call the functions instead.
REVOKE_DIRECT_WRITES = """
DO $$
DECLARE
  grantee regrole;
BEGIN
  FOR grantee IN
    SELECT DISTINCT a.grantee::regrole FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid IN ('events'::regclass, 'items'::regclass, 'store_head'::regclass)
      AND a.grantee <> c.relowner AND a.grantee <> 0
      AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
  LOOP
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON events, items, store_head FROM %s',
                   grantee);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', '{functions}', grantee);
  END LOOP;
END
$$
"""


def _signatures() -> str:
    return ", ".join(f"{name}({args})" for name, args in FUNCTIONS.items())


def upgrade() -> None:
    op.add_column("store_head", sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    op.execute(HEAD_EPOCH)
    for function in (APPEND, INSTALL, BACKFILL, FENCE, QUARANTINE):
        op.execute(function)
    for name, args in FUNCTIONS.items():
        # EXECUTE is granted to PUBLIC by default: only the owner and the app role may call.
        op.execute(f"REVOKE ALL ON FUNCTION {name}({args}) FROM PUBLIC")
    op.execute(REVOKE_DIRECT_WRITES.replace("{functions}", _signatures()))


def _previous_quarantine() -> str:
    """0005's function, loaded from its migration: a downgrade restores exactly that."""
    path = Path(__file__).with_name("0005_signatures.py")
    spec = importlib.util.spec_from_file_location("shadowline_migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.QUARANTINE)


def downgrade() -> None:
    # Roles keep EXECUTE on nothing they could use: grant them the older privileges again with
    # the older release's `shadowline migrate --app-role`.
    for name, args in FUNCTIONS.items():
        op.execute(f"DROP FUNCTION {name}({args})")
    op.execute(_previous_quarantine())
    op.drop_column("store_head", "epoch")
