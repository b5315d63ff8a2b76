-- Owner: services/enricher (registry.rs). Who a person is known as the child of: the
-- enricher asks it of every linkage candidate, so a child already known in another household
-- is never linked automatically on name and date of birth alone.
CREATE INDEX person_links_to ON person_links (to_person_id, kind);
