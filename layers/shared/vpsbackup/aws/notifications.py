"""Human notifications on the SNS topic (``NOTIFY_TOPIC_ARN``), routable by their attributes.

Messages are written for a person on call: what happened, to which server, and what to do. Every
message carries SNS message attributes (:class:`Routing`) that subscribers filter on: ``job``,
``outcome``, ``severity`` and, where one server is concerned, ``server_id`` (docs/configuration.md).

``NOTIFY_FORMAT`` says how the words travel. ``text`` (default): the message as written.
``chatbot``: the AWS Chatbot (Amazon Q Developer in chat applications) custom-notification JSON,
so Slack and Teams channels show a title and a readable body; the e-mail subscribers of the same
topic still get the plain text (one publish with a message per protocol).

A failure to publish is logged and reported to the caller (False), never raised: the action the
notification describes has already happened or not, and must not be hidden by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import boto3

from vpsbackup.observability import logger
from vpsbackup.settings import NotifyFormat

_SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters, no line breaks
# Conservative bounds for a chat message; the whole text stays in the function's log.
CHATBOT_TITLE_LIMIT = 250
CHATBOT_DESCRIPTION_LIMIT = 8000

JobName = Literal["backup-on-deploy", "prune", "restore-on-alarm"]
Severity = Literal["info", "warning", "error"]
JOBS: tuple[JobName, ...] = get_args(JobName)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TITLE_MARK: Mapping[Severity, str] = {"info": "", "warning": "[warning] ", "error": "[ERROR] "}


def sns_subject(text: str) -> str:
    """A subject SNS accepts: one line, printable ASCII, at most 100 characters."""
    line = " ".join(text.split())
    ascii_only = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in line)
    # Cut with "..." (not "…", which is not ASCII and which SNS rejects), below the limit.
    return ascii_only[: _SUBJECT_LIMIT - 4] + "..." if len(ascii_only) >= _SUBJECT_LIMIT else ascii_only


@dataclass(frozen=True)
class Routing:
    """What a notification is about, as SNS message attributes: subscribers route on these.

    ``outcome`` is a short lower-case word (``restored``, ``skipped``, ``failed``, ``planned``,
    ``valve``, ``deletions_failed`` ...); ``server_id`` is set when one server is concerned.
    """

    job: JobName
    outcome: str
    severity: Severity
    server_id: int | None = None

    def __post_init__(self) -> None:
        if self.job not in JOBS:
            raise ValueError(f"job must be one of {', '.join(JOBS)}, got {self.job!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        if not isinstance(self.outcome, str) or not _OUTCOME.fullmatch(self.outcome):
            raise ValueError(f"outcome must be a short lower-case word such as 'restored', got {self.outcome!r}")
        if self.server_id is not None and (isinstance(self.server_id, bool) or self.server_id <= 0):
            raise ValueError(f"server_id must be a positive integer, got {self.server_id!r}")

    def attributes(self) -> dict[str, str]:
        """The attributes' values (``server_id`` only when set)."""
        values = {"job": self.job, "outcome": self.outcome, "severity": self.severity}
        if self.server_id is not None:
            values["server_id"] = str(self.server_id)
        return values


def message_attributes(values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """SNS ``MessageAttributes`` of string values; empty values are left out (SNS refuses them)."""
    return {key: {"DataType": "String", "StringValue": value} for key, value in values.items() if value}


def chatbot_notification(subject: str, message: str, routing: Routing) -> dict[str, Any]:
    """The AWS Chatbot custom-notification document for one notification.

    ``version`` ``1.0`` and ``source`` ``custom`` are what Chatbot requires; ``content.title`` is
    the subject (marked with the severity when it is not ``info``), ``content.description`` the
    whole message, ``keywords`` the routing values, and ``metadata.additionalContext`` the
    attributes themselves, so a channel shows what a filter policy matched on.
    """
    title = _TITLE_MARK[routing.severity] + " ".join(subject.split())
    if len(title) > CHATBOT_TITLE_LIMIT:
        title = title[: CHATBOT_TITLE_LIMIT - 1] + "…"
    description = message
    if len(description) > CHATBOT_DESCRIPTION_LIMIT:
        cut = "\n… (shortened; the whole text is in the function's log)"
        description = description[: CHATBOT_DESCRIPTION_LIMIT - len(cut)] + cut
    attributes = routing.attributes()
    keywords = [routing.job, routing.outcome, routing.severity]
    if routing.server_id is not None:
        keywords.append(f"server {routing.server_id}")
    metadata: dict[str, Any] = {
        "summary": title,
        "eventType": f"{routing.job}:{routing.outcome}",
        "additionalContext": attributes,
    }
    if routing.server_id is not None:
        # One thread per job and server: a restore's follow-ups stay together in the channel.
        metadata["threadId"] = f"{routing.job}-{routing.server_id}"
        metadata["relatedResources"] = [f"server {routing.server_id}"]
    return {
        "version": "1.0",
        "source": "custom",
        "content": {"textType": "client-markdown", "title": title, "description": description, "keywords": keywords},
        "metadata": metadata,
    }


class Notifier:
    """Publishes to one topic in one format; with no topic configured it only logs."""

    def __init__(self, topic_arn: str | None, *, notify_format: NotifyFormat = "text", sns_client: Any = None) -> None:
        if notify_format not in get_args(NotifyFormat):
            raise ValueError(f"notify_format must be text or chatbot, got {notify_format!r}")
        self.topic_arn = topic_arn
        self.notify_format = notify_format
        self._sns = sns_client

    def _client(self) -> Any:
        if self._sns is None:
            self._sns = boto3.client("sns")
        return self._sns

    def request(
        self,
        subject: str,
        message: str,
        *,
        routing: Routing,
        attributes: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The ``sns.publish`` arguments for one notification (without the topic): pure.

        ``routing`` gives the attributes subscribers filter on; ``attributes`` adds others (e.g.
        ``alarm``), never overriding the routing ones.
        """
        subject = sns_subject(subject)
        values = {**(attributes or {}), **routing.attributes()}
        kwargs: dict[str, Any] = {"Subject": subject, "Message": message}
        if self.notify_format == "chatbot":
            document = json.dumps(chatbot_notification(subject, message, routing), ensure_ascii=False)
            # One message per protocol: chat channels (https) and queues get the document, e-mail the text.
            kwargs["Message"] = json.dumps({"default": document, "email": message}, ensure_ascii=False)
            kwargs["MessageStructure"] = "json"
        kwargs["MessageAttributes"] = message_attributes(values)
        return kwargs

    def publish(
        self,
        subject: str,
        message: str,
        *,
        routing: Routing,
        attributes: Mapping[str, str] | None = None,
    ) -> bool:
        """Publish ``message``; True if SNS accepted it (or there is no topic and it was logged)."""
        kwargs = self.request(subject, message, routing=routing, attributes=attributes)
        log = {"subject": kwargs["Subject"], **routing.attributes()}
        if not self.topic_arn:
            logger.info("notification (no NOTIFY_TOPIC_ARN set, logged only)", extra=log)
            return True
        try:
            response = self._client().publish(TopicArn=self.topic_arn, **kwargs)
        except Exception:  # any AWS error: log it, never hide the outcome being notified
            logger.exception("could not publish the notification", extra=log)
            return False
        logger.info("notification published", extra={**log, "message_id": response.get("MessageId")})
        return True
