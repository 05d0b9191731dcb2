"""Teaching aids for the notebooks: a load generator, ORM loading patterns, the demo models."""
