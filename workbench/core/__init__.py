"""The core: settings, engines, identities, impersonation, queries, errors, SQL text. No Jupyter, no stand-in: back
ends and notebooks both build on it.
"""
