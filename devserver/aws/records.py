"""The record of each live function's original configuration, kept in AWS (SSM Parameter Store, as a
SecureString: an environment may hold secrets) so that `aws down` can put it back from any machine,
even after the one that ran `aws up` crashed. One parameter per function: a function is live for one
session at a time.

A record is written before the function is changed, and deleted only after it was put back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from devserver.aws.live_config import FunctionState, LiveChange

PREFIX = "/livelambda/live/"
STANDARD_TIER_BYTES = 4096


@dataclass(frozen=True)
class LiveRecord:
    function: str  # the deployed function's name
    function_arn: str
    role_arn: str
    session: str
    namespace: str
    app: str
    stage: str
    owner: str  # the caller ARN that ran `aws up`
    host: str  # the machine it ran on
    since: float  # epoch seconds
    original: FunctionState
    change: LiveChange

    @property
    def live(self) -> FunctionState:
        return self.change.apply(self.original)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "function": self.function,
                "function_arn": self.function_arn,
                "role_arn": self.role_arn,
                "session": self.session,
                "namespace": self.namespace,
                "app": self.app,
                "stage": self.stage,
                "owner": self.owner,
                "host": self.host,
                "since": self.since,
                "original": self.original.to_json(),
                "change": self.change.to_json(),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LiveRecord:
        data = json.loads(text)
        return cls(
            function=data["function"],
            function_arn=data["function_arn"],
            role_arn=data.get("role_arn", ""),
            session=data["session"],
            namespace=data["namespace"],
            app=data.get("app", ""),
            stage=data.get("stage", ""),
            owner=data.get("owner", ""),
            host=data.get("host", ""),
            since=float(data.get("since", 0)),
            original=FunctionState.from_json(data["original"]),
            change=LiveChange.from_json(data["change"]),
        )


class RecordStore:
    def __init__(self, ssm: Any) -> None:
        self.ssm = ssm

    @staticmethod
    def name(function: str) -> str:
        return PREFIX + function

    def put(self, record: LiveRecord) -> None:
        text = record.to_json()
        self.ssm.put_parameter(
            Name=self.name(record.function),
            Description=f"livelambda: {record.function}'s original configuration, live for {record.session}",
            Value=text,
            Type="SecureString",
            Overwrite=True,
            Tier="Standard" if len(text.encode()) <= STANDARD_TIER_BYTES else "Advanced",
        )

    def get(self, function: str) -> LiveRecord | None:
        try:
            answer = self.ssm.get_parameter(Name=self.name(function), WithDecryption=True)
        except self.ssm.exceptions.ParameterNotFound:
            return None
        return LiveRecord.from_json(answer["Parameter"]["Value"])

    def all(self) -> Iterator[LiveRecord]:
        pages = self.ssm.get_paginator("get_parameters_by_path").paginate(
            Path=PREFIX.rstrip("/"), Recursive=True, WithDecryption=True
        )
        for page in pages:
            for parameter in page.get("Parameters", ()):
                yield LiveRecord.from_json(parameter["Value"])

    def delete(self, function: str) -> bool:
        try:
            self.ssm.delete_parameter(Name=self.name(function))
        except self.ssm.exceptions.ParameterNotFound:
            return False
        return True
