-- Several foreign keys to one table, and FKs in both directions between two tables.
create table accounts (
  id bigint generated always as identity primary key,
  email text not null unique,
  primary_team_id bigint
);
create table teams (
  id bigint generated always as identity primary key,
  name text not null,
  owner_id bigint not null references accounts (id)
);
alter table accounts add constraint accounts_primary_team_id_fkey foreign key (primary_team_id) references teams (id);
create table messages (
  id bigint generated always as identity primary key,
  sender_id bigint not null references accounts (id) on delete cascade,
  recipient_id bigint references accounts (id) on delete set null,
  body text not null
);
