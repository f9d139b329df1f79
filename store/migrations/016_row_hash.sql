-- Each projection row carries its checksum hash, computed by PostgreSQL on
-- write, so reconcile's checksums sum a column on the shadow's side instead
-- of hashing 900,000 rows on every sweep. reconcile computes the same hash
-- of each legacy row (reconcile/sql.go, legacyRowHash), field by field:
-- a hash per field, seeded by its position, XORed with the report's; a
-- NULL time hashes as its position; times as UTC timestamps, exactly. The
-- hash has 64 bits, and a checksum sums them exactly (PostgreSQL sums
-- bigints in 128 bits): a changed report hides with odds of 2^-64.
-- A test (reconcile TestChecksumsAgreeOnAnyShape) holds the two equal.
ALTER TABLE {{.Schema}}.shadow_phases ADD COLUMN row_hash bigint GENERATED ALWAYS AS (
    hashint8extended(report_id, 0)
        # coalesce(hashtextextended(phase, 1), 1)
        # coalesce(hashtextextended(state, 2), 2)
        # coalesce(hashtextextended(status, 3), 3)
        # hashtextextended(coalesce(started_by, ''), 4)
        # hashtextextended(coalesce(completed_by, ''), 5)
        # coalesce(timestamp_hash_extended(timezone('UTC', planned_start), 6), 6)
        # coalesce(timestamp_hash_extended(timezone('UTC', planned_end), 7), 7)
        # coalesce(timestamp_hash_extended(timezone('UTC', actual_start), 8), 8)
        # coalesce(timestamp_hash_extended(timezone('UTC', actual_end), 9), 9)
) STORED;

-- The shadow's checksums per report read this index alone, in key order:
-- no sort, no hash table, no visit to the rows where the visibility map
-- allows.
CREATE INDEX shadow_phases_sums ON {{.Schema}}.shadow_phases (cycle_id, report_id) INCLUDE (row_hash);
