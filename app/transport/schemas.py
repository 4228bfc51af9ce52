"""Request and response bodies of the /v1 API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

Text = Annotated[StrictStr, Field(description="text to classify; not empty or only whitespace")]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "what is my checking balance"},
                {"texts": ["book a table for two", "i love you"], "top_k": 3},
            ]
        }
    )

    text: Text | None = None
    texts: list[Text] | None = Field(None, min_length=1)
    top_k: int | None = Field(None, ge=1, le=1000, description="labels to return per text")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)

    @field_validator("texts")
    @classmethod
    def _texts_not_blank(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_not_blank(text) for text in value]

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    @property
    def inputs(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str
    score: float = Field(description="probability of the label")
    top_k: list[LabelScore]
    truncated: bool = Field(description="the text was cut to the model's maximum length")
    tokens: int = Field(description="tokens the model read")
    low_confidence: bool = Field(
        description="the top probability was under the variant's out-of-scope threshold, "
        "so the label is the out-of-scope label and top_k keeps the model's own ranking"
    )


class PredictResponse(BaseModel):
    request_id: str
    variant: str
    predictions: list[Prediction]
    feedback_token: str | None = Field(
        None,
        description="send it back with the true label to POST /v1/feedback; any replica judges "
        "it (present when the service has a feedback key)",
    )


class Feedback(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"token": "eyJyZXF1ZXN0X2lkIjoi...", "label": "balance"},
                {"request_id": "3f2a9c...", "label": "balance", "index": 0},
            ]
        }
    )

    request_id: StrictStr | None = Field(
        None, description="X-Request-ID of the prediction's response; optional with a token"
    )
    token: StrictStr | None = Field(
        None,
        description="the prediction's feedback_token: judged by any replica, with no lookup",
    )
    label: StrictStr = Field(description="the true label")
    index: int = Field(0, ge=0, description="which text of the request, for batch requests")

    @model_validator(mode="after")
    def _request_id_or_token(self) -> Feedback:
        if self.request_id is None and self.token is None:
            raise ValueError("give the prediction's 'token' (feedback_token) or its 'request_id'")
        return self


class FeedbackResponse(BaseModel):
    request_id: str
    index: int
    variant: str
    predicted: str
    label: str
    correct: bool


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorDetail] | None = None


class Health(BaseModel):
    status: str
    variants: dict[str, bool] = Field(default_factory=dict)
