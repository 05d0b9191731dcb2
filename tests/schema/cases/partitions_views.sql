-- A list-partitioned table with a default partition, a view over it, a materialized view with an index.
create table readings (
  device text not null,
  at timestamptz not null,
  value numeric not null,
  primary key (device, at)
) partition by list (device);
create table readings_a partition of readings for values in ('a');
create table readings_rest partition of readings default;
create index readings_rest_value_idx on readings_rest (value);
create view latest_readings with (security_invoker = true) as
  select device, max(at) as at from readings group by device;
create materialized view reading_counts as select device, count(*) as n from readings group by device;
create unique index reading_counts_device on reading_counts (device);
