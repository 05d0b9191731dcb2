-- Names that are not Python identifiers, mixed case, a leading digit, non-ASCII letters.
create table "Order Items" (
  "Item ID" integer primary key,
  "Unit Price" numeric(10, 2) not null check ("Unit Price" >= 0),
  "2fa" boolean not null default false,
  "naïve" text,
  "camelCase" text,
  "ﬁle" text,
  "with-dash" varchar(40) collate "C"
);
create index "Order Items by price" on "Order Items" ("Unit Price" desc nulls last);
create table "1st table" (
  id smallint primary key,
  "Item ID" integer references "Order Items" ("Item ID")
);
