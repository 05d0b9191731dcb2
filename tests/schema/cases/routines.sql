-- What a module builds besides tables: an extension, an enum-typed function, triggers, replica identity,
-- CLUSTER ON, comments on the schema and a function, a function that returns a table's rows.
create extension if not exists vector schema public;
comment on schema public is 'The app''s tables.';
create type public.mood as enum ('calm', 'busy');
create table public.notes (
  id bigint generated always as identity primary key,
  body text not null,
  mood public.mood not null default 'calm',
  embedding vector(3),
  updated_at timestamptz
);
create index notes_mood_idx on public.notes (mood);
alter table public.notes replica identity full;
alter table public.notes cluster on notes_mood_idx;
create function public.is_calm(m public.mood) returns boolean language sql immutable as $$ select m = 'calm' $$;
comment on function public.is_calm(public.mood) is 'Used by the policy below.';
create function public.touch() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end
$$;
create trigger notes_touch before update on public.notes
  for each row when (old.body is distinct from new.body) execute function public.touch();
create function public.calm_notes() returns setof public.notes language sql stable as $$
  select * from public.notes where public.is_calm(mood)
$$;
alter table public.notes enable row level security;
create policy "calm notes are public" on public.notes for select using (public.is_calm(mood));
