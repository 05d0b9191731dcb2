-- A column named `metadata` (as in storage.objects) must not clash with Base.metadata.
create table documents (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  metadata jsonb not null default '{}'::jsonb,
  metadata_ text
);
