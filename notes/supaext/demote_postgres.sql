-- Dev harness only: what pg18's bootstrap is expected to grant the demoted (non-superuser) postgres, as
-- Supabase's "demote postgres" migration does. Not used by the stand-in or CI.
grant all on schema auth, storage, extensions to postgres;
grant all on all tables in schema auth, storage to postgres;
grant all on all sequences in schema auth, storage to postgres;
grant all on all routines in schema auth, storage to postgres;
