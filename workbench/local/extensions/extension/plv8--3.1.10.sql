-- plv8 3.1.10 for the local stand-in. The stand-in has no JavaScript engine, and a procedural language needs a
-- call handler written in C, so the language exists (CREATE EXTENSION plv8 succeeds, migrations that only enable
-- it load) but its validator refuses every plv8 function at CREATE FUNCTION time with one clear error, also when
-- check_function_bodies is off. The handler is PL/pgSQL's, never reached: no plv8 function can exist.

\echo Use "CREATE EXTENSION plv8" to load this file. \quit

create function pg_catalog.plv8_call_handler() returns language_handler
language c as '$libdir/plpgsql', 'plpgsql_call_handler';

create function pg_catalog.plv8_call_validator(oid) returns void
language plpgsql as $$
begin
  raise exception 'plv8 functions cannot be created in the local stand-in (function %); it has no JavaScript engine', $1::regprocedure
    using errcode = '0A000',
          hint = 'Write the function in plpgsql or sql, or test it against a real Supabase project.';
end
$$;

create trusted language plv8 handler pg_catalog.plv8_call_handler validator pg_catalog.plv8_call_validator;
comment on language plv8 is 'PL/JavaScript (v8) trusted procedural language (local stand-in: functions cannot be created)';
