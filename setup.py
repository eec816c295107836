"""The optional C accelerator; everything else is declared in pyproject.toml.

persona_sync/directory/_ber.c decodes LDAP search entries in a fifth of the time of
the pure-Python walk it doubles (ldap_stream). ``optional=True``: without a C compiler
or Python's headers the build says so and goes on, and the Python walk is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "persona_sync.directory._ber",
            ["persona_sync/directory/_ber.c"],
            optional=True,
        )
    ]
)
