"""The optional C accelerators; everything else is declared in pyproject.toml.

persona_sync/directory/_ber.c finds and decodes LDAP search entries in a fifth of the
time of the pure-Python walks it doubles (ldap_stream); persona_sync/_dn.c is the fast
path of persona_sync.dn's DN keys. ``optional=True``: without a C compiler or Python's
headers the build says so and goes on, and the Python code is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "persona_sync.directory._ber",
            ["persona_sync/directory/_ber.c"],
            optional=True,
        ),
        Extension("persona_sync._dn", ["persona_sync/_dn.c"], optional=True),
    ]
)
