-- Tables without a primary key become Table objects (with their indexes and constraints).
create table audit_log (
  at timestamptz not null default now(),
  actor text,
  action text not null check (action in ('insert', 'update', 'delete'))
);
create index audit_log_at_idx on audit_log (at desc);
create table settings (
  key text not null unique,
  value text
);
create unique index settings_lower_key on settings (lower(key)) where value is not null;
