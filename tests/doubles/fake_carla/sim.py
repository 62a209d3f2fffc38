"""Fake CARLA server objects: Client, World, Map, TrafficManager, vehicles and sensors.

Behaviour (enough for the leaderboard's synchronous loop):
* ``World.tick()`` advances one frame of ``fixed_delta_seconds`` (stored as float32 like the server, so the
  speedometer's ``elapsed > 1 / 20`` test fires every tick), moves every vehicle with a kinematic bicycle model
  driven by its last ``apply_control``, then calls each listening sensor's callback with a measurement of that
  frame. Measurements subclass the ``carla.libcarla`` types so the real SensorInterface accepts them.
* GNSS is noise-free and uses the leaderboard's own ``_location_to_gps`` with the map's geoReference; IMU gives
  ego-frame acceleration (+ gravity), yaw rate and CARLA's compass (0 = north, clockwise, radians).
* Environment knobs: ``FAKE_CARLA_LOG`` (JSON lines with the hero's true pose per tick),
  ``FAKE_CARLA_DIE_AT_LOAD`` (k: the process dies with exit code 3 on the k-th ``load_world``, i.e. a crash
  between routes), ``FAKE_CARLA_GEOREF`` ("lat,lon" of the map's geoReference; default 49.0,8.0).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import os

import carla
import numpy as np

_IDS = itertools.count(100)
GRAVITY = 9.81
WHEELBASE = 2.9
MAX_STEER_DEG = 70.0


def _measurement_class(base: type, fields: tuple[str, ...]) -> type:
    """A Python subclass of a boost.python measurement type whose fields are plain Python values."""

    def __init__(self, **values):
        self._values = values

    namespace = {"__init__": __init__}
    for name in fields:
        namespace[name] = property(lambda self, _n=name: self._values[_n])
    return type("Fake" + base.__name__, (base,), namespace)


_COMMON = ("frame", "timestamp", "transform")
FakeImage = _measurement_class(carla.libcarla.Image, _COMMON + ("width", "height", "fov", "raw_data"))
FakeLidar = _measurement_class(carla.libcarla.LidarMeasurement, _COMMON + ("channels", "raw_data"))
FakeGnss = _measurement_class(carla.libcarla.GnssMeasurement, _COMMON + ("latitude", "longitude", "altitude"))
FakeImu = _measurement_class(carla.libcarla.IMUMeasurement, _COMMON + ("accelerometer", "gyroscope", "compass"))


class ActorList(list):
    """``carla.ActorList``: a list with ``filter(pattern)`` on type ids."""

    def filter(self, pattern: str) -> ActorList:
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))

    def find(self, actor_id: int):
        return next((a for a in self if a.id == actor_id), None)


class Blueprint:
    def __init__(self, type_id: str) -> None:
        self.id = type_id
        self.tags: list[str] = []
        self._attributes: dict[str, str] = {"role_name": ""}

    def set_attribute(self, key: str, value: str) -> None:
        self._attributes[key] = str(value)

    def has_attribute(self, key: str) -> bool:
        return key in self._attributes

    def get_attribute(self, key: str) -> str:
        return self._attributes[key]


class BlueprintLibrary:
    def find(self, type_id: str) -> Blueprint:
        return Blueprint(type_id)

    def filter(self, pattern: str) -> list[Blueprint]:
        return [Blueprint(pattern.replace("*", ""))]


class Actor:
    def __init__(self, world: World, type_id: str, transform: carla.Transform, attributes: dict | None = None):
        self.id = next(_IDS)
        self.type_id = type_id
        self.attributes = dict(attributes or {})
        self.is_alive = True
        self.parent = None
        self._world = world
        self._transform = carla.Transform(transform.location, transform.rotation)

    def get_transform(self) -> carla.Transform:
        return carla.Transform(self._transform.location, self._transform.rotation)

    def get_location(self) -> carla.Location:
        return self.get_transform().location

    def set_transform(self, transform: carla.Transform) -> None:
        self._transform = carla.Transform(transform.location, transform.rotation)

    def get_velocity(self) -> carla.Vector3D:
        return carla.Vector3D()

    def get_acceleration(self) -> carla.Vector3D:
        return carla.Vector3D()

    def get_angular_velocity(self) -> carla.Vector3D:
        return carla.Vector3D()

    def destroy(self) -> bool:
        self.is_alive = False
        return True

    def __repr__(self) -> str:
        return f"FakeActor(id={self.id}, type={self.type_id})"


class Vehicle(Actor):
    """Kinematic bicycle driven by ``apply_control`` (speed >= 0, no reverse)."""

    def __init__(self, world, type_id, transform, attributes=None):
        super().__init__(world, type_id, transform, attributes)
        self.control = carla.VehicleControl()
        self.speed = 0.0
        self.accel = (0.0, 0.0)  # ego frame: longitudinal, lateral
        self.yaw_rate = 0.0  # rad/s, positive = clockwise seen from above (CARLA yaw direction)
        self.bounding_box = carla.BoundingBox(carla.Location(), carla.Vector3D(2.45, 1.06, 0.76))

    def apply_control(self, control) -> None:
        self.control = control

    def set_autopilot(self, *_args) -> None:
        pass

    def get_speed_limit(self) -> float:
        return 50.0  # km/h, an urban road

    def get_control(self):
        return self.control

    def step(self, dt: float) -> None:
        c = self.control
        accel = 4.0 * float(c.throttle) - 9.0 * float(c.brake) - 0.02 * self.speed
        if c.hand_brake:
            accel = -9.0
        new_speed = max(0.0, self.speed + accel * dt)
        self.yaw_rate = new_speed / WHEELBASE * math.tan(math.radians(MAX_STEER_DEG) * float(c.steer) * 0.5)
        tf = self._transform
        yaw = math.radians(tf.rotation.yaw) + self.yaw_rate * dt
        loc = carla.Location(
            tf.location.x + new_speed * dt * math.cos(yaw),
            tf.location.y + new_speed * dt * math.sin(yaw),
            tf.location.z,
        )
        self.accel = ((new_speed - self.speed) / dt, new_speed * self.yaw_rate)
        self.speed = new_speed
        self._transform = carla.Transform(loc, carla.Rotation(pitch=0.0, yaw=math.degrees(yaw), roll=0.0))

    def get_velocity(self) -> carla.Vector3D:
        yaw = math.radians(self._transform.rotation.yaw)
        return carla.Vector3D(self.speed * math.cos(yaw), self.speed * math.sin(yaw), 0.0)

    def get_acceleration(self) -> carla.Vector3D:
        yaw = math.radians(self._transform.rotation.yaw)
        c, s = math.cos(yaw), math.sin(yaw)
        lon, lat = self.accel
        return carla.Vector3D(c * lon - s * lat, s * lon + c * lat, 0.0)

    def get_angular_velocity(self) -> carla.Vector3D:
        return carla.Vector3D(0.0, 0.0, math.degrees(self.yaw_rate))


class Sensor(Actor):
    def __init__(self, world, blueprint: Blueprint, transform, parent):
        super().__init__(world, blueprint.id, transform, blueprint._attributes)
        self.parent = parent
        self._callback = None

    @property
    def is_listening(self) -> bool:
        return self._callback is not None

    def listen(self, callback) -> None:
        self._callback = callback

    def stop(self) -> None:
        self._callback = None

    def destroy(self) -> bool:
        self._callback = None
        return super().destroy()

    def world_transform(self) -> carla.Transform:
        parent = self.parent.get_transform()
        offset = self._transform.location
        # carla.Transform.transform() rewrites its argument in place (and returns a Vector3D): pass a copy.
        moved = parent.transform(carla.Location(offset.x, offset.y, offset.z))
        loc = carla.Location(moved.x, moved.y, moved.z)
        rot = parent.rotation
        return carla.Transform(
            loc,
            carla.Rotation(
                pitch=rot.pitch + self._transform.rotation.pitch,
                yaw=rot.yaw + self._transform.rotation.yaw,
                roll=rot.roll + self._transform.rotation.roll,
            ),
        )

    def measure(self, frame: int, timestamp: float):
        """This frame's measurement, or None for sensors that report only events (collision...)."""
        tf = self.world_transform()
        common = {"frame": frame, "timestamp": timestamp, "transform": tf}
        a = self.attributes
        if self.type_id == "sensor.camera.rgb":
            w, h = int(a["image_size_x"]), int(a["image_size_y"])
            image = np.empty((h, w, 4), np.uint8)  # BGRA: sky above the horizon, grey road below, lane mark
            image[: h // 2] = (235, 206, 135, 255)
            image[h // 2 :] = (90, 90, 90, 255)
            image[h // 2 :, w // 2 - 2 : w // 2 + 2] = (255, 255, 255, 255)
            return FakeImage(width=w, height=h, fov=float(a["fov"]), raw_data=image.tobytes(), **common)
        if self.type_id == "sensor.lidar.ray_cast":
            angles = np.linspace(0.0, 2.0 * np.pi, 720, endpoint=False)
            points = np.stack([10 * np.cos(angles), 10 * np.sin(angles), -2.0 * np.ones_like(angles), 0.5 + 0 * angles])
            return FakeLidar(channels=64, raw_data=points.T.astype(np.float32).tobytes(), **common)
        if self.type_id == "sensor.other.gnss":
            gps = self._world.location_to_gps(tf.location)
            return FakeGnss(latitude=gps["lat"], longitude=gps["lon"], altitude=gps["z"], **common)
        if self.type_id == "sensor.other.imu":
            lon, lat = getattr(self.parent, "accel", (0.0, 0.0))
            yaw = math.radians(tf.rotation.yaw)
            compass = (yaw + math.pi / 2.0) % (2.0 * math.pi)
            return FakeImu(
                accelerometer=carla.Vector3D(lon, lat, GRAVITY),
                gyroscope=carla.Vector3D(0.0, 0.0, getattr(self.parent, "yaw_rate", 0.0)),
                compass=compass,
                **common,
            )
        return None


class Map:
    def __init__(self, town: str, georef: tuple[float, float]) -> None:
        self.name = f"Carla/Maps/{town}"
        self.georef = georef

    def to_opendrive(self) -> str:
        lat, lon = self.georef
        return (
            '<?xml version="1.0"?><OpenDRIVE><header revMajor="1" revMinor="4" name="" version="1">'
            f"<geoReference><![CDATA[+proj=tmerc +lat_0={lat} +lon_0={lon} +k=1 +x_0=0 +y_0=0 +datum=WGS84]]>"
            "</geoReference></header></OpenDRIVE>"
        )

    def get_topology(self) -> list:
        return []

    def get_spawn_points(self) -> list:
        return []

    def get_waypoint(self, location, *args, **kwargs):
        return None


class DebugHelper:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class World:
    def __init__(self, client: Client, town: str) -> None:
        self._client = client
        lat, lon = (float(v) for v in os.environ.get("FAKE_CARLA_GEOREF", "49.0,8.0").split(","))
        self._map = Map(town, (lat, lon))
        self._settings = client.settings
        self._actors: list[Actor] = []
        self._spectator = Actor(self, "spectator", carla.Transform())
        self._weather = carla.WeatherParameters()
        self.frame = 0
        self.elapsed = 0.0
        self.debug = DebugHelper()
        self.id = next(_IDS)

    # settings / map / weather
    def get_settings(self):
        return self._settings

    def apply_settings(self, settings) -> int:
        self._client.settings = self._settings = settings
        return self.frame

    def get_map(self) -> Map:
        return self._map

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary()

    def set_weather(self, weather) -> None:
        self._weather = weather

    def get_weather(self):
        return self._weather

    def reset_all_traffic_lights(self) -> None:
        pass

    def get_spectator(self) -> Actor:
        return self._spectator

    def location_to_gps(self, location) -> dict:
        from leaderboard.utils.route_manipulation import _location_to_gps  # pyright: ignore[reportMissingImports]

        return _location_to_gps(self._map.georef[0], self._map.georef[1], location)

    # actors
    def get_actors(self, actor_ids=None) -> ActorList:
        alive = [a for a in self._actors if a.is_alive]
        if actor_ids is not None:
            alive = [a for a in alive if a.id in set(actor_ids)]
        return ActorList(alive)

    def spawn_actor(self, blueprint: Blueprint, transform, attach_to=None, *args) -> Actor:
        if blueprint.id.startswith("sensor."):
            actor: Actor = Sensor(self, blueprint, transform, attach_to)
        elif blueprint.id.startswith("vehicle."):
            actor = Vehicle(self, blueprint.id, transform, blueprint._attributes)
        else:
            actor = Actor(self, blueprint.id, transform, blueprint._attributes)
        self._actors.append(actor)
        return actor

    def try_spawn_actor(self, blueprint, transform, attach_to=None, *args):
        return self.spawn_actor(blueprint, transform, attach_to)

    # time
    def _delta(self) -> float:
        fixed = getattr(self._settings, "fixed_delta_seconds", None) or 0.05
        return float(np.float32(fixed))  # the server's single-precision step: 0.05000000074505806

    def get_snapshot(self):
        return type("Snapshot", (), {"timestamp": carla.Timestamp(self.frame, self.elapsed, self._delta(), 0.0)})()

    def wait_for_tick(self, *args, **kwargs):
        return self.get_snapshot()

    def tick(self, *args, **kwargs) -> int:
        dt = self._delta()
        self.frame += 1
        self.elapsed += dt
        for actor in list(self._actors):
            if actor.is_alive and isinstance(actor, Vehicle):
                actor.step(dt)
        self._client.log_tick(self)
        for actor in list(self._actors):
            if isinstance(actor, Sensor) and actor.is_alive and actor.is_listening:
                data = actor.measure(self.frame, self.elapsed)
                if data is not None and actor._callback is not None:
                    actor._callback(data)
        return self.frame


class TrafficManager:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Client:
    """``carla.Client`` without a server. One instance per evaluator process."""

    def __init__(self, host: str = "localhost", port: int = 2000, *args) -> None:
        self.host, self.port = host, port
        self.settings = carla.WorldSettings()
        self._world = World(self, "Town01")
        self._loads = 0
        self._log_path = os.environ.get("FAKE_CARLA_LOG")

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    def get_client_version(self) -> str:
        return "0.9.15"

    def get_server_version(self) -> str:
        return "0.9.15"

    def get_world(self) -> World:
        return self._world

    def load_world(self, town: str, reset_settings: bool = True, *args) -> World:
        self._loads += 1
        die_at = int(os.environ.get("FAKE_CARLA_DIE_AT_LOAD", "0") or 0)
        if die_at and self._loads == die_at:
            print(f"fake_carla: simulator died while loading world {self._loads}", flush=True)
            os._exit(3)
        self._world = World(self, town)
        return self._world

    def get_trafficmanager(self, port: int = 8000) -> TrafficManager:
        return TrafficManager()

    def apply_batch_sync(self, commands, *args) -> list:
        return []

    def apply_batch(self, commands, *args) -> None:
        return None

    def start_recorder(self, filename: str, *args) -> str:
        with open(filename, "w", encoding="utf-8") as fh:
            fh.write("fake CARLA recording\n")
        return filename

    def stop_recorder(self) -> None:
        pass

    def log_tick(self, world: World) -> None:
        if not self._log_path:
            return
        heroes = [a for a in world._actors if a.is_alive and a.attributes.get("role_name") == "hero"]
        if not heroes:
            return
        tf = heroes[0].get_transform()
        row = {
            "load": self._loads,
            "town": world._map.name,
            "frame": world.frame,
            "x": tf.location.x,
            "y": tf.location.y,
            "z": tf.location.z,
            "yaw": tf.rotation.yaw,
            "speed": getattr(heroes[0], "speed", 0.0),
            "listening": sum(1 for a in world._actors if isinstance(a, Sensor) and a.is_alive and a.is_listening),
        }
        with open(self._log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
