-- A pure association table (two FKs covering every column) becomes `secondary=`; one with extra
-- columns stays a class with two many-to-one relationships.
create table students (id bigint generated always as identity primary key, name text not null);
create table courses (id bigint generated always as identity primary key, title text not null);
create table enrollments (
  student_id bigint not null references students (id) on delete cascade,
  course_id bigint not null references courses (id) on delete cascade,
  primary key (student_id, course_id)
);
create table grades (
  student_id bigint not null references students (id),
  course_id bigint not null references courses (id),
  grade text not null,
  primary key (student_id, course_id)
);
