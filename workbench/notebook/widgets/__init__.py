"""ipywidgets front ends; each is thin glue over a plain Python API."""
