-- The stand-in's cluster-wide role model, as on Supabase: run by the stand-in as supabase_admin (the bootstrap
-- superuser) right after bootstrap.sql. Needs a superuser, so it is kept apart from bootstrap.sql, which
-- postgres itself runs in scratch databases. Idempotent.

-- Supabase's "demote postgres" migration: postgres is the project owner, not a superuser.
alter role postgres with login nosuperuser createrole createdb replication bypassrls;
alter role postgres set search_path to "$user", public, extensions;
grant anon, authenticated, service_role, authenticator to postgres with admin option;
grant pg_monitor, pg_read_all_data, pg_signal_backend to postgres with admin option;
-- postgres acts as the owner of auth's and storage's tables (policies on storage.objects, triggers on
-- auth.users) through membership, as on Supabase.
grant supabase_auth_admin, supabase_storage_admin to postgres;
-- Supabase's dumps show postgres owning its database; that also lets it copy it (create database ... template).
alter database postgres owner to postgres;
grant all on database postgres to postgres;
