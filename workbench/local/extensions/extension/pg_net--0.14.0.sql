-- pg_net 0.14.0 for the local stand-in: the same tables, types and functions as Supabase's pg_net, but no
-- background worker. Each request is recorded in net.http_request_queue (as pg_net does before its worker
-- sends it) and is never sent: the stand-in makes no outgoing HTTP calls. Tests read the queue to check what
-- a trigger or a job would have sent. No response ever arrives in net._http_response.

\echo Use "CREATE EXTENSION pg_net" to load this file. \quit

create schema if not exists net;

create domain net.http_method as text
check (value ilike 'get' or value ilike 'post' or value ilike 'delete');

create table net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb not null,
  body bytea,
  timeout_milliseconds integer not null
);

create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);
create index on net._http_response (created);

create type net.request_status as enum ('PENDING', 'SUCCESS', 'ERROR');
create type net.http_response as (status_code integer, headers jsonb, body text);
create type net.http_response_result as (status net.request_status, message text, response net.http_response);

-- Percent-encoding of everything but RFC 3986's unreserved characters.
create function net._urlencode_string(string varchar) returns text
language plpgsql immutable strict as $$
declare
  b bytea := convert_to(string, 'UTF8');
  out text := '';
  c integer;
  i integer;
begin
  for i in 0..length(b) - 1 loop
    c := get_byte(b, i);
    if (c between 48 and 57) or (c between 65 and 90) or (c between 97 and 122) or c in (45, 46, 95, 126) then
      out := out || chr(c);
    else
      out := out || '%' || upper(lpad(to_hex(c), 2, '0'));
    end if;
  end loop;
  return out;
end
$$;

create function net._encode_url_with_params_array(url text, params_array text[]) returns text
language sql immutable strict as $$
  select case when cardinality(params_array) = 0 then url
              else url || case when position('?' in url) > 0 then '&' else '?' end || array_to_string(params_array, '&')
         end
$$;

-- Records one request and says, once per session, that nothing is sent.
create function net._record(method text, url text, params jsonb, headers jsonb, body bytea, timeout_milliseconds integer)
returns bigint
language plpgsql volatile as $$
declare
  request_id bigint;
begin
  if url is null or url = '' then
    raise exception 'url must not be null or empty' using errcode = '22023';
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (method,
          net._encode_url_with_params_array(url, (select coalesce(array_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value)), '{}')
                                                  from jsonb_each_text(coalesce(params, '{}'::jsonb)))),
          coalesce(headers, '{}'::jsonb), body, coalesce(timeout_milliseconds, 5000))
  returning id into request_id;
  if coalesce(current_setting('pg_net.local_notice_sent', true), '') <> 'yes' then
    perform set_config('pg_net.local_notice_sent', 'yes', false);
    raise notice 'pg_net: request % recorded in net.http_request_queue; the local stand-in never sends HTTP requests', request_id;
  end if;
  return request_id;
end
$$;

create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language sql volatile parallel safe as $$
  select net._record('GET', url, params, headers, null, timeout_milliseconds)
$$;

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language plpgsql volatile parallel safe as $$
declare
  content_type text;
begin
  select header_value into content_type
  from jsonb_each_text(coalesce(headers, '{}'::jsonb)) r(header_name, header_value)
  where lower(header_name) = 'content-type'
  limit 1;
  if content_type is null then
    headers := coalesce(headers, '{}'::jsonb) || '{"Content-Type": "application/json"}'::jsonb;
  end if;
  if content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"' using errcode = '22023';
  end if;
  if body is null then
    raise exception 'body must not be null' using errcode = '22004';
  end if;
  return net._record('POST', url, params, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds);
end
$$;

create function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000,
  body jsonb default null
) returns bigint
language sql volatile parallel safe as $$
  select net._record('DELETE', url, params, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds)
$$;

create function net._http_collect_response(request_id bigint, async boolean default true)
returns net.http_response_result
language plpgsql volatile parallel safe strict as $$
declare
  rec net._http_response;
begin
  select * into rec from net._http_response where id = request_id;
  if rec is null then
    if not async then
      raise exception 'pg_net.http_collect_response with async => false is not available in the local stand-in; requests are recorded in net.http_request_queue and never sent, so no response arrives'
        using errcode = '0A000';
    end if;
    return ('ERROR', 'request matching request_id not found', null)::net.http_response_result;
  end if;
  return ('SUCCESS', 'ok', (rec.status_code, rec.headers, rec.content)::net.http_response)::net.http_response_result;
end
$$;

create function net.http_collect_response(request_id bigint, async boolean default true)
returns net.http_response_result
language sql volatile parallel safe strict as $$ select net._http_collect_response(request_id, async) $$;

create function net.check_worker_is_up() returns void
language plpgsql as $$
begin
  raise exception 'the pg_net background worker is not available in the local stand-in; requests are recorded in net.http_request_queue and never sent'
    using errcode = '0A000';
end
$$;

create function net.worker_restart() returns boolean
language plpgsql as $$
begin
  raise exception 'the pg_net background worker is not available in the local stand-in; requests are recorded in net.http_request_queue and never sent'
    using errcode = '0A000';
end
$$;

-- As pg_net >= 0.11: usable by everyone (triggers fire as whoever writes the row).
grant usage on schema net to public;
grant all on all tables in schema net to public;
grant all on all sequences in schema net to public;
