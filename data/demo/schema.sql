-- Demo app: a small multi-tenant task tracker, written the way a Supabase project's migration is.
create type public.member_role as enum ('owner', 'admin', 'member');
create type public.task_status as enum ('todo', 'doing', 'done');

create table public.organizations (
  id bigint generated always as identity primary key,
  name text not null unique,
  created_at timestamptz not null default now()
);
comment on table public.organizations is 'Tenants: every project belongs to one organization.';

create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  email text,
  full_name text,
  avatar_url text,
  updated_at timestamptz not null default now()
);
comment on table public.profiles is 'One row per auth user, created by a trigger on auth.users.';

create table public.memberships (
  org_id bigint not null references public.organizations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role public.member_role not null default 'member',
  primary key (org_id, user_id)
);
create index memberships_user_id_idx on public.memberships (user_id);

create table public.projects (
  id bigint generated always as identity primary key,
  org_id bigint not null references public.organizations (id) on delete cascade,
  name text not null,
  created_at timestamptz not null default now()
);
create index projects_org_id_idx on public.projects (org_id);

create table public.tasks (
  id bigint generated always as identity primary key,
  project_id bigint not null references public.projects (id) on delete cascade,
  owner_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  title text not null check (length(title) between 1 and 200),
  status public.task_status not null default 'todo',
  details jsonb not null default '{}'::jsonb,
  due_at timestamptz,
  created_at timestamptz not null default now()
);
comment on column public.tasks.details is 'Free-form JSON: labels, estimates, links.';
create index tasks_project_id_idx on public.tasks (project_id);
create index tasks_owner_id_idx on public.tasks (owner_id);

create table public.announcements (
  id bigint generated always as identity primary key,
  body text not null,
  published boolean not null default false,
  created_at timestamptz not null default now()
);

-- Membership check used by policies; security definer so policies on memberships do not recurse.
create function public.is_org_member(org bigint) returns boolean
  language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.memberships m where m.org_id = org and m.user_id = (select auth.uid())
  )
$$;

-- The classic Supabase trigger: a profile for every new auth user.
create function public.handle_new_user() returns trigger
  language plpgsql security definer set search_path = '' as $$
begin
  insert into public.profiles (id, email, full_name)
  values (new.id, new.email, new.raw_user_meta_data ->> 'full_name');
  return new;
end
$$;
create trigger on_auth_user_created after insert on auth.users
  for each row execute function public.handle_new_user();

alter table public.organizations enable row level security;
alter table public.profiles enable row level security;
alter table public.memberships enable row level security;
alter table public.projects enable row level security;
alter table public.tasks enable row level security;
alter table public.announcements enable row level security;

create policy "members read their organizations" on public.organizations
  for select to authenticated using (public.is_org_member(id));
create policy "profiles are visible to signed-in users" on public.profiles
  for select to authenticated using (true);
create policy "users update their own profile" on public.profiles
  for update to authenticated using ((select auth.uid()) = id) with check ((select auth.uid()) = id);
create policy "members read memberships of their organizations" on public.memberships
  for select to authenticated using (user_id = (select auth.uid()) or public.is_org_member(org_id));
create policy "members read projects" on public.projects
  for select to authenticated using (public.is_org_member(org_id));
create policy "owners read their tasks" on public.tasks
  for select to authenticated using (owner_id = (select auth.uid()));
create policy "admins read every task" on public.tasks
  for select to authenticated using ((select auth.jwt() ->> 'user_role') = 'admin');
create policy "members add their own tasks" on public.tasks
  for insert to authenticated
  with check (
    owner_id = (select auth.uid())
    and exists (select 1 from public.projects p where p.id = project_id and public.is_org_member(p.org_id))
  );
create policy "owners update their tasks" on public.tasks
  for update to authenticated
  using (owner_id = (select auth.uid())) with check (owner_id = (select auth.uid()));
create policy "owners delete their tasks" on public.tasks
  for delete to authenticated using (owner_id = (select auth.uid()));
create policy "anyone reads published announcements" on public.announcements
  for select to anon, authenticated using (published);

alter publication supabase_realtime add table public.tasks;

-- Storage: users own the folder named after their id in `documents`; avatars are public.
create policy "users read their own folder" on storage.objects
  for select to authenticated
  using (bucket_id = 'documents' and (storage.foldername(name))[1] = (select auth.uid())::text);
create policy "users upload into their own folder" on storage.objects
  for insert to authenticated
  with check (bucket_id = 'documents' and (storage.foldername(name))[1] = (select auth.uid())::text);
create policy "users update their own files" on storage.objects
  for update to authenticated
  using (bucket_id = 'documents' and owner_id = (select auth.uid())::text);
create policy "users delete their own files" on storage.objects
  for delete to authenticated
  using (bucket_id = 'documents' and owner_id = (select auth.uid())::text);
create policy "avatars are public" on storage.objects
  for select to anon, authenticated using (bucket_id = 'avatars');
