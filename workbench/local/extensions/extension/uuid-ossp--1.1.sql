-- uuid-ossp 1.1 for the local stand-in, in SQL and PL/pgSQL (the PostgreSQL build the stand-in ships has no
-- uuid-ossp). v3 and v5 are exact (RFC 4122 name-based); v4 is PostgreSQL's strong-random gen_random_uuid;
-- v1 and v1mc are time-based with a random multicast node (the stand-in does not read the machine's MAC
-- address, so v1 behaves as v1mc does).

\echo Use "CREATE EXTENSION ""uuid-ossp""" to load this file. \quit

create function @extschema@.uuid_nil() returns uuid
language sql immutable strict parallel safe as $$ select '00000000-0000-0000-0000-000000000000'::uuid $$;
create function @extschema@.uuid_ns_dns() returns uuid
language sql immutable strict parallel safe as $$ select '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid $$;
create function @extschema@.uuid_ns_url() returns uuid
language sql immutable strict parallel safe as $$ select '6ba7b811-9dad-11d1-80b4-00c04fd430c8'::uuid $$;
create function @extschema@.uuid_ns_oid() returns uuid
language sql immutable strict parallel safe as $$ select '6ba7b812-9dad-11d1-80b4-00c04fd430c8'::uuid $$;
create function @extschema@.uuid_ns_x500() returns uuid
language sql immutable strict parallel safe as $$ select '6ba7b814-9dad-11d1-80b4-00c04fd430c8'::uuid $$;

create function @extschema@.uuid_generate_v4() returns uuid
language sql volatile strict parallel safe as $$ select pg_catalog.gen_random_uuid() $$;

-- Set the version nibble and the RFC 4122 variant bits of 16 bytes.
create function @extschema@._uuid_stamp(b bytea, version integer) returns uuid
language sql immutable strict parallel safe as $$
  select encode(set_byte(set_byte(substring(b from 1 for 16), 6, (get_byte(b, 6) & 15) | (version << 4)),
                         8, (get_byte(b, 8) & 63) | 128), 'hex')::uuid
$$;

-- SHA-1 (FIPS 180-4), 32-bit words held in bigint.
create function @extschema@._uuid_sha1(data bytea) returns bytea
language plpgsql immutable strict parallel safe as $$
declare
  m constant bigint := 4294967295;
  h0 bigint := 1732584193;
  h1 bigint := 4023233417;
  h2 bigint := 2562383102;
  h3 bigint := 271733878;
  h4 bigint := 3285377520;
  w bigint[] := array_fill(0::bigint, array[80]);
  msg bytea;
  a bigint; b bigint; c bigint; d bigint; e bigint; f bigint; k bigint; t bigint;
  off integer;
  i integer;
begin
  msg := data || '\x80'::bytea
         || decode(repeat('00', ((55 - length(data)) % 64 + 64) % 64), 'hex')
         || decode(lpad(to_hex(length(data)::bigint * 8), 16, '0'), 'hex');
  off := 0;
  while off < length(msg) loop
    for i in 0..15 loop
      w[i + 1] := (get_byte(msg, off + 4 * i)::bigint << 24) | (get_byte(msg, off + 4 * i + 1) << 16)
                  | (get_byte(msg, off + 4 * i + 2) << 8) | get_byte(msg, off + 4 * i + 3);
    end loop;
    for i in 17..80 loop
      t := w[i - 3] # w[i - 8] # w[i - 14] # w[i - 16];
      w[i] := ((t << 1) | (t >> 31)) & m;
    end loop;
    a := h0; b := h1; c := h2; d := h3; e := h4;
    for i in 1..80 loop
      if i <= 20 then
        f := (b & c) | ((~b) & m & d); k := 1518500249;
      elsif i <= 40 then
        f := b # c # d; k := 1859775393;
      elsif i <= 60 then
        f := (b & c) | (b & d) | (c & d); k := 2400959708;
      else
        f := b # c # d; k := 3395469782;
      end if;
      t := ((((a << 5) | (a >> 27)) & m) + f + e + k + w[i]) & m;
      e := d; d := c; c := ((b << 30) | (b >> 2)) & m; b := a; a := t;
    end loop;
    h0 := (h0 + a) & m; h1 := (h1 + b) & m; h2 := (h2 + c) & m; h3 := (h3 + d) & m; h4 := (h4 + e) & m;
    off := off + 64;
  end loop;
  return decode(lpad(to_hex(h0), 8, '0') || lpad(to_hex(h1), 8, '0') || lpad(to_hex(h2), 8, '0')
                || lpad(to_hex(h3), 8, '0') || lpad(to_hex(h4), 8, '0'), 'hex');
end
$$;

create function @extschema@.uuid_generate_v3(namespace uuid, name text) returns uuid
language sql immutable strict parallel safe as $$
  select @extschema@._uuid_stamp(decode(pg_catalog.md5(uuid_send(namespace) || convert_to(name, 'UTF8')), 'hex'), 3)
$$;

create function @extschema@.uuid_generate_v5(namespace uuid, name text) returns uuid
language sql immutable strict parallel safe as $$
  select @extschema@._uuid_stamp(@extschema@._uuid_sha1(uuid_send(namespace) || convert_to(name, 'UTF8')), 5)
$$;

-- Time-based: 100 ns intervals since 1582-10-15, a random 14-bit clock sequence, a random node with the
-- multicast bit set (RFC 4122 4.5).
create function @extschema@.uuid_generate_v1mc() returns uuid
language plpgsql volatile strict parallel safe as $$
declare
  ts bigint := (extract(epoch from clock_timestamp()) * 10000000)::bigint + 122192928000000000;
  rnd bytea := substring(uuid_send(pg_catalog.gen_random_uuid()) from 9 for 8);
begin
  return (lpad(to_hex(ts & 4294967295), 8, '0') || '-' || lpad(to_hex((ts >> 32) & 65535), 4, '0') || '-'
          || lpad(to_hex(((ts >> 48) & 4095) | 4096), 4, '0') || '-'
          || lpad(to_hex(((get_byte(rnd, 0) & 63) | 128) << 8 | get_byte(rnd, 1)), 4, '0') || '-'
          || lpad(to_hex(get_byte(rnd, 2) | 1), 2, '0') || encode(substring(rnd from 4 for 5), 'hex'))::uuid;
end
$$;

create function @extschema@.uuid_generate_v1() returns uuid
language sql volatile strict parallel safe as $$ select @extschema@.uuid_generate_v1mc() $$;
