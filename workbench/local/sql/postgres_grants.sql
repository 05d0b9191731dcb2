-- What Supabase grants postgres on the schemas it does not own (its "demote postgres" migration): run after
-- the bootstrap and the pre-created extensions, as supabase_admin. Idempotent.
grant all on schema auth, storage, extensions to postgres;
grant all on all tables in schema auth, storage, extensions to postgres;
grant all on all sequences in schema auth, storage, extensions to postgres;
grant all on all routines in schema auth, storage, extensions to postgres;
grant execute on all functions in schema extensions to anon, authenticated, service_role;
