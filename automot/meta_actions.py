"""The meta-action vocabulary, shared by the datasets (training/data/schema.py) and the decision decoding
(model/decision_vocab.py); torch-free, so the data tools can import it without the model.

Paper examples "stop, accelerate, stop" / "keep"; the lateral actions are added for the embedded world's turns and
lane changes. Order is irrelevant: decisions are supervised as text.
"""

from __future__ import annotations

DECISIONS = (
    "keep",
    "accelerate",
    "decelerate",
    "stop",
    "turn left",
    "turn right",
    "change lane left",
    "change lane right",
)
DECISION_SLOTS = 3  # one decision each for now, +1 s and +2 s
