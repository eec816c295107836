"""The bundled demo company: a seeded generator (:mod:`.generate`) and its LDIF output."""
