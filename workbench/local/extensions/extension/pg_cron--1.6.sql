-- pg_cron 1.6 for the local stand-in: the cron schema, cron.job and cron.job_run_details tables and the
-- schedule / unschedule / alter_job functions as pg_cron has them. There is no scheduler: jobs are recorded
-- and NEVER run (each scheduling call says so in a NOTICE), and cron.job_run_details stays empty.

\echo Use "CREATE EXTENSION pg_cron" to load this file. \quit

create schema cron;

create table cron.job (
  jobid bigserial primary key,
  schedule text not null,
  command text not null,
  nodename text not null default 'localhost',
  nodeport integer not null default inet_server_port(),
  database text not null default current_database(),
  username text not null default current_user,
  active boolean not null default true,
  jobname text
);
create unique index jobname_username_uniq on cron.job (jobname, username);

create table cron.job_run_details (
  jobid bigint,
  runid bigserial primary key,
  job_pid integer,
  database text,
  username text,
  command text,
  status text,
  return_message text,
  start_time timestamptz,
  end_time timestamptz
);

alter table cron.job enable row level security;
alter table cron.job_run_details enable row level security;
create policy cron_job_policy on cron.job using (username = current_user);
create policy cron_job_run_details_policy on cron.job_run_details using (username = current_user);

-- pg_cron's schedule syntax: five cron fields, @yearly..@hourly / @reboot, or "N seconds" (1-59).
create function cron._check_schedule(schedule text) returns void
language plpgsql immutable as $$
declare
  field text := '(\*|[0-9a-zA-Z]+(-[0-9a-zA-Z]+)?)(/[0-9]+)?(,(\*|[0-9a-zA-Z]+(-[0-9a-zA-Z]+)?)(/[0-9]+)?)*';
begin
  if schedule is null or not (
       schedule ~ ('^\s*' || field || '(\s+' || field || '){4}\s*$')
       or lower(trim(schedule)) in ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly', '@reboot')
       or trim(schedule) ~ '^([1-9]|[1-5][0-9]) seconds?$') then
    raise exception 'invalid schedule: %', schedule using errcode = '22023',
      hint = 'Use cron syntax (five fields, e.g. ''*/5 * * * *''), @daily and friends, or ''N seconds''.';
  end if;
end
$$;

create function cron._never_runs(jobid bigint) returns void
language plpgsql as $$
begin
  raise notice 'pg_cron: job % recorded in cron.job; the local stand-in never runs scheduled jobs', jobid;
end
$$;

create function cron.schedule_in_database(job_name text, schedule text, command text, database text,
                                          username text default null, active boolean default true)
returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  id bigint;
  who text := coalesce(username, session_user::text);
begin
  perform cron._check_schedule(schedule);
  if username is not null and username <> session_user::text
     and not pg_has_role(session_user, username, 'member') then
    raise exception 'permission denied to schedule a job as %', username using errcode = '42501';
  end if;
  if job_name is not null then
    update cron.job j set schedule = $2, command = $3, database = $4, active = $6
    where j.jobname = job_name and j.username = who
    returning j.jobid into id;
  end if;
  if id is null then
    insert into cron.job (schedule, command, database, username, active, jobname)
    values ($2, $3, $4, who, $6, job_name)
    returning jobid into id;
  end if;
  perform cron._never_runs(id);
  return id;
end
$$;

create function cron.schedule(job_name text, schedule text, command text) returns bigint
language sql as $$ select cron.schedule_in_database(job_name, schedule, command, current_database()) $$;

create function cron.schedule(schedule text, command text) returns bigint
language sql as $$ select cron.schedule_in_database(null, schedule, command, current_database()) $$;

create function cron.unschedule(job_id bigint) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  delete from cron.job j where j.jobid = job_id and j.username = session_user::text;
  if not found then
    raise exception 'could not find valid entry for job %', job_id using errcode = '22023';
  end if;
  return true;
end
$$;

create function cron.unschedule(job_name text) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  delete from cron.job j where j.jobname = job_name and j.username = session_user::text;
  if not found then
    raise exception 'could not find valid entry for job ''%''', job_name using errcode = '22023';
  end if;
  return true;
end
$$;

create function cron.alter_job(job_id bigint, schedule text default null, command text default null,
                               database text default null, username text default null, active boolean default null)
returns void
language plpgsql security definer set search_path = '' as $$
begin
  if schedule is not null then
    perform cron._check_schedule(schedule);
  end if;
  update cron.job j
  set schedule = coalesce($2, j.schedule), command = coalesce($3, j.command), database = coalesce($4, j.database),
      username = coalesce($5, j.username), active = coalesce($6, j.active)
  where j.jobid = job_id and j.username = session_user::text;
  if not found then
    raise exception 'Job % does not exist or you don''t own it', job_id using errcode = '22023';
  end if;
end
$$;

grant usage on schema cron to postgres;
grant select on cron.job, cron.job_run_details to postgres;
grant delete on cron.job_run_details to postgres;
grant execute on all functions in schema cron to postgres;
revoke execute on all functions in schema cron from public;
grant execute on function cron._check_schedule(text), cron._never_runs(bigint) to public;
