"""Notifications people can route: SNS message attributes, the e-mail filter policy, the chatbot
format, and the stack's own CloudWatch alarms, which reach the e-mail address on their own topic.

Read back through an SQS queue subscribed to the topic with raw delivery off (the SNS envelope
carries ``MessageAttributes``), as a subscriber with a filter policy would see them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import AwsEnv, load_event, load_template
from vpsbackup.aws.notifications import (
    CHATBOT_DESCRIPTION_LIMIT,
    CHATBOT_TITLE_LIMIT,
    JOBS,
    SEVERITIES,
    Notifier,
    Routing,
    chatbot_notification,
    sns_subject,
)


def attributes_of(envelope: dict[str, Any]) -> dict[str, str]:
    return {key: value["Value"] for key, value in envelope.get("MessageAttributes", {}).items()}


def subscribe_queue(
    aws: AwsEnv, name: str, *, filter_policy: dict[str, Any] | None = None, topic_arn: str | None = None
) -> str:
    sqs, sns = aws.clients["sqs"], aws.clients["sns"]
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "false"}
    if filter_policy is not None:
        attributes |= {"FilterPolicy": json.dumps(filter_policy), "FilterPolicyScope": "MessageAttributes"}
    sns.subscribe(TopicArn=topic_arn or aws.topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return url


def drain(aws: AwsEnv, url: str) -> list[dict[str, Any]]:
    from devtools.local_env import drain_sns_queue

    return drain_sns_queue(aws.clients["sqs"], url)


# -- Routing: the attributes themselves ----------------------------------------------------------


def test_the_attributes_are_job_outcome_severity_and_server() -> None:
    routing = Routing("restore-on-alarm", "restored", "warning", server_id=12345)
    assert routing.attributes() == {
        "job": "restore-on-alarm",
        "outcome": "restored",
        "severity": "warning",
        "server_id": "12345",
    }
    # A fleet-wide message (a prune run) names no server.
    assert Routing("prune", "valve", "warning").attributes() == {
        "job": "prune",
        "outcome": "valve",
        "severity": "warning",
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"job": "backup", "outcome": "failed", "severity": "error"}, "job"),
        ({"job": "prune", "outcome": "Failed!", "severity": "error"}, "outcome"),
        ({"job": "prune", "outcome": "", "severity": "error"}, "outcome"),
        ({"job": "prune", "outcome": "failed", "severity": "critical"}, "severity"),
        ({"job": "prune", "outcome": "failed", "severity": "error", "server_id": 0}, "server_id"),
        ({"job": "prune", "outcome": "failed", "severity": "error", "server_id": True}, "server_id"),
    ],
)
def test_a_bad_routing_is_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Routing(**kwargs)


@given(
    job=st.sampled_from(JOBS),
    outcome=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    severity=st.sampled_from(SEVERITIES),
    server_id=st.none() | st.integers(min_value=1, max_value=2**40),
)
def test_every_valid_routing_becomes_non_empty_string_attributes(
    job: Any, outcome: str, severity: Any, server_id: int | None
) -> None:
    request = Notifier("arn:aws:sns:eu-west-1:123456789012:t").request(
        "s", "m", routing=Routing(job, outcome, severity, server_id)
    )
    attributes = request["MessageAttributes"]
    assert set(attributes) == {"job", "outcome", "severity"} | ({"server_id"} if server_id else set())
    assert all(a["DataType"] == "String" and a["StringValue"] for a in attributes.values())
    assert attributes["severity"]["StringValue"] == severity


def test_extra_attributes_never_override_the_routing() -> None:
    request = Notifier(None).request(
        "s", "m", routing=Routing("prune", "valve", "warning"), attributes={"severity": "info", "alarm": "a"}
    )
    assert request["MessageAttributes"]["severity"]["StringValue"] == "warning"
    assert request["MessageAttributes"]["alarm"]["StringValue"] == "a"


# -- over SNS -> SQS (moto) -------------------------------------------------------------------------


def test_attributes_arrive_with_the_message(aws: AwsEnv) -> None:
    # Given the topic and a queue subscribed with raw delivery off
    notifier = Notifier(aws.topic_arn)
    # When a notification is published
    assert notifier.publish(
        "Restored server 12345",
        "Server 12345 is being restored.",
        routing=Routing("restore-on-alarm", "restored", "warning", 12345),
    )
    # Then the subscriber sees the text and the attributes it can filter on
    [envelope] = aws.notifications()
    assert envelope["Subject"] == "Restored server 12345"
    assert envelope["Message"] == "Server 12345 is being restored."
    assert attributes_of(envelope) == {
        "job": "restore-on-alarm",
        "outcome": "restored",
        "severity": "warning",
        "server_id": "12345",
    }


def email_filter_policy() -> dict[str, Any]:
    subscription = load_template()["Resources"]["NotificationsEmailSubscription"]["Properties"]
    condition, when_all, otherwise = subscription["FilterPolicy"]["If"]
    assert condition == "EmailGetsAllNotifications"
    assert when_all == {"Ref": "AWS::NoValue"}
    scope = subscription["FilterPolicyScope"]["If"]
    assert scope == ["EmailGetsAllNotifications", {"Ref": "AWS::NoValue"}, "MessageAttributes"]
    return dict(otherwise)


def test_the_template_s_email_filter_lets_only_warnings_and_errors_through(aws: AwsEnv) -> None:
    # Given a subscriber with the template's e-mail filter policy (a queue stands in for the inbox)
    policy = email_filter_policy()
    assert policy == {"severity": ["warning", "error"]}
    inbox = subscribe_queue(aws, "inbox", filter_policy=policy)
    notifier = Notifier(aws.topic_arn)
    # When one message of each severity is published
    for severity in SEVERITIES:
        notifier.publish(f"a {severity}", "text", routing=Routing("prune", "planned", severity))
    # Then the unfiltered subscriber gets all three, the inbox only the warning and the error
    assert sorted(attributes_of(e)["severity"] for e in aws.notifications()) == ["error", "info", "warning"]
    assert sorted(attributes_of(e)["severity"] for e in drain(aws, inbox)) == ["error", "warning"]


# -- the stack's own alarms -------------------------------------------------------------------------

ALARM_TOPIC = {"Ref": "StackAlarmsTopic"}
NOTIFICATIONS_TOPIC = {"Ref": "NotificationsTopic"}


def stack_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_alarm_of_the_stack_notifies_both_topics() -> None:
    # StackAlarmsTopic for subscribers that filter (the e-mail's filter on the severity attribute,
    # which alarm messages never carry, would drop them on NotificationsTopic); NotificationsTopic
    # too, as before StackAlarmsTopic existed, so that chat, paging or ticketing subscribed there
    # without a filter keep getting them after an upgrade of the stack.
    alarms = stack_alarms(load_template())
    assert len(alarms) >= 5
    both = [ALARM_TOPIC, NOTIFICATIONS_TOPIC]
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == both, name
        for actions in ("OKActions", "InsufficientDataActions"):
            assert alarm.get(actions, both) == both, (name, actions)


def test_the_stack_alarms_topic_mails_the_address_unfiltered_under_the_stack_key() -> None:
    template = load_template()
    resources = template["Resources"]
    topic = resources["StackAlarmsTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "NotificationsKey"}
    subscription = resources["StackAlarmsEmailSubscription"]
    # Only when the notifications e-mail filters: unfiltered, it gets the alarms from NotificationsTopic
    assert subscription["Condition"] == "NotificationEmailIsFiltered"
    assert template["Conditions"]["NotificationEmailIsFiltered"] == {
        "And": [{"Condition": "HasNotificationEmail"}, {"Not": [{"Condition": "EmailGetsAllNotifications"}]}]
    }
    assert subscription["Properties"]["TopicArn"] == ALARM_TOPIC
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "NotificationEmail"}
    assert "FilterPolicy" not in subscription["Properties"]
    assert "FilterPolicyScope" not in subscription["Properties"]


def stack_alarms_publish(statement: dict[str, Any], topic: dict[str, str]) -> None:
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Resource"] == topic
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Sub"]
    assert source.endswith(":alarm:${AWS::StackName}-*")


@pytest.mark.parametrize(
    ("policy_id", "topic"),
    # NotificationsTopicPolicy keeps its logical id: an upgrade updates it in place (a new policy
    # resource on the same topic would be reset to the default policy when the old one is deleted).
    [("StackAlarmsTopicPolicy", ALARM_TOPIC), ("NotificationsTopicPolicy", NOTIFICATIONS_TOPIC)],
)
def test_only_this_account_s_alarms_of_this_stack_may_publish_to_the_alarm_topics(
    policy_id: str, topic: dict[str, str]
) -> None:
    template = load_template()
    policy = template["Resources"][policy_id]["Properties"]
    assert policy["Topics"] == [topic]
    [statement] = policy["PolicyDocument"]["Statement"]
    stack_alarms_publish(statement, topic)
    # The stack's alarms are named by CloudFormation after the stack (no AlarmName of their own)
    assert all("AlarmName" not in alarm for alarm in stack_alarms(template).values())
    # One policy resource per topic
    policies = [r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    assert [r for r in policies if topic in r["Properties"]["Topics"]] == [template["Resources"][policy_id]]


def holds(condition: Any, conditions: dict[str, Any], parameters: dict[str, str]) -> bool:
    """A template condition's value for ``parameters`` (the few intrinsics the template's conditions use)."""
    [(function, argument)] = condition.items()
    if function == "Condition":
        return holds(conditions[argument], conditions, parameters)
    if function == "Not":
        return not holds(argument[0], conditions, parameters)
    if function == "And":
        return all(holds(c, conditions, parameters) for c in argument)
    if function == "Equals":
        left, right = (parameters[a["Ref"]] if isinstance(a, dict) else a for a in argument)
        return bool(left == right)
    raise AssertionError(f"unexpected condition function {function}")


def alarm_message() -> str:
    """A CloudWatch alarm's SNS message as alarm actions publish it: the alarm JSON, no attributes."""
    [record] = load_event("alarm-sns.json")["Records"]
    message: str = record["Sns"]["Message"]
    json.loads(message)
    return message


def resolve(value: Any, conditions: dict[str, Any], parameters: dict[str, str]) -> Any:
    """``value`` with its ``If`` resolved (None for ``AWS::NoValue``)."""
    if isinstance(value, dict) and "If" in value:
        name, then, otherwise = value["If"]
        value = then if holds({"Condition": name}, conditions, parameters) else otherwise
    return None if value == {"Ref": "AWS::NoValue"} else value


@pytest.mark.parametrize("severities", ["warning-and-error", "all"])
def test_a_stack_alarm_reaches_the_inbox_once_and_the_unfiltered_subscribers_of_both_topics(
    aws: AwsEnv, severities: str
) -> None:
    # Given both topics, the template's e-mail subscriptions for this NotificationEmailSeverities
    # (one queue stands in for the inbox, behind each subscription the template would make), and a
    # chat or paging endpoint subscribed to NotificationsTopic without a filter before the upgrade
    template = load_template()
    conditions = template["Conditions"]
    parameters = {"NotificationEmail": "oncall@example.com", "NotificationEmailSeverities": severities}
    sns, sqs = aws.clients["sns"], aws.clients["sqs"]
    topics = {
        "NotificationsTopic": aws.topic_arn,
        "StackAlarmsTopic": sns.create_topic(Name="stack-alarms")["TopicArn"],
    }
    inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mailed_by = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::SNS::Subscription" or resource["Properties"]["Protocol"] != "email":
            continue
        if "Condition" in resource and not holds({"Condition": resource["Condition"]}, conditions, parameters):
            continue
        properties = resource["Properties"]
        attributes = {"RawMessageDelivery": "false"}
        if (policy := resolve(properties.get("FilterPolicy"), conditions, parameters)) is not None:
            scope = resolve(properties["FilterPolicyScope"], conditions, parameters)
            attributes |= {"FilterPolicy": json.dumps(policy), "FilterPolicyScope": scope}
        topic = topics[properties["TopicArn"]["Ref"]]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes=attributes)
        mailed_by.append(logical_id)
    assert mailed_by
    pager = subscribe_queue(aws, "pager")
    # When a stack alarm fires (CloudWatch publishes the alarm JSON with no message attributes to
    # each topic of its actions)
    [alarm] = [a for k, a in stack_alarms(template).items() if k == "PruneBackupsErrorsAlarm"]
    for action in alarm["AlarmActions"]:
        sns.publish(
            TopicArn=topics[action["Ref"]],
            Subject='ALARM: "vpsbackup-PruneBackupsErrorsAlarm-1" in EU',
            Message=alarm_message(),
        )
    # Then the inbox gets it exactly once, and so does the unfiltered subscriber of NotificationsTopic
    [envelope] = drain(aws, inbox)
    assert json.loads(envelope["Message"])["NewStateValue"] == "ALARM"
    assert attributes_of(envelope) == {}
    [paged] = drain(aws, pager)
    assert json.loads(paged["Message"])["NewStateValue"] == "ALARM"


def test_a_long_subject_is_cut_to_printable_ascii_below_the_sns_limit() -> None:
    subject = sns_subject("Restore skipped: alarm " + "é" * 5 + "x" * 120 + " names no server")
    assert len(subject) < 100
    assert subject.endswith("...")
    assert all(32 <= ord(ch) < 127 for ch in subject)
    assert sns_subject("x" * 99) == "x" * 99


def test_the_email_filter_can_be_widened_by_a_parameter() -> None:
    template = load_template()
    parameter = template["Parameters"]["NotificationEmailSeverities"]
    assert parameter["Default"] == "warning-and-error"
    assert parameter["AllowedValues"] == ["warning-and-error", "all"]
    assert template["Conditions"]["EmailGetsAllNotifications"] == {
        "Equals": [{"Ref": "NotificationEmailSeverities"}, "all"]
    }


# -- NOTIFY_FORMAT=chatbot -----------------------------------------------------------------------


def test_the_chatbot_document_has_aws_chatbot_s_shape() -> None:
    document = chatbot_notification(
        "Restore FAILED for server 12345: HTTP 409",
        "Server 12345 was NOT restored.\n\nWhat to do: restore by hand.",
        Routing("restore-on-alarm", "failed", "error", 12345),
    )
    assert document["version"] == "1.0"
    assert document["source"] == "custom"
    content = document["content"]
    assert content["textType"] == "client-markdown"
    assert content["title"] == "[ERROR] Restore FAILED for server 12345: HTTP 409"
    assert content["description"] == "Server 12345 was NOT restored.\n\nWhat to do: restore by hand."
    assert content["keywords"] == ["restore-on-alarm", "failed", "error", "server 12345"]
    assert document["metadata"]["eventType"] == "restore-on-alarm:failed"
    assert document["metadata"]["threadId"] == "restore-on-alarm-12345"
    assert document["metadata"]["additionalContext"] == {
        "job": "restore-on-alarm",
        "outcome": "failed",
        "severity": "error",
        "server_id": "12345",
    }
    assert all(isinstance(v, str) for v in document["metadata"]["additionalContext"].values())


def test_a_long_chatbot_message_is_shortened_and_says_so() -> None:
    document = chatbot_notification("t" * 400, "x" * 20_000, Routing("prune", "valve", "warning"))
    assert len(document["content"]["title"]) <= CHATBOT_TITLE_LIMIT
    assert len(document["content"]["description"]) <= CHATBOT_DESCRIPTION_LIMIT
    assert document["content"]["description"].endswith("(shortened; the whole text is in the function's log)")
    assert "threadId" not in document["metadata"]  # no server: no per-server thread


def test_chatbot_format_over_sns_gives_chat_the_document_and_email_the_text(aws: AwsEnv) -> None:
    # Given NOTIFY_FORMAT=chatbot
    notifier = Notifier(aws.topic_arn, notify_format="chatbot")
    routing = Routing("prune", "deletions_failed", "error")
    # When a notification is published
    assert notifier.publish(
        "VPS backup prune: 2 deletions failed", "Two backups could not be deleted.", routing=routing
    )
    # Then a subscriber other than e-mail (chat, a queue) gets the Chatbot document, with the attributes
    [envelope] = aws.notifications()
    document = json.loads(envelope["Message"])
    assert document["version"] == "1.0"
    assert document["source"] == "custom"
    assert document["content"]["description"] == "Two backups could not be deleted."
    assert attributes_of(envelope) == {"job": "prune", "outcome": "deletions_failed", "severity": "error"}
    # And the e-mail protocol's message is the plain text
    request = notifier.request(
        "VPS backup prune: 2 deletions failed", "Two backups could not be deleted.", routing=routing
    )
    assert request["MessageStructure"] == "json"
    assert json.loads(request["Message"])["email"] == "Two backups could not be deleted."


def test_text_format_sends_the_words_as_written() -> None:
    request = Notifier("arn:aws:sns:eu-west-1:123456789012:t").request(
        "subject", "words", routing=Routing("restore-on-alarm", "skipped", "warning", 7)
    )
    assert request["Message"] == "words"
    assert "MessageStructure" not in request


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="notify_format"):
        Notifier(None, notify_format="slack")  # type: ignore[arg-type]


def test_a_publish_failure_is_reported_not_raised() -> None:
    class Broken:
        def publish(self, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("SNS is down")

    notifier = Notifier("arn:aws:sns:eu-west-1:123456789012:t", notify_format="chatbot", sns_client=Broken())
    assert notifier.publish("s", "m", routing=Routing("prune", "valve", "warning")) is False
