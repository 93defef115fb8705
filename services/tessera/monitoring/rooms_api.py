"""Rooms of the monitoring gateway: the table in JetStream key-value (shared with the fusion worker, surviving
restarts), a read-through cache of it, and CreateRoom/UpdateRoom validation."""

from __future__ import annotations

import time
import uuid

from tessera.monitoring import cascade, convert
from tessera.monitoring.contracts import MonitoringModels
from tessera.monitoring.rules import RoomRules, RuleError
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.runtime.bus import Bus, KeyValueTable
from tessera.runtime.echo import shown
from tessera.runtime.errors import InvalidArgument, NotFound, ResourceExhausted
from tessera.runtime.identifiers import check_display_name, check_id


def now_ms() -> int:
    return int(time.time() * 1000)


class Rooms:
    """The room table; ``load`` it before use."""

    def __init__(self, own: MonitoringSettings, bus: Bus, models: MonitoringModels) -> None:
        self.own = own
        self.bus = bus
        self.models = models
        self._kv: KeyValueTable | None = None
        self.cached: dict[str, pb.Room] = {}

    @property
    def kv(self) -> KeyValueTable:
        if self._kv is None:
            raise RuntimeError("Rooms.load() first")
        return self._kv

    async def load(self) -> None:
        self._kv = await cascade.rooms(self.bus)
        for key in await self.kv.keys():
            raw = await self.kv.get(key)
            if raw:
                self.cached[key] = pb.Room.FromString(raw)

    def rules(self, rules: pb.RoomRules, field: str = "rules") -> RoomRules:
        """Validated rules, checked against the labels the served models know."""
        try:
            return convert.rules_from_proto(
                rules, field, frozenset(self.models.object_labels), frozenset(self.models.sound_labels)
            )
        except RuleError as exc:
            raise InvalidArgument(str(exc), field=exc.field) from None

    async def get(self, room_id: str, field: str = "room_id") -> pb.Room:
        check_id(room_id, field)
        room = self.cached.get(room_id)
        if room is None:
            raw = await self.kv.get(room_id)
            if raw is None:
                raise NotFound(f"no room {shown(room_id)}", field=field)
            room = self.cached[room_id] = pb.Room.FromString(raw)
        return room

    async def _store(self, room: pb.Room) -> None:
        await self.kv.put(room.room_id, room.SerializeToString())
        self.cached[room.room_id] = room

    async def create(self, request: pb.CreateRoomRequest) -> pb.Room:
        room_id = check_id(request.room_id or uuid.uuid4().hex[:12], "room_id")
        if room_id in self.cached or await self.kv.get(room_id) is not None:
            raise InvalidArgument(f"room {shown(room_id)} exists", field="room_id")
        if len(self.cached) >= self.own.max_rooms:
            raise ResourceExhausted(f"at most {self.own.max_rooms} rooms")
        rules = self.rules(request.rules)
        now = now_ms()
        room = pb.Room(
            room_id=room_id,
            display_name=check_display_name(request.display_name, "display_name"),
            rules=convert.rules_to_proto(rules),
            create_time_ms=now,
            update_time_ms=now,
        )
        await self._store(room)
        return room

    async def update(self, request: pb.UpdateRoomRequest) -> pb.Room:
        room = await self.get(request.room_id)
        rules = self.rules(request.rules)
        updated = pb.Room()
        updated.CopyFrom(room)
        updated.display_name = check_display_name(request.display_name, "display_name") or room.display_name
        updated.rules.CopyFrom(convert.rules_to_proto(rules))
        updated.update_time_ms = now_ms()
        await self._store(updated)
        return updated

    async def delete(self, room_id: str) -> None:
        await self.kv.delete(room_id)
        self.cached.pop(room_id, None)
