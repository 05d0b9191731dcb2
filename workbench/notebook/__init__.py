"""Jupyter glue: the notebook facade (session), the magics, the sync/async bridge, the widgets. Needs
supabase-workbench[notebook].
"""
