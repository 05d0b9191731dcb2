-- pg_jsonschema 0.3.3 for the local stand-in: json_matches_schema and friends in PL/pgSQL. Supported keywords:
-- type, enum, const, properties, required, additionalProperties, items (schema or tuple), prefixItems,
-- minItems, maxItems, uniqueItems, minLength, maxLength, pattern (PostgreSQL regular expressions),
-- minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minProperties, maxProperties,
-- allOf, anyOf, oneOf, not. "format" is an annotation (not checked); "$ref" raises feature_not_supported.

\echo Use "CREATE EXTENSION pg_jsonschema" to load this file. \quit

create function @extschema@._jsonschema_errors(s jsonb, v jsonb, path text) returns text[]
language plpgsql immutable as $$
declare
  errs text[] := '{}';
  t text := jsonb_typeof(v);
  k text;
  sub jsonb;
  i integer;
  n integer;
  types jsonb;
  ok boolean;
begin
  if jsonb_typeof(s) = 'boolean' then
    return case when s = 'true'::jsonb then '{}'::text[] else array[path || ': false schema'] end;
  end if;
  if jsonb_typeof(s) <> 'object' then
    raise exception 'pg_jsonschema: the schema at % is not an object or a boolean', path using errcode = '22023';
  end if;
  if s ? '$ref' then
    raise exception 'pg_jsonschema.$ref is not available in the local stand-in; inline the referenced schema'
      using errcode = '0A000';
  end if;
  if s ? 'type' then
    types := case when jsonb_typeof(s -> 'type') = 'array' then s -> 'type' else jsonb_build_array(s -> 'type') end;
    ok := false;
    for k in select jsonb_array_elements_text(types) loop
      if k = t or (k = 'integer' and t = 'number' and (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric)) then
        ok := true;
      end if;
    end loop;
    if not ok then
      return array[format('%s: %s is not of type %s', path, v::text, (s -> 'type')::text)];
    end if;
  end if;
  if s ? 'enum' and not exists (select 1 from jsonb_array_elements(s -> 'enum') e where e = v) then
    errs := errs || format('%s: %s is not one of %s', path, v::text, (s -> 'enum')::text);
  end if;
  if s ? 'const' and s -> 'const' <> v then
    errs := errs || format('%s: %s was expected', path, (s -> 'const')::text);
  end if;
  if t = 'object' then
    if s ? 'required' then
      for k in select jsonb_array_elements_text(s -> 'required') loop
        if not v ? k then
          errs := errs || format('%s: "%s" is a required property', path, k);
        end if;
      end loop;
    end if;
    for k, sub in select key, value from jsonb_each(v) loop
      if s -> 'properties' ? k then
        errs := errs || @extschema@._jsonschema_errors(s -> 'properties' -> k, sub, path || '/' || k);
      elsif s ? 'additionalProperties' then
        errs := errs || @extschema@._jsonschema_errors(s -> 'additionalProperties', sub, path || '/' || k);
      end if;
    end loop;
    n := (select count(*) from jsonb_object_keys(v));
    if s ? 'minProperties' and n < (s ->> 'minProperties')::integer then
      errs := errs || format('%s: has less than %s properties', path, s ->> 'minProperties');
    end if;
    if s ? 'maxProperties' and n > (s ->> 'maxProperties')::integer then
      errs := errs || format('%s: has more than %s properties', path, s ->> 'maxProperties');
    end if;
  elsif t = 'array' then
    n := jsonb_array_length(v);
    for i in 0..n - 1 loop
      sub := null;
      if s ? 'prefixItems' and i < jsonb_array_length(s -> 'prefixItems') then
        sub := s -> 'prefixItems' -> i;
      elsif jsonb_typeof(s -> 'items') = 'array' then
        sub := coalesce(s -> 'items' -> i, s -> 'additionalItems');
      elsif s ? 'items' then
        sub := s -> 'items';
      end if;
      if sub is not null then
        errs := errs || @extschema@._jsonschema_errors(sub, v -> i, path || '/' || i);
      end if;
    end loop;
    if s ? 'minItems' and n < (s ->> 'minItems')::integer then
      errs := errs || format('%s: %s has less than %s items', path, v::text, s ->> 'minItems');
    end if;
    if s ? 'maxItems' and n > (s ->> 'maxItems')::integer then
      errs := errs || format('%s: %s has more than %s items', path, v::text, s ->> 'maxItems');
    end if;
    if (s -> 'uniqueItems') = 'true'::jsonb and (select count(distinct e) from jsonb_array_elements(v) e) < n then
      errs := errs || format('%s: %s has non-unique elements', path, v::text);
    end if;
  elsif t = 'string' then
    if s ? 'minLength' and char_length(v #>> '{}') < (s ->> 'minLength')::integer then
      errs := errs || format('%s: %s is shorter than %s characters', path, v::text, s ->> 'minLength');
    end if;
    if s ? 'maxLength' and char_length(v #>> '{}') > (s ->> 'maxLength')::integer then
      errs := errs || format('%s: %s is longer than %s characters', path, v::text, s ->> 'maxLength');
    end if;
    if s ? 'pattern' and not (v #>> '{}') ~ (s ->> 'pattern') then
      errs := errs || format('%s: %s does not match %s', path, v::text, (s -> 'pattern')::text);
    end if;
  elsif t = 'number' then
    if s ? 'minimum' and (v #>> '{}')::numeric < (s ->> 'minimum')::numeric then
      errs := errs || format('%s: %s is less than the minimum of %s', path, v::text, s ->> 'minimum');
    end if;
    if s ? 'maximum' and (v #>> '{}')::numeric > (s ->> 'maximum')::numeric then
      errs := errs || format('%s: %s is greater than the maximum of %s', path, v::text, s ->> 'maximum');
    end if;
    if jsonb_typeof(s -> 'exclusiveMinimum') = 'number' and (v #>> '{}')::numeric <= (s ->> 'exclusiveMinimum')::numeric then
      errs := errs || format('%s: %s is less than or equal to the minimum of %s', path, v::text, s ->> 'exclusiveMinimum');
    end if;
    if jsonb_typeof(s -> 'exclusiveMaximum') = 'number' and (v #>> '{}')::numeric >= (s ->> 'exclusiveMaximum')::numeric then
      errs := errs || format('%s: %s is greater than or equal to the maximum of %s', path, v::text, s ->> 'exclusiveMaximum');
    end if;
    if s ? 'multipleOf' and mod((v #>> '{}')::numeric, (s ->> 'multipleOf')::numeric) <> 0 then
      errs := errs || format('%s: %s is not a multiple of %s', path, v::text, s ->> 'multipleOf');
    end if;
  end if;
  if s ? 'allOf' then
    for sub in select jsonb_array_elements(s -> 'allOf') loop
      errs := errs || @extschema@._jsonschema_errors(sub, v, path);
    end loop;
  end if;
  if s ? 'anyOf' and not exists (select 1 from jsonb_array_elements(s -> 'anyOf') e
                                 where cardinality(@extschema@._jsonschema_errors(e, v, path)) = 0) then
    errs := errs || format('%s: %s is not valid under any of the given schemas', path, v::text);
  end if;
  if s ? 'oneOf' and (select count(*) from jsonb_array_elements(s -> 'oneOf') e
                      where cardinality(@extschema@._jsonschema_errors(e, v, path)) = 0) <> 1 then
    errs := errs || format('%s: %s is not valid under exactly one of the given schemas', path, v::text);
  end if;
  if s ? 'not' and cardinality(@extschema@._jsonschema_errors(s -> 'not', v, path)) = 0 then
    errs := errs || format('%s: %s should not be valid under %s', path, v::text, (s -> 'not')::text);
  end if;
  return errs;
end
$$;

create function @extschema@.jsonschema_validation_errors(schema json, instance json) returns text[]
language sql immutable strict parallel safe as $$
  select @extschema@._jsonschema_errors(schema::jsonb, instance::jsonb, '')
$$;

create function @extschema@.json_matches_schema(schema json, instance json) returns boolean
language sql immutable strict parallel safe as $$
  select cardinality(@extschema@._jsonschema_errors(schema::jsonb, instance::jsonb, '')) = 0
$$;

create function @extschema@.jsonb_matches_schema(schema json, instance jsonb) returns boolean
language sql immutable strict parallel safe as $$
  select cardinality(@extschema@._jsonschema_errors(schema::jsonb, instance, '')) = 0
$$;

create function @extschema@.jsonschema_is_valid(schema json) returns boolean
language plpgsql immutable strict parallel safe as $$
declare
  s jsonb := schema::jsonb;
begin
  if jsonb_typeof(s) = 'boolean' then
    return true;
  end if;
  if jsonb_typeof(s) <> 'object' then
    return false;
  end if;
  if s ? 'type' and exists (
       select 1 from jsonb_array_elements_text(case when jsonb_typeof(s -> 'type') = 'array' then s -> 'type'
                                                    else jsonb_build_array(s -> 'type') end) t
       where t not in ('null', 'boolean', 'object', 'array', 'number', 'string', 'integer')) then
    return false;
  end if;
  return true;
end
$$;
