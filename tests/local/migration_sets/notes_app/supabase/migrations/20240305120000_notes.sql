create table public.notes (
  id uuid primary key default uuid_generate_v4(),
  owner_id uuid not null default auth.uid() references public.profiles (id) on delete cascade,
  title text not null,
  body text not null default '',
  is_public boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index notes_owner_id_idx on public.notes (owner_id);

alter table public.notes enable row level security;

create policy "Anyone reads public notes" on public.notes
  for select to anon, authenticated using (is_public);
create policy "Owners read their notes" on public.notes
  for select to authenticated using ((select auth.uid()) = owner_id);
create policy "Owners write their notes" on public.notes
  for all to authenticated using ((select auth.uid()) = owner_id) with check ((select auth.uid()) = owner_id);

create trigger notes_updated_at before update on public.notes
  for each row execute procedure extensions.moddatetime (updated_at);
