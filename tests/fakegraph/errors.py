"""The error answers of the fake, worded like Microsoft's services.

Each text says where it comes from: "docs" (Microsoft's documentation), "reported"
(the exact text quoted in public issues or posts about the real service) or "fake" (no
public source was found; the code is Graph's and the message is the fake's own). Clients
should branch on codes, never on messages (Microsoft says messages change), so a "fake"
message is a small risk; the codes and statuses are what persona-sync's tests rely on.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any


class GraphError(Exception):
    """A Graph error answer: HTTP status, error code and message (plus extra headers)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self, client_request_id: str | None = None) -> dict[str, Any]:
        """Graph's JSON error body: {"error": {"code", "message", "innerError"}}."""
        return error_body(self.code, self.message, client_request_id)


def error_body(code: str, message: str, client_request_id: str | None = None) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }


# --- Graph: authentication and authorization --------------------------------------------

# reported (many posts quoting Graph's 401 for a request without a bearer token)
ACCESS_TOKEN_EMPTY = "Access token is empty."
# reported (first sentence of Graph's answer to a token it cannot validate)
ACCESS_TOKEN_INVALID = "Access token validation failure."
# reported
ACCESS_TOKEN_EXPIRED = "Lifetime validation failed, the token is expired."
# fake (the same validation for a token whose nbf is still in the future, worded alike)
ACCESS_TOKEN_NOT_YET_VALID = "Lifetime validation failed, the token is not yet valid."
# reported: an app-only token with no "roles" claim, which is what Entra issues to an app
# whose application permissions were never admin-consented
NO_ROLES = "Either scp or roles claim need to be present in the token."
# docs (JSON batching article, a 403 sub-response) and widely reported
INSUFFICIENT_PRIVILEGES = "Insufficient privileges to complete the operation."


def unauthenticated(message: str) -> GraphError:
    return GraphError(
        401,
        "InvalidAuthenticationToken",
        message,
        {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
    )


def forbidden() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", INSUFFICIENT_PRIVILEGES)


# --- Graph: resources and queries ---------------------------------------------------------


def not_found(resource: str) -> GraphError:
    # reported (Graph's 404 for a directory object id that does not exist, and for
    # GET /users/{id}/manager when no manager is set, with resource "manager")
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{resource}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


def no_segment(segment: str) -> GraphError:
    # reported (OData routing error of Graph for an unknown path segment)
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def method_not_allowed() -> GraphError:
    # docs (JSON batching article, sub-response 4)
    return GraphError(
        405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
    )


def unknown_property(name: str, type_name: str = "microsoft.graph.user") -> GraphError:
    # fake wording in the style of the OData URI parser; code as Graph's OData layer
    return GraphError(
        400, "BadRequest", f"Could not find a property named '{name}' on type '{type_name}'."
    )


def undeclared_property(name: str) -> GraphError:
    # reported (writing an extension_... property that no application declared)
    return GraphError(
        400,
        "Request_BadRequest",
        f"Property '{name}' does not exist as a declared property or extension property.",
    )


def read_only(name: str) -> GraphError:
    # reported (microsoftgraph/microsoft-graph-docs issue 21601)
    return GraphError(
        400, "Request_BadRequest", f"Property '{name}' is read-only and cannot be set."
    )


# reported (microsoftgraph/microsoft-graph-docs issues 7301 and 18038): Graph's answer to
# a write of an on-premises-mastered property of a user synced from Active Directory
SYNCED_USER = (
    "Unable to update the specified properties for on-premises mastered Directory Sync "
    "objects or objects currently undergoing migration."
)


def synced_user() -> GraphError:
    return GraphError(400, "Request_BadRequest", SYNCED_USER)


def invalid_value(name: str, detail: str) -> GraphError:
    # fake wording; code as Graph's directory errors
    return GraphError(400, "Request_BadRequest", f"Invalid value for property '{name}': {detail}")


def bad_json() -> GraphError:
    # reported (Graph's answer to a body that is not JSON)
    return GraphError(
        400,
        "BadRequest",
        "Unable to read JSON request payload. Please ensure Content-Type header is set and "
        "payload is of valid JSON format.",
    )


def bad_page_size(value: str) -> GraphError:
    # reported ($top out of range on directory collections)
    return GraphError(
        400,
        "Request_BadRequest",
        f"Invalid page size specified: '{value}'. Must be between 1 and 999 inclusive.",
    )


def unsupported_filter(prop: str, resource: str = "User") -> GraphError:
    # reported (a $filter on a property or with an operator that needs advanced queries)
    return GraphError(
        400,
        "Request_UnsupportedQuery",
        f"Unsupported or invalid query filter clause specified for property '{prop}' of "
        f"resource '{resource}'.",
    )


def unsupported_query() -> GraphError:
    # reported
    return GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")


def filter_syntax(detail: str) -> GraphError:
    # reported prefix "Invalid filter clause"; the detail is the fake's own
    return GraphError(400, "BadRequest", f"Invalid filter clause: {detail}")


def unsupported_option(option: str) -> GraphError:
    # fake: a query option the fake does not implement fails loudly instead of being
    # silently ignored, so a test never passes against behaviour the fake lacks
    return GraphError(
        400, "BadRequest", f"Query option '{option}' is not supported by the fake Graph server."
    )


def expired_page_token() -> GraphError:
    # reported (Graph's answer to a $skiptoken it does not know)
    return GraphError(
        400,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )


def duplicate_extension(full_name: str) -> GraphError:
    # reported (CLI for Microsoft 365 tests quote Graph's odata error for this case)
    return GraphError(
        400,
        "Request_MultipleObjectsWithSameKeyValue",
        f"An extension property exists with the name {full_name}.",
    )


# docs (code table of "Microsoft Graph error responses") and devblogs.microsoft.com,
# "Duration of change tracking tokens for identity and education resources" (2020): an
# expired delta token of a directory resource gets a BadRequest with this code and text.
SYNC_STATE_NOT_FOUND = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again."
)


def sync_state_not_found() -> GraphError:
    return GraphError(400, "syncStateNotFound", SYNC_STATE_NOT_FOUND)


def resync_required(location: str) -> GraphError:
    # docs (delta query overview, "Synchronization reset": 410 Gone and a Location header
    # with the initial request; code from the code table of the error page)
    return GraphError(
        410,
        "resyncRequired",
        "The delta token is no longer valid, and the app must reset the sync state.",
        {"Location": location},
    )


# --- Graph: faults ---------------------------------------------------------------------------


def too_many_requests(retry_after: int) -> GraphError:
    # code as Graph's throttling answers; message fake
    return GraphError(
        429,
        "TooManyRequests",
        "Too many requests. Please retry after the time given in the Retry-After header.",
        {"Retry-After": str(retry_after)},
    )


def service_unavailable(retry_after: int) -> GraphError:
    # code from the code table of the error page; message fake
    return GraphError(
        503,
        "serviceNotAvailable",
        "The service is temporarily unavailable. Try the request again after a delay.",
        {"Retry-After": str(retry_after)},
    )


def gateway_timeout() -> GraphError:
    # status and meaning from the status table of the error page ("did not receive a
    # timely response from the upstream server"); code and message fake. The fake sends
    # it AFTER applying a write, the case that must be read back before any resend.
    return GraphError(
        504,
        "GatewayTimeout",
        "The gateway did not receive a timely response from the upstream server.",
    )


def bad_batch(message: str) -> GraphError:
    # "Invalid batch payload format." is reported (Graph's answer to an empty batch);
    # the other batch messages are the fake's own
    return GraphError(400, "BadRequest", message)


# --- Identity platform (AADSTS) ---------------------------------------------------------------

# All reported: the texts of login.microsoftonline.com's error_description, quoted in
# Microsoft's error lookup and countless posts; the trailing Trace ID / Correlation ID /
# Timestamp lines are added by identity.token_error.
AADSTS = {
    90002: (
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
        "are signing into the correct cloud. Check with your subscription administrator, this "
        "may happen if there are no active subscriptions for the tenant."
    ),
    700016: (
        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
        "This can happen if the application has not been installed by the administrator of "
        "the tenant or consented to by any user in the tenant. You may have sent your "
        "authentication request to the wrong tenant."
    ),
    7000215: (
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app "
        "'{client_id}'."
    ),
    7000218: (
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'."
    ),
    700027: (
        "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of "
        "key used by client: '{thumbprint}']"
    ),
    700024: "Client assertion is not within its valid time range.",
    700021: "Client assertion application identifier doesn't match 'client_id' parameter.",
    700023: "Client assertion audience claim does not match Realm issuer.",
    1002012: (
        "The provided value for scope {scope} is not valid. Client credential flows must have "
        "a scope value with /.default suffixed to the resource identifier (application ID "
        "URI)."
    ),
    500011: (
        "The resource principal named {resource} was not found in the tenant named {tenant}. "
        "This can happen if the application has not been installed by the administrator of "
        "the tenant or consented to by any user in the tenant. You might have sent your "
        "authentication request to the wrong tenant."
    ),
    70003: "The app requested an unsupported grant type '{grant_type}'.",
    900144: "The request body must contain the following parameter: '{parameter}'.",
}
