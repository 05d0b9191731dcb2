insert into auth.users (id, aud, role, email, encrypted_password, email_confirmed_at)
values
  ('f1f1f1f1-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'mod@chat.test',
   extensions.crypt('mod-password', extensions.gen_salt('bf')), now()),
  ('f2f2f2f2-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'user@chat.test',
   extensions.crypt('user-password', extensions.gen_salt('bf')), now());

insert into public.role_permissions (role, permission) values
  ('admin', 'channels.delete'), ('admin', 'messages.delete'), ('moderator', 'messages.delete');
insert into public.user_roles (user_id, role) values ('f1f1f1f1-0000-4000-8000-000000000001', 'moderator');

insert into public.channels (slug, created_by) values
  ('public', 'f1f1f1f1-0000-4000-8000-000000000001'), ('random', 'f2f2f2f2-0000-4000-8000-000000000002');
insert into public.messages (message, channel_id, user_id) values
  ('Hello World 👋', 1, 'f1f1f1f1-0000-4000-8000-000000000001'),
  ('Perfection is attained, not when there is nothing more to add...', 2, 'f2f2f2f2-0000-4000-8000-000000000002');
