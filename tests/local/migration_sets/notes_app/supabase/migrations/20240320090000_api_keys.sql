-- Personal API keys: shown once, stored as a bcrypt hash.
create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  prefix text not null default encode(extensions.gen_random_bytes(4), 'hex'),
  key_hash text not null,
  created_at timestamptz not null default now()
);
alter table public.api_keys enable row level security;
create policy "Users see their own keys" on public.api_keys
  for select to authenticated using ((select auth.uid()) = user_id);

create or replace function public.create_api_key()
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  raw text := encode(extensions.gen_random_bytes(24), 'hex');
begin
  if auth.uid() is null then
    raise exception 'sign in first';
  end if;
  insert into public.api_keys (user_id, key_hash)
  values (auth.uid(), extensions.crypt(raw, extensions.gen_salt('bf')));
  return raw;
end;
$$;

create or replace function public.check_api_key(candidate text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select user_id from public.api_keys where key_hash = extensions.crypt(candidate, key_hash) limit 1;
$$;

revoke execute on function public.check_api_key(text) from public, anon, authenticated;

-- The Stripe test key lives in the vault, not in a table.
select vault.create_secret('sk_test_local_only', 'stripe_secret_key', 'Stripe test-mode key');
