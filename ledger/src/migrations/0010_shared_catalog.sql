-- The last catalog a collector fetched (from Backstage), for the other collectors sharing the ledger: one
-- collector at a time syncs it (leader election), the others read it from here.
CREATE TABLE shared_catalogs (
    source TEXT PRIMARY KEY,
    catalog_json TEXT NOT NULL,
    synced_at_ns INTEGER NOT NULL
);
