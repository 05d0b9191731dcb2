insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                        raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
values
  ('00000000-0000-0000-0000-000000000000', 'a1a1a1a1-0000-4000-8000-000000000001', 'authenticated', 'authenticated',
   'ada@notes.test', extensions.crypt('ada-password', extensions.gen_salt('bf')), now(),
   '{"provider":"email","providers":["email"]}', '{"full_name":"Ada Lovelace","username":"Ada"}', now(), now()),
  ('00000000-0000-0000-0000-000000000000', 'b2b2b2b2-0000-4000-8000-000000000002', 'authenticated', 'authenticated',
   'grace@notes.test', extensions.crypt('grace-password', extensions.gen_salt('bf')), now(),
   '{"provider":"email","providers":["email"]}', '{"full_name":"Grace Hopper","username":"grace"}', now(), now());

insert into public.notes (owner_id, title, is_public) values
  ('a1a1a1a1-0000-4000-8000-000000000001', 'Analytical engine', true),
  ('a1a1a1a1-0000-4000-8000-000000000001', 'Private draft', false),
  ('b2b2b2b2-0000-4000-8000-000000000002', 'COBOL ideas', false);

insert into public.api_keys (user_id, key_hash) values
  ('a1a1a1a1-0000-4000-8000-000000000001', extensions.crypt('ada-key', extensions.gen_salt('bf')));
