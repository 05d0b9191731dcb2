-- Created in the dashboard: Database Webhooks > "task-created" (POST to the notify-assignee Edge Function).
create trigger "task-created" after insert
on "public"."tasks" for each row
execute function "supabase_functions"."http_request"(
  'http://host.docker.internal:54321/functions/v1/notify-assignee',
  'POST',
  '{"Content-type":"application/json","Authorization":"Bearer local-function-key"}',
  '{}',
  '5000'
);
