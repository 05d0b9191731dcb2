-- pgaudit 1.7 for the local stand-in: the extension exists so migrations that enable it load, but nothing is
-- audited (pgaudit is C, loaded at server start). pgaudit.* settings are accepted as custom settings only.

\echo Use "CREATE EXTENSION pgaudit" to load this file. \quit
