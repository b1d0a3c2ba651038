"""Who may open which study, and how: the one copy of the access rules (see `rules`)."""
