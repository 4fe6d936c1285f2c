"""Events: made and counted as client-go's recorder does (pure), and the recorder's writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from testbed.api.events import (
    Note,
    container_path,
    event_time,
    expired,
    new_event,
    reference,
    repeat,
)
from testbed.apiclient.events import EventRecorder

NOW = datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC)
POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"}}


def test_an_event_is_named_and_filled_as_client_go_does():
    note = Note(reference(POD, container_path("web")), "Normal", "Started", "Started container web")
    event = new_event(note, "kubelet", "w1", NOW)
    nanos = int(NOW.timestamp() * 1e9)
    assert event["metadata"] == {"name": f"web-1.{nanos:x}", "namespace": "shop"}
    assert event["involvedObject"] == {"kind": "Pod", "name": "web-1", "namespace": "shop",
                                       "uid": "u-1", "apiVersion": "v1", "resourceVersion": "7",
                                       "fieldPath": "spec.containers{web}"}
    assert event["source"] == {"component": "kubelet", "host": "w1"}
    assert (event["count"], event["firstTimestamp"], event["lastTimestamp"]) == \
        (1, "2026-12-07T06:00:00Z", "2026-12-07T06:00:00Z")


def test_cluster_scoped_objects_get_their_events_in_default():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1", "uid": "n"}}
    event = new_event(Note(reference(node), "Normal", "Starting", "Starting kubelet."),
                      "kubelet", "w1", NOW)
    assert event["metadata"]["namespace"] == "default"
    assert "namespace" not in event["involvedObject"]


def test_a_repeat_counts_and_moves_last_seen_only():
    event = new_event(Note(reference(POD), "Warning", "BackOff", "x"), "kubelet", None, NOW)
    again = repeat(event, NOW + timedelta(seconds=90))
    assert again["count"] == 2 and again["lastTimestamp"] == "2026-12-07T06:01:30Z"
    assert again["firstTimestamp"] == event["firstTimestamp"] and event["count"] == 1


def test_events_expire_an_hour_after_they_were_last_seen():
    old = new_event(Note(reference(POD), "Normal", "A", "a"), "c", None, NOW)
    fresh = repeat(old, NOW + timedelta(minutes=59))
    later = NOW + timedelta(minutes=61)
    assert expired([old, fresh], later) == [old]
    assert expired([old], NOW + timedelta(minutes=59)) == []


def test_event_time_is_a_series_last_observation_else_last_timestamp_else_event_time():
    at = {"series": {"count": 4, "lastObservedTime": "2026-12-07T06:05:00.250000Z"},
          "lastTimestamp": "2026-12-07T06:01:00Z", "eventTime": "2026-12-07T06:00:00.000001Z"}
    assert event_time(at) == datetime(2026, 12, 7, 6, 5, 0, 250000, tzinfo=UTC)
    del at["series"]
    assert event_time(at) == datetime(2026, 12, 7, 6, 1, tzinfo=UTC)
    del at["lastTimestamp"]
    assert event_time(at) == datetime(2026, 12, 7, 6, 0, 0, 1, tzinfo=UTC)
    assert event_time({"series": {}, "lastTimestamp": "2026-12-07T06:01:00Z"}) is None   # Series != nil
    assert event_time({"firstTimestamp": "2026-12-07T06:01:00Z"}) is None


def test_a_series_is_alive_while_it_is_observed():
    old = new_event(Note(reference(POD), "Normal", "A", "a"), "c", None, NOW)
    series = {**old, "series": {"count": 2, "lastObservedTime": "2026-12-07T06:50:00.000000Z"}}
    created = {"metadata": {"creationTimestamp": "2026-12-07T06:00:00Z"}}
    later = NOW + timedelta(minutes=61)
    assert expired([old, series, created], later) == [old, created]


class Sink:
    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.calls: list[str] = []

    def create(self, obj: dict) -> dict:
        self.calls.append("create")
        self.objects[obj["metadata"]["name"]] = obj
        return obj

    def update(self, obj: dict) -> dict:
        self.calls.append("update")
        if obj["metadata"]["name"] not in self.objects:
            raise LookupError("gone")
        self.objects[obj["metadata"]["name"]] = obj
        return obj


def test_the_recorder_counts_identical_notes_into_one_event_and_creates_anew_when_gone():
    clock = iter([NOW + timedelta(seconds=i) for i in range(10)])
    sink = Sink()
    recorder = EventRecorder(sink, "kubelet", "w1", now=lambda: next(clock))
    note = Note(reference(POD), "Warning", "BackOff", "Back-off restarting failed container")
    recorder.write(note)
    recorder.write(note)
    recorder.write(Note(reference(POD), "Normal", "Started", "Started container web"))
    assert sink.calls == ["create", "update", "create"]
    (backoff,) = [e for e in sink.objects.values() if e["reason"] == "BackOff"]
    assert backoff["count"] == 2
    sink.objects.clear()            # expired meanwhile: the next repeat starts a new Event
    recorder.write(note)
    assert sink.calls[-2:] == ["update", "create"] and len(sink.objects) == 1


def test_the_recorder_thread_writes_everything_queued_before_it_stops():
    sink = Sink()
    recorder = EventRecorder(sink, "scheduler").start()
    for i in range(20):
        recorder.record(Note(reference(POD), "Normal", "Scheduled", f"m{i}"))
    recorder.stop()
    assert len(sink.objects) == 20


def test_a_failing_sink_never_reaches_the_component():
    class Broken:
        def create(self, obj):
            raise OSError("connection refused")

        update = create

    EventRecorder(Broken(), "kubelet").write(Note(reference(POD), "Normal", "A", "a"))
