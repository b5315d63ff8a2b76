-- Owner: services/enricher (registry.rs). Facts about the registry as a whole: which version
-- of the blocking keys its `linkage_keys` rows were made with, so an enricher that computes
-- keys differently re-keys every record once before it decides anything.
CREATE TABLE linkage_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
