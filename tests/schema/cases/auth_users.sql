-- A Supabase-style schema: public tables with FKs into auth.users (created here as on Supabase).
create schema auth;
create function auth.uid() returns uuid language sql stable as $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
create table auth.users (
  id uuid primary key default gen_random_uuid(),
  email text,
  created_at timestamptz default now()
);
create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  username text unique
);
create table public.posts (
  id bigint generated always as identity primary key,
  author_id uuid not null references auth.users (id),
  editor_id uuid references auth.users (id),
  title text not null
);
alter table public.posts enable row level security;
create policy "authors manage their posts" on public.posts for all to authenticated
  using (author_id = (select auth.uid())) with check (author_id = (select auth.uid()));
