"""boto3 clients for every part of d2c that talks to AWS, with errors a researcher can act on.

Endpoints follow boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which
is how the tests point d2c at moto's server on loopback. Missing credentials and an unreachable
network become one-line errors instead of botocore tracebacks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from d2c.errors import UsageError, WorkError

DEFAULT_REGION = "us-east-1"


def default_region() -> str:
    """The region boto3 would use (env or ~/.aws/config), else us-east-1."""
    import boto3

    return boto3.session.Session().region_name or DEFAULT_REGION


def client(service: str, region: str | None = None, *, attempts: int = 5, **config: Any):
    """A boto3 client for ``service`` in ``region`` with adaptive retries.

    ``attempts`` bounds retries of throttled or failed calls; a quick probe (is the network
    there at all?) passes 1 so that an offline machine answers at once.
    """
    import boto3
    from botocore.config import Config

    retry = Config(retries={"max_attempts": attempts, "mode": "adaptive"}, connect_timeout=10, read_timeout=60, **config)
    session = boto3.session.Session()
    return session.client(service, region_name=region or session.region_name or DEFAULT_REGION, config=retry)


def have_credentials() -> bool:
    """True when boto3 can find AWS credentials (env, profile, instance role)."""
    import boto3

    return boto3.session.Session().get_credentials() is not None


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
    )

    try:
        yield
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
        raise WorkError(f"{action}: AWS said {error.get('Code', 'error')}: {error.get('Message', str(exc))}") from None
