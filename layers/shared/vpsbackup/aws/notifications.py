"""Human notifications on the SNS topic (``NOTIFY_TOPIC_ARN``).

Messages are written for a person on call: what happened, to which server, and what to do. A
failure to publish is logged and reported to the caller (False), never raised: the action the
notification describes has already happened or not, and must not be hidden by it.
"""

from __future__ import annotations

from typing import Any

import boto3

from vpsbackup.observability import logger

_SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters, no line breaks


def sns_subject(text: str) -> str:
    """A subject SNS accepts: one line, printable ASCII, at most 100 characters."""
    line = " ".join(text.split())
    ascii_only = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in line)
    return ascii_only[: _SUBJECT_LIMIT - 1] + "…" if len(ascii_only) > _SUBJECT_LIMIT else ascii_only


class Notifier:
    """Publishes to one topic; with no topic configured it only logs."""

    def __init__(self, topic_arn: str | None, *, sns_client: Any = None) -> None:
        self.topic_arn = topic_arn
        self._sns = sns_client

    def _client(self) -> Any:
        if self._sns is None:
            self._sns = boto3.client("sns")
        return self._sns

    def publish(self, subject: str, message: str, *, attributes: dict[str, str] | None = None) -> bool:
        """Publish ``message``; True if SNS accepted it (or there is no topic and it was logged)."""
        subject = sns_subject(subject)
        if not self.topic_arn:
            logger.info("notification (no NOTIFY_TOPIC_ARN set, logged only)", extra={"subject": subject})
            return True
        kwargs: dict[str, Any] = {"TopicArn": self.topic_arn, "Subject": subject, "Message": message}
        if attributes:
            kwargs["MessageAttributes"] = {
                key: {"DataType": "String", "StringValue": value} for key, value in attributes.items() if value
            }
        try:
            response = self._client().publish(**kwargs)
        except Exception:  # any AWS error: log it, never hide the outcome being notified
            logger.exception("could not publish the notification", extra={"subject": subject})
            return False
        logger.info("notification published", extra={"subject": subject, "message_id": response.get("MessageId")})
        return True
