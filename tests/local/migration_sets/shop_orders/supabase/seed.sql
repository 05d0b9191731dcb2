insert into auth.users (id, aud, role, email, encrypted_password, email_confirmed_at, raw_app_meta_data)
values
  ('c0c0c0c0-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'carla@shop.test',
   crypt('carla-password', gen_salt('bf')), now(), '{"provider":"email","providers":["email"]}'),
  ('d0d0d0d0-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'dan@shop.test',
   crypt('dan-password', gen_salt('bf')), now(), '{"provider":"email","providers":["email"]}'),
  ('e0e0e0e0-0000-4000-8000-000000000003', 'authenticated', 'authenticated', 'sam@shop.test',
   crypt('sam-password', gen_salt('bf', 8)), now(), '{"provider":"email","providers":["email"],"role":"staff"}');

insert into public.products (sku, name, price_cents, active) values
  ('MUG-1', 'Mug', 1200, true),
  ('TEE-1', 'T-shirt', 2500, true),
  ('OLD-1', 'Discontinued poster', 900, false);

insert into public.orders (customer_id, total_cents, shipping) values
  ('c0c0c0c0-0000-4000-8000-000000000001', 1200,
   '{"name":"Carla","street":"1 Main St","postcode":"10115","country":"DE"}'),
  ('c0c0c0c0-0000-4000-8000-000000000001', 3700,
   '{"name":"Carla","street":"1 Main St","postcode":"10115","country":"DE"}'),
  ('d0d0d0d0-0000-4000-8000-000000000002', 2500,
   '{"name":"Dan","street":"2 High St","postcode":"SW1A 1AA","country":"GB"}');

update public.orders set status = 'paid' where total_cents = 3700;
