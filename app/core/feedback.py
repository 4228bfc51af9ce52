"""Online accuracy: recent predictions remembered by request id, judged when the truth arrives.

The store is bounded: past ``capacity`` requests the oldest are forgotten, so feedback must come
within the last ``capacity`` requests. Each text of a request can be judged once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from app.core.errors import BrumError


class FeedbackError(BrumError):
    status_code = 422


class UnknownRequest(FeedbackError):
    status_code = 404


class AlreadyJudged(FeedbackError):
    status_code = 409


@dataclass
class Remembered:
    variant: str
    labels: list[str]  # the served labels, one per text
    known_labels: frozenset[str]
    judged: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Judgement:
    request_id: str
    index: int
    variant: str
    predicted: str
    label: str

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


class FeedbackStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._records: OrderedDict[str, Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def remember(
        self, request_id: str, variant: str, labels: list[str], known: frozenset[str]
    ) -> None:
        self._records[request_id] = Remembered(variant, labels, known)
        self._records.move_to_end(request_id)
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def judge(self, request_id: str, label: str, index: int = 0) -> Judgement:
        record = self._records.get(request_id)
        if record is None:
            raise UnknownRequest(
                f"no recent prediction with request id {request_id!r} (the service remembers "
                f"the last {self.capacity} requests)"
            )
        if not 0 <= index < len(record.labels):
            raise FeedbackError(
                f"index {index} is out of range: request {request_id!r} had "
                f"{len(record.labels)} text(s)"
            )
        if label not in record.known_labels:
            raise FeedbackError(f"unknown label {label!r} for variant {record.variant!r}")
        if index in record.judged:
            raise AlreadyJudged(f"text {index} of request {request_id!r} was already judged")
        record.judged.add(index)
        return Judgement(request_id, index, record.variant, record.labels[index], label)
