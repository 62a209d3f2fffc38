"""Per-tick inputs of the released BEV encoder, built from the rig's front camera and LiDAR (numpy only).

The runtime runs the encoder (torch); the agent only prepares its inputs with the released recipe of
model/released/sensors.py (docs/released-agent.md §3): the front camera goes through a JPEG q95 round trip
and the crop; each LiDAR half sweep is moved into the ego frame, joined with the previous half sweep re-aligned by
the estimated ego motion between the two ticks (UKF poses), and turned into the histogram.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from automot.agent.inputs import InputError, SensorFrame, describe
from automot.agent.rigs import LIDAR, Rig

log = logging.getLogger(__name__)


def default_bev_config() -> Any:
    """TF++ defaults (docs/released-agent.md §3; used when the runtime does not expose the checkpoint's bev_config)."""
    from automot.model.released.bev_config import BEVConfig

    return BEVConfig()


class SceneInputBuilder:
    """Builds ``DrivingState.scene_inputs`` ({"rgb", "lidar"}) each tick; keeps the previous LiDAR half sweep."""

    def __init__(self, bev_config: Any, rig: Rig) -> None:
        # Imported here: model.released.sensors pulls in OpenCV/torch, which agents without scene tokens never need.
        from automot.model.released import sensors

        self._sensors = sensors
        self.cfg = bev_config
        self.rig = rig
        self.camera = rig.get(rig.primary_camera)
        lidars = rig.of_type(LIDAR)
        self.lidar_id = lidars[0].id if lidars else None
        self.accumulator = sensors.LidarAccumulator(bev_config)
        cw, ch = int(bev_config.cropped_width), int(bev_config.cropped_height)
        if bev_config.crop_image and (self.camera.width < cw or self.camera.height < ch):
            raise ValueError(
                f"camera {self.camera.id} is {self.camera.width}x{self.camera.height}, smaller than the BEV encoder's "
                f"crop {cw}x{ch} (bev_config cropped_width/cropped_height): set image_size to at least that"
            )
        if lidars:
            mount = (lidars[0].x, lidars[0].y, lidars[0].z, lidars[0].yaw)
            expected = (*map(float, bev_config.lidar_pos), float(bev_config.lidar_rot[2]))
            if not np.allclose(mount, expected):
                # The histogram assumes the bev_config mounting; a different rig shifts every point.
                log.warning(
                    "LiDAR %s is mounted at x,y,z,yaw=%s but bev_config assumes %s", lidars[0].id, mount, expected
                )

    def reset(self) -> None:
        self.accumulator.reset()

    def update(self, sensors: SensorFrame, position: np.ndarray, yaw: float, build: bool = True) -> dict | None:
        """Push this tick's half sweep at the estimated pose; with ``build`` return the encoder inputs.

        Every tick is pushed (warm-up included) so the first driving tick already has the previous half sweep.
        Raises InputError when the camera frame or the LiDAR is missing.
        """
        if sensors.lidar is None:
            got = "None" if self.lidar_id else f"rig {self.rig.name!r} without a LiDAR"
            raise InputError(self.lidar_id or self.rig.name, "a LiDAR point cloud for the BEV encoder", got)
        pose = (float(position[0]), float(position[1]), float(yaw))
        cloud = self.accumulator.push(sensors.lidar, pose)
        if not build:
            return None
        image = sensors.images.get(self.camera.id)
        if image is None:
            raise InputError(self.camera.id, "a camera frame for the BEV encoder", describe(image))
        # decode_camera made RGB from CARLA's BGRA; reversing the channels restores the exact BGR bytes the
        # released recipe JPEG-encodes.
        rgb = self._sensors.camera_array(image[:, :, ::-1], self.cfg)
        lidar = self._sensors.lidar_histogram(cloud, self.cfg)
        return {"rgb": rgb, "lidar": lidar}
