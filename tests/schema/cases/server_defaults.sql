-- Server defaults of every shape, serial and shared sequences, colons and percent signs.
create sequence shared_counter as integer start 1000 increment 10;
create table events (
  id serial primary key,
  big_id bigserial,
  ticket integer not null default nextval('shared_counter'),
  kind text not null default 'note:info',
  pattern text default '100%',
  tags text[] not null default array['a', 'b'],
  payload jsonb not null default '{"a": [1, 2]}'::jsonb,
  happened_at timestamptz not null default now(),
  day date default current_date,
  token uuid default gen_random_uuid(),
  ratio real default 0.5,
  amount numeric(12, 4) default 0,
  flag boolean default true,
  ttl interval default '1 day',
  window_ tstzrange
);
create table other_events (
  id integer primary key default nextval('shared_counter'),
  at time(3) with time zone,
  stamp timestamp(3)
);
