-- Enum types: odd labels, arrays of enums, an unused enum, an enum in another schema, a domain.
create schema billing;
create type public.ticket_state as enum ('new', 'in-progress', '', '1st line', 'done', 'NEW');
create type public.unused_kind as enum ('a', 'b');
create type billing.currency as enum ('EUR', 'USD');
create domain public.positive_int as integer not null check (value > 0);
create table tickets (
  id bigint generated always as identity primary key,
  state public.ticket_state not null default 'new',
  history public.ticket_state[] not null default '{}',
  currency billing.currency,
  priority public.positive_int default 1
);
