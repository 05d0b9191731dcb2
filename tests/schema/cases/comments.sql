-- Comments on tables, columns and views: quotes, newlines, non-ASCII.
create table notes (
  id integer primary key,
  body text
);
comment on table notes is 'Notes people "write": it''s free text.';
comment on column notes.body is E'The body.\nSecond line — with a dash.';
create view recent_notes as select id, body from notes where id > 10;
comment on view recent_notes is 'Notes after the tenth.';
