"""What the jobs share through ``StateTable``, as plain models: a deployment's record, a hold and
an entry of the journal.

Pure: the table's layout and I/O are in :mod:`vpsbackup.aws.state`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from vpsbackup.provider.models import AwareDatetime

HoldKind = Literal["restore", "manual"]

# Lambda's longest run: no invocation of backup on deploy outlives it, whatever its Timeout.
LAMBDA_LONGEST_RUN = timedelta(seconds=900)
# After an invocation ends, how long a POST it sent may still take to land at the provider (the
# claim's lease outlasts its owner by this much, see deploy.claims).
CLAIM_LEASE_MARGIN = timedelta(seconds=60)
# The latest a deployment's backup is made by the delivery that received its request: that
# delivery POSTs within its own invocation, which ends at most LAMBDA_LONGEST_RUN after the request
# was received, and its POST lands within CLAIM_LEASE_MARGIN after that (which also absorbs a
# minute of skew between the provider's clock and Lambda's). A deployment backup the provider
# created later was made by a later delivery (a CI retry, a redelivery after the first attempt
# failed), possibly after the deploy went out: the restore job does not trust it as the state
# before the deploy (restore.point, rule 2).
DEPLOYMENT_BACKUP_LATEST = LAMBDA_LONGEST_RUN + CLAIM_LEASE_MARGIN


class DeploymentRecord(BaseModel):
    """One server's part in one deployment, as the restore job reads it.

    ``received_at`` is when the deployment's request was FIRST received (a redelivery never moves
    it); ``backup_id`` is the deployment's one backup for the server, whichever delivery made it.
    """

    model_config = ConfigDict(frozen=True)

    deployment_id: str
    server_id: int
    received_at: AwareDatetime
    backup_id: int | None = None


class Hold(BaseModel):
    """A backup that prune must keep until ``until``.

    ``kind`` says who placed it: ``restore`` (the restore job, or a manual restore, holds its restore
    point) or ``manual`` (a person, with ``vpsbackup hold add``). A backup can carry one hold of each
    kind; prune honours whichever lasts longer.
    """

    model_config = ConfigDict(frozen=True)

    backup_id: int
    server_id: int
    until: AwareDatetime
    reason: str = ""
    kind: HoldKind = "restore"
    placed_by: str = ""
    placed_at: AwareDatetime | None = None


JournalAct = Literal[
    "backup_created",
    "backup_deleted",
    "deletion_refused",
    "restore_requested",
    "restore_refused",
    "hold_placed",
    "hold_released",
    "cooldown_overridden",
    "restore_recovered",
    "restore_not_recovered",
]
JOURNAL_ACTS: tuple[JournalAct, ...] = get_args(JournalAct)  # every act, in the order above


class JournalEntry(BaseModel):
    """One irreversible act, or one refusal, as the journal keeps it.

    ``by`` is who or what did it, in words: ``schedule``, ``alarm <name>``, ``deployment <id>``, or
    a person's AWS identity (an ARN). ``source`` is the component that wrote the entry
    (``prune-backups``, ``vpsbackup console``, ...); ``run`` identifies the run (a Lambda request
    id, a prune run's start time). ``reasons`` are the decision's reasons as the deciding code gave
    them; ``details`` holds the rest (the policy, the deployment, the API's answer).
    """

    model_config = ConfigDict(frozen=True)

    entry_id: str = Field(min_length=1)
    at: AwareDatetime
    act: JournalAct
    by: str
    source: str
    outcome: str
    server_id: int | None = None
    backup_id: int | None = None
    run: str | None = None
    reasons: tuple[str, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict)
