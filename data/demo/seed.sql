-- Demo rows (users are created first by the loader, with bcrypt password hashes).
insert into public.organizations (name) values ('Acme'), ('Globex');
insert into public.memberships (org_id, user_id, role) values
  (1, '11111111-1111-4111-8111-111111111111', 'owner'),
  (1, '33333333-3333-4333-8333-333333333333', 'member'),
  (2, '22222222-2222-4222-8222-222222222222', 'owner'),
  (2, '33333333-3333-4333-8333-333333333333', 'admin');
insert into public.projects (org_id, name) values (1, 'Website'), (1, 'Mobile app'), (2, 'Data platform');
insert into public.tasks (project_id, owner_id, title, status, details, due_at) values
  (1, '11111111-1111-4111-8111-111111111111', 'Draft landing page', 'doing', '{"labels": ["design"], "estimate": 3}', '2026-12-01T09:00:00Z'),
  (1, '11111111-1111-4111-8111-111111111111', 'Set up analytics', 'todo', '{"labels": ["growth"]}', null),
  (2, '11111111-1111-4111-8111-111111111111', 'Ship iOS beta', 'todo', '{"labels": ["mobile"], "estimate": 8}', '2027-01-15T17:00:00Z'),
  (2, '33333333-3333-4333-8333-333333333333', 'Fix login crash', 'done', '{"labels": ["bug"], "estimate": 1}', null),
  (3, '22222222-2222-4222-8222-222222222222', 'Load nightly exports', 'doing', '{"labels": ["etl"], "estimate": 5}', '2026-12-10T00:00:00Z'),
  (3, '22222222-2222-4222-8222-222222222222', 'Retire old warehouse', 'todo', '{}', null),
  (3, '33333333-3333-4333-8333-333333333333', 'Review access rules', 'todo', '{"labels": ["security"]}', null);
insert into public.announcements (body, published) values
  ('Welcome to the workbench demo!', true), ('Draft: pricing change', false);
insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types) values
  ('avatars', 'avatars', true, 1048576, array['image/png', 'image/jpeg', 'image/webp']),
  ('documents', 'documents', false, null, null);
