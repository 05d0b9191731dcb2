-- Profiles + notes, the way the Supabase quickstarts build them.
create extension if not exists "uuid-ossp";
create extension if not exists citext with schema extensions;
create extension if not exists moddatetime schema extensions;

create table public.profiles (
  id uuid not null references auth.users on delete cascade,
  username extensions.citext unique,
  full_name text,
  updated_at timestamp with time zone,
  primary key (id),
  constraint username_length check (char_length(username) >= 3)
);

alter table public.profiles enable row level security;

create policy "Public profiles are viewable by everyone." on profiles
  for select using (true);

create policy "Users can insert their own profile." on profiles
  for insert with check ((select auth.uid()) = id);

create policy "Users can update own profile." on profiles
  for update using ((select auth.uid()) = id);

-- This trigger automatically creates a profile entry when a new user signs up via Supabase Auth.
create function public.handle_new_user()
returns trigger
language plpgsql
security definer set search_path = ''
as $$
begin
  insert into public.profiles (id, full_name, username)
  values (new.id, new.raw_user_meta_data->>'full_name', new.raw_user_meta_data->>'username');
  return new;
end;
$$;

create trigger on_auth_user_created
  after insert on auth.users
  for each row execute procedure public.handle_new_user();

create trigger handle_updated_at before update on public.profiles
  for each row execute procedure moddatetime (updated_at);
