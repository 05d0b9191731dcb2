-- A classic business schema (orders, invoices) as older tools write it: every key constraint named.
create table public.categories (
  category_id integer not null,
  name varchar(50) not null,
  constraint pk_categories primary key (category_id)
);

create table public.suppliers (
  supplier_id smallint not null,
  company_name varchar(80) not null,
  country char(2),
  constraint pk_suppliers primary key (supplier_id),
  constraint uq_suppliers_company unique (company_name)
);

create table public.products (
  product_id serial,
  sku varchar(20) not null,
  category_id integer not null,
  supplier_id smallint,
  unit_price numeric(10, 2) not null default 0,
  discontinued boolean not null default false,
  constraint pk_products primary key (product_id),
  constraint fk_products_category foreign key (category_id) references public.categories (category_id),
  constraint fk_products_supplier foreign key (supplier_id) references public.suppliers (supplier_id),
  constraint ck_products_price check (unit_price >= 0)
);

create table public.customers (
  customer_code char(5) not null,
  company_name varchar(80) not null,
  constraint pk_customers primary key (customer_code)
);

create table public.employees (
  employee_id bigint generated always as identity,
  last_name varchar(40) not null,
  reports_to bigint,
  constraint pk_employees primary key (employee_id),
  constraint fk_employees_manager foreign key (reports_to) references public.employees (employee_id)
);

create table public.orders (
  order_id integer not null,
  customer_code char(5) not null,
  employee_id bigint,
  ordered_on date not null default current_date,
  constraint pk_orders primary key (order_id),
  constraint fk_orders_customer foreign key (customer_code) references public.customers (customer_code),
  constraint fk_orders_employee foreign key (employee_id) references public.employees (employee_id)
);

create table public.order_lines (
  order_id integer not null,
  line_no smallint not null,
  product_id integer not null,
  quantity integer not null default 1,
  unit_price numeric(10, 2) not null,
  constraint pk_order_lines primary key (order_id, line_no),
  constraint fk_order_lines_order foreign key (order_id) references public.orders (order_id) on delete cascade,
  constraint fk_order_lines_product foreign key (product_id) references public.products (product_id),
  constraint ck_order_lines_quantity check (quantity > 0)
);

create table public.invoices (
  invoice_no integer not null,
  order_id integer not null,
  issued_on date not null,
  constraint invoices_pkey primary key (invoice_no),
  constraint fk_invoices_order foreign key (order_id) references public.orders (order_id)
);

create table public.invoice_notes (
  order_id integer not null,
  note text not null,
  constraint pk_invoice_notes primary key (order_id),
  constraint fk_invoice_notes_order foreign key (order_id) references public.orders (order_id)
);

create table public.exchange_rates (
  currency char(3) not null,
  valid_from date not null,
  rate numeric(12, 6) not null,
  constraint pk_exchange_rates primary key (valid_from, currency)
);

create index ix_orders_customer on public.orders (customer_code);
create index ix_order_lines_product on public.order_lines (product_id);
alter table public.orders cluster on ix_orders_customer;
create unique index ux_products_sku on public.products (sku);
alter table public.products replica identity using index ux_products_sku;
