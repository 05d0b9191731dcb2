-- A multi-schema database: reference data, sales, and a reporting schema of views, all commented.
create schema ref;
create schema sales;
create schema reporting;
comment on schema ref is 'Reference data shared by every department.';
comment on schema sales is 'Orders and their lines.';
comment on schema reporting is 'Read-only views for the BI tool.';

create type ref.region as enum ('emea', 'amer', 'apac');

create table ref.countries (
  code char(2) primary key,
  name text not null,
  region ref.region not null
);
comment on table ref.countries is 'ISO 3166 countries.';
comment on column ref.countries.code is 'Two-letter code.';

create table sales.accounts (
  id bigint generated always as identity primary key,
  name text not null,
  country char(2) not null references ref.countries (code)
);
comment on table sales.accounts is 'Customer accounts.';

create table sales.orders (
  id bigint generated always as identity primary key,
  account_id bigint not null references sales.accounts (id),
  amount numeric(12, 2) not null,
  placed_at timestamptz not null default now()
);
comment on column sales.orders.amount is 'In euros, VAT included.';
create index orders_account_idx on sales.orders (account_id);

create function sales.net(amount numeric) returns numeric language sql immutable as $$ select round(amount / 1.2, 2) $$;
comment on function sales.net(numeric) is 'Amount without VAT.';

create function reporting.quarter_of(ts timestamptz) returns text language sql immutable as $$
  select to_char(ts, 'YYYY-"Q"Q')
$$;

create view reporting.revenue_by_region as
  select c.region, reporting.quarter_of(o.placed_at) as quarter, sum(sales.net(o.amount)) as net_revenue
    from sales.orders o
    join sales.accounts a on a.id = o.account_id
    join ref.countries c on c.code = a.country
   group by 1, 2;
comment on view reporting.revenue_by_region is 'Net revenue per region and quarter.';

create view reporting.top_accounts with (security_invoker = true) as
  select a.id, a.name, sum(o.amount) as total
    from sales.accounts a join sales.orders o on o.account_id = a.id
   group by a.id, a.name
   order by total desc
   limit 10;
comment on column reporting.top_accounts.total is 'Gross, VAT included.';

create materialized view reporting.orders_per_country as
  select a.country, count(*) as orders from sales.orders o join sales.accounts a on a.id = o.account_id group by 1
  with no data;
create unique index orders_per_country_idx on reporting.orders_per_country (country);

-- A partitioned event log with a row trigger on the parent (PostgreSQL clones it onto each partition).
create table sales.events (id bigint not null, happened_on date not null, payload jsonb) partition by range (happened_on);
create table sales.events_2026 partition of sales.events for values from ('2026-01-01') to ('2027-01-01');
create function sales.stamp_event() returns trigger language plpgsql as $$
begin
  new.payload := coalesce(new.payload, '{}'::jsonb) || jsonb_build_object('stamped', true);
  return new;
end
$$;
create trigger events_stamp before insert on sales.events for each row execute function sales.stamp_event();
