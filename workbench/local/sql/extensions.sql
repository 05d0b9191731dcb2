-- The extensions a Supabase project has before its first migration, so the header of a `supabase db dump`
-- (`create extension if not exists "pgsodium" with schema "pgsodium"`, ... "supabase_vault" with schema "vault")
-- finds them installed, as it does on Supabase, instead of failing on a missing schema. The extension files are
-- the stand-in's own (workbench/local/extensions, on extension_control_path). Run by the bootstrap as the
-- superuser, after the roles and the "extensions" schema exist and before supabase_functions.sql. Idempotent.

create schema if not exists extensions;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists pgjwt with schema extensions;
create extension if not exists pg_stat_statements with schema extensions;
create extension if not exists pgsodium;        -- schema pgsodium
create extension if not exists pg_graphql;      -- schemas graphql, graphql_public
create extension if not exists supabase_vault;  -- schema vault
grant usage on schema extensions to postgres, anon, authenticated, service_role;
grant execute on all functions in schema extensions to postgres, anon, authenticated, service_role;
