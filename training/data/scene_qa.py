"""Templated scene question / answer pairs from privileged state (semantic prompting / reasoning supervision).

Inputs are already in the ego frame (x forward, y right, metres). "In my lane" means |y| < half a lane
(``lane_half_width``) and ahead (x > 0). Answers are short and deterministic so a small model can learn them.
"""

from __future__ import annotations

from dataclasses import dataclass

from automot.training.data.schema import QAPair


@dataclass(frozen=True)
class SceneObject:
    """Another road user or obstacle in the ego frame."""

    x: float
    y: float
    speed: float
    is_vehicle: bool = True


def scene_qa(
    objects: list[SceneObject],
    ego_speed: float,
    decisions: list[str] | None = None,
    near_radius: float = 30.0,
    lane_half_width: float = 1.75,
    lookahead: float = 60.0,
) -> list[QAPair]:
    """Questions about traffic density, the lane ahead, the ego speed and (given them) the next actions."""
    vehicles = [o for o in objects if o.is_vehicle]
    near = sum(1 for o in vehicles if (o.x**2 + o.y**2) ** 0.5 <= near_radius)
    pairs = [
        QAPair(
            f"How many vehicles are within {near_radius:.0f} m?",
            "There are no vehicles nearby."
            if near == 0
            else f"There {'is' if near == 1 else 'are'} {near} "
            f"vehicle{'s' if near != 1 else ''} within {near_radius:.0f} m.",
        )
    ]
    ahead = sorted((o for o in objects if 0.0 < o.x <= lookahead and abs(o.y) < lane_half_width), key=lambda o: o.x)
    if ahead:
        lead = ahead[0]
        kind = "vehicle" if lead.is_vehicle else "obstacle"
        moving = "moving" if lead.speed > 0.5 else "standing"
        answer = f"No, a {moving} {kind} is {lead.x:.0f} m ahead in my lane."
    else:
        answer = "Yes, the lane ahead is clear."
    pairs.append(QAPair("Is the lane ahead clear?", answer))
    pairs.append(QAPair("How fast am I driving?", f"About {ego_speed:.0f} m/s."))
    if decisions:
        pairs.append(QAPair("What will you do now, in 1 s and in 2 s?", ", ".join(decisions) + "."))
    return pairs
