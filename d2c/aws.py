"""boto3 clients for every part of d2c that talks to AWS, with errors a researcher can act on.

Endpoints follow boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which
is how the tests point d2c at moto's server on loopback. The AWS profile is boto3's too:
``AWS_PROFILE``, which ``--aws-profile NAME`` sets for the command.

Credential problems are bad input (exit 2) with the fix, never a traceback:

* no credentials at all: ``aws configure``;
* ``AWS_PROFILE`` naming a profile ~/.aws/config lacks (botocore ``ProfileNotFound``): the
  profiles that exist, and ``aws configure --profile NAME``;
* an IAM Identity Center (SSO) profile whose token is missing or expired
  (``SSOTokenLoadError``, ``UnauthorizedSSOTokenError``, ``TokenRetrievalError``):
  ``aws sso login --profile NAME``
  (https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-sso.html);
* temporary credentials that expired (``ExpiredToken``, ``ExpiredTokenException``,
  ``RequestExpired``): log in again, or ``aws configure``.

An unreachable network is a failure while working (exit 1).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from d2c.errors import CredentialsExpired, UsageError, WorkError

DEFAULT_REGION = "us-east-1"


EXPIRED_CODES = ("ExpiredToken", "ExpiredTokenException", "RequestExpired")


def _profile() -> str | None:
    return os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")


def _login_hint() -> str:
    profile = _profile()
    return f"run 'aws sso login --profile {profile}'" if profile else "run 'aws sso login' (or 'aws configure')"


def session():
    """boto3's session for the configured profile; a profile that does not exist is bad input."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session()
    except ProfileNotFound:
        raise UsageError(_no_profile_message()) from None


def _no_profile_message() -> str:
    import botocore.session

    profile = _profile()
    try:
        existing = sorted(botocore.session.Session(profile=None).available_profiles)
    except Exception:  # noqa: BLE001 - a broken config file still gets the plain message
        existing = []
    known = f" (known profiles: {', '.join(existing)})" if existing else ""
    return f"AWS profile {profile!r} is not in ~/.aws/config or ~/.aws/credentials{known}; run 'aws configure --profile {profile}' or pass another --aws-profile"


def default_region() -> str:
    """The region boto3 would use (env or ~/.aws/config), else us-east-1."""
    return session().region_name or DEFAULT_REGION


def client(service: str, region: str | None = None, *, attempts: int = 5, **config: Any):
    """A boto3 client for ``service`` in ``region`` with adaptive retries.

    ``attempts`` bounds retries of throttled or failed calls; a quick probe (is the network
    there at all?) passes 1 so that an offline machine answers at once.
    """
    from botocore.config import Config

    retry = Config(retries={"max_attempts": attempts, "mode": "adaptive"}, connect_timeout=10, read_timeout=60, **config)
    current = session()
    return current.client(service, region_name=region or current.region_name or DEFAULT_REGION, config=retry)


def have_credentials() -> bool:
    """True when boto3 can find AWS credentials (env, profile, instance role); UsageError for an SSO
    profile that needs a login."""
    from botocore.exceptions import SSOError, TokenRetrievalError

    try:
        return session().get_credentials() is not None
    except (SSOError, TokenRetrievalError):
        raise CredentialsExpired(f"the AWS SSO login of profile {_profile()!r} is missing or expired; {_login_hint()}", _login_hint()) from None


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn botocore failures during ``action`` into one-line d2c errors.

    Missing credentials are bad input (exit 2); a network or service failure is a failure while
    working (exit 1); both name the action that failed.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectionError as BotoConnectionError,
        EndpointConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        SSOError,
        TokenRetrievalError,
    )

    try:
        yield
    except ProfileNotFound:
        raise UsageError(f"{action}: {_no_profile_message()}") from None
    except (SSOError, TokenRetrievalError):
        raise CredentialsExpired(f"{action}: the AWS SSO login of profile {_profile()!r} is missing or expired; {_login_hint()}", _login_hint()) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise UsageError(
            f"{action}: no AWS credentials found; run 'aws configure' or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except EndpointConnectionError as exc:
        raise WorkError(f"{action}: cannot reach AWS ({exc.kwargs.get('endpoint_url', 'endpoint')}); check the network") from None
    except (BotoConnectionError, HTTPClientError) as exc:
        raise WorkError(f"{action}: the connection to AWS failed ({type(exc).__name__}); check the network and try again") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in EXPIRED_CODES:
            raise CredentialsExpired(f"{action}: your AWS credentials have expired; {_login_hint()}, then run the command again", _login_hint()) from None
        raise WorkError(f"{action}: AWS said {error.get('Code', 'error')}: {error.get('Message', str(exc))}") from None
