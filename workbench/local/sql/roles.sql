-- The login roles the stand-in's services use, as on Supabase: each can only become what its service
-- needs, so PostgreSQL itself refuses the rest ("permission denied to set role"). Idempotent; run at
-- every start (passwords are set right after, from keys.json).
alter role authenticator with login noinherit nosuperuser nocreaterole nocreatedb noreplication nobypassrls;
alter role supabase_auth_admin with login noinherit nosuperuser createrole nocreatedb noreplication nobypassrls;
alter role supabase_storage_admin with login noinherit nosuperuser createrole nocreatedb noreplication nobypassrls;
grant anon, authenticated, service_role to authenticator;
grant authenticator to supabase_storage_admin;
revoke postgres from authenticator, supabase_auth_admin, supabase_storage_admin;
revoke supabase_admin from authenticator, supabase_auth_admin, supabase_storage_admin;

-- Each service owns its schema's tables (on Supabase too): the Storage API acting as itself (no caller
-- token) reads them as their owner, so without a policy bypass granted to anyone else.
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
alter table auth.users owner to supabase_auth_admin;
alter table auth.sessions owner to supabase_auth_admin;
alter table auth.refresh_tokens owner to supabase_auth_admin;
alter table auth.one_time_tokens owner to supabase_auth_admin;
alter table auth.flow_state owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
