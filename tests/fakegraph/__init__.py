"""A local fake of the Microsoft identity platform and Microsoft Graph v1.0 for tests that
drive the real msal and msgraph-sdk over HTTPS. See README.md beside this file."""

from .directory import Application, Write
from .faults import Faults
from .server import AppCredentials, FakeEntra, LoggedRequest

__all__ = ["AppCredentials", "Application", "FakeEntra", "Faults", "LoggedRequest", "Write"]
