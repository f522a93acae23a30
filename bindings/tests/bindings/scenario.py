"""A resident's report from first tap to the city's answer, through the Python bindings against
a live curbside-server (CURBSIDE_SERVER, CURBSIDE_ADMIN_KEY), with a neighbour and an inspector
on their own stores. Run by scripts/test-bindings.sh."""

import asyncio
import os
import struct
import sys
import tempfile
import threading
import zlib

from curbside_ffi import (
    ApiError,
    AttributeAnswer,
    ChangeKind,
    ChangeListener,
    CurbsideStore,
    Datatype,
    DraftEdit,
    Location,
    LocationSource,
    LogLevel,
    LogSink,
    RequestState,
    SyncCancel,
    SyncObserver,
    SyncPhase,
    set_log_sink,
)

SERVER = os.environ["CURBSIDE_SERVER"]
ADMIN = os.environ["CURBSIDE_ADMIN_KEY"]
HERE = os.path.dirname(os.path.abspath(__file__))
PHOTOS = os.path.join(HERE, "..", "..", "..", "..", "shared", "data", "photos")
KING_AND_SPADINA = Location(lat=43.6453, lon=-79.3950, accuracy_m=6.0, source=LocationSource.MAP_PIN)


def photo(name):
    with open(os.path.join(PHOTOS, name), "rb") as f:
        return f.read()


class Heard(ChangeListener):
    def __init__(self):
        self.changes = []
        self.lock = threading.Lock()

    def on_change(self, changes):
        with self.lock:
            self.changes.extend(changes)

    def take(self):
        with self.lock:
            taken, self.changes = self.changes, []
        return taken


class Throws(ChangeListener):
    def on_change(self, changes):
        raise RuntimeError("a listener written badly")


class Progress(SyncObserver):
    def __init__(self, cancel_after_push=None):
        self.seen = []
        self.cancel = cancel_after_push

    def on_progress(self, progress):
        self.seen.append(progress)
        if self.cancel is not None and progress.pushed_changes > 0:
            self.cancel.cancel()


class Lines(LogSink):
    def __init__(self):
        self.lines = []

    def log(self, level, target, message):
        self.lines.append((level, target, message))


def answer(attribute):
    """What a person picks for a required question of the service's form."""
    if attribute.datatype in (Datatype.SINGLE_VALUE_LIST, Datatype.MULTI_VALUE_LIST):
        return [attribute.values[0].key]
    if attribute.datatype == Datatype.NUMBER:
        return ["12"]
    if attribute.datatype == Datatype.DATETIME:
        return ["2026-12-01T09:30:00-05:00"]
    return ["yes"]


def png_header(width, height):
    """A PNG whose header claims width x height pixels (and carries no pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


async def scenario():
    tmp = tempfile.mkdtemp()
    logs = Lines()
    set_log_sink(logs, LogLevel.DEBUG)
    resident = CurbsideStore.open(os.path.join(tmp, "resident.db"))
    neighbour = CurbsideStore.open(os.path.join(tmp, "neighbour.db"))
    inspector = CurbsideStore.open(os.path.join(tmp, "inspector.db"))
    reg = await resident.register(SERVER, [], None)
    assert reg.device_id and reg.role.name == "RESIDENT", reg
    await neighbour.register(SERVER, [], None)
    staff = await inspector.register(SERVER, ["10"], ADMIN)
    assert staff.wards == ["10"], staff

    heard = Heard()
    resident.add_listener(Throws())
    resident.add_listener(heard)

    # Pick a Toronto service and fill its form from the definition.
    service = next(s for s in resident.services() if s.code == "CSROWR-12")
    assert "business days" in service.standard, service.standard
    definition = resident.service_definition(service.code)
    answers = [AttributeAnswer(code=a.code, values=answer(a))
               for a in definition.attributes if a.variable and a.required]
    assert answers, definition
    draft = resident.create_draft(service.code, DraftEdit(description="Deep pothole in the curb lane"))
    problems = {p.field for p in resident.validate_draft(draft.id)}
    assert {f"attribute[{a.code}]" for a in answers} <= problems, problems
    draft = resident.edit_draft(draft.id, DraftEdit(attributes=answers))

    # A real phone photo: its EXIF fix becomes the location (it was taken in Madrid).
    attached = await resident.attach_photo(draft.id, photo("mobile/iphone_hdr_NO.jpg"))
    assert attached.location_taken and attached.photo.bytes <= 500_000, attached
    draft = resident.draft(draft.id)
    assert draft.location.source == LocationSource.PHOTO and abs(draft.location.lat - 40.447) < 0.01

    # Submitting is refused with the problem named; a map pin fixes it.
    try:
        resident.submit_draft(draft.id)
        raise AssertionError("a report located in Madrid was queued")
    except ApiError.InvalidInput as e:
        assert [p.field for p in e.problems] == ["location"], e.problems
    resident.edit_draft(draft.id, DraftEdit(location=KING_AND_SPADINA))
    assert resident.submit_draft(draft.id).state == RequestState.QUEUED
    waiting = resident.sync_status()
    assert (waiting.pending_requests, waiting.pending_photos) == (1, 1), waiting

    # Sync with progress: the request and its photo leave; the city's number comes back.
    progress = Progress()
    summary = await resident.sync(progress, None)
    assert summary.pushed > 0 and summary.photos_uploaded == 1, summary
    last = progress.seen[-1]
    assert last.photo_bytes_total == attached.photo.bytes == last.photo_bytes_sent, last
    mine = resident.draft(draft.id)
    assert mine.service_request_id and mine.state == RequestState.ACCEPTED, mine
    assert mine.expected_at is not None
    kinds = {k for c in heard.take() if c.request_id == draft.id for k in c.kinds}
    assert {ChangeKind.SUBMITTED, ChangeKind.SENT, ChangeKind.ACCEPTED} <= kinds, kinds
    status = resident.sync_status()
    assert status.phase == SyncPhase.IDLE() and status.last_success is not None, status
    assert (status.pending_requests, status.pending_photos, status.pending_changes) == (0, 0, 0)

    # A neighbour reports the same pothole; the resident's next sync brings it, and a new
    # draft there is told of it before it is sent.
    other = neighbour.create_draft("CSROWR-12", DraftEdit(
        description="Pothole", attributes=answers,
        location=Location(lat=43.64545, lon=-79.39495, accuracy_m=5.0, source=LocationSource.GPS)))
    neighbour.submit_draft(other.id)
    await neighbour.sync(None, None)
    await resident.sync(None, None)
    hits = resident.nearby("CSROWR-12", KING_AND_SPADINA, None)
    assert other.id in [h.id for h in hits], hits
    near = resident.request_detail(other.id)
    assert not near.mine and near.service_request_id, near
    assert all(not n.public or n.author_role in ("inspector", "staff", "resident") for n in near.notes)

    # The inspector of ward 10 acts: a status with a public note, and an internal note.
    await inspector.sync(None, None)
    assert draft.id in inspector.replicated_requests()
    inspector.set_status(draft.id, RequestState.IN_PROGRESS, "A crew is booked for Tuesday")
    inspector.add_note(draft.id, "Needs the asphalt truck", False)
    inspector.set_priority(draft.id, "high")
    await inspector.sync(None, None)
    seen_by_staff = inspector.request_detail(draft.id)
    assert seen_by_staff.priority == "high" and len(seen_by_staff.notes) == 2, seen_by_staff

    # The resident's next sync: the listener fires, the update waits unread.
    heard.take()
    await resident.sync(None, None)
    kinds = {k for c in heard.take() if c.request_id == draft.id and c.from_sync for k in c.kinds}
    assert {ChangeKind.STATUS, ChangeKind.NOTE} <= kinds, kinds
    news = resident.unread_updates(20)
    assert [u.status for u in news if u.status] == [RequestState.IN_PROGRESS], news
    assert [u.note for u in news if u.note] == ["A crew is booked for Tuesday"], news
    detail = resident.request_detail(draft.id)
    assert detail.state == RequestState.IN_PROGRESS and detail.mine
    assert [n.text for n in detail.notes] == ["A crew is booked for Tuesday"], detail.notes
    assert any(h.field == "status" for h in detail.history)
    assert resident.mark_seen(draft.id) == 2 and resident.unread_updates(20) == []

    # Cancel a sync mid-way (after its first push), then resume: nothing lost, nothing twice.
    second = resident.create_draft("CSROWR-12", DraftEdit(
        description="Another one, by the bike lane", attributes=answers, location=KING_AND_SPADINA))
    await resident.attach_photo(second.id, photo("mobile/jolla.jpg"))
    resident.submit_draft(second.id)
    cancel = SyncCancel()
    try:
        await resident.sync(Progress(cancel_after_push=cancel), cancel)
        raise AssertionError("the cancelled sync finished")
    except ApiError.Cancelled:
        pass
    cancel.cancel()  # twice: nothing happens
    assert resident.sync_status().pending_photos == 1
    await resident.sync(None, None)
    assert resident.draft(second.id).service_request_id
    assert resident.sync_status().pending_photos == 0

    # Typed errors, never a crash.
    try:
        resident.add_note(draft.id, "   ", True)
        raise AssertionError("an empty note was accepted")
    except ApiError.InvalidInput as e:
        assert e.problems[0].field == "note", e.problems
    try:
        resident.set_status(draft.id, RequestState.COMPLETED, None)
        raise AssertionError("a resident closed a request")
    except ApiError.Conflict:
        pass
    try:
        await resident.attach_photo(second.id, b"this is not an image")
        raise AssertionError("text accepted as a photo")
    except ApiError.InvalidInput:
        pass
    d = resident.create_draft("CSROWR-12", DraftEdit())
    try:
        await resident.attach_photo(d.id, png_header(12_000, 9_000))
        raise AssertionError("a 108 MP image accepted")
    except ApiError.InvalidInput as e:
        assert e.problems[0].kind.name == "OUT_OF_RANGE", e.problems
    try:
        CurbsideStore.open(os.path.join(tmp, "resident.db"))
        raise AssertionError("one file opened twice")
    except ApiError.Conflict:
        pass

    # No network: Offline, and what waits stays.
    resident.add_note(draft.id, "It is getting deeper", True)
    away = CurbsideStore.open(os.path.join(tmp, "away.db"))
    try:
        await away.sync(None, None)
        raise AssertionError("an unregistered store synced")
    except ApiError.Conflict:
        pass
    offline = CurbsideStore.open(os.path.join(tmp, "offline.db"))
    try:
        await offline.register("http://127.0.0.1:9", [], None)
        raise AssertionError("registered with nothing listening")
    except ApiError.Network:
        pass

    # Logs arrived, and none carries what the resident typed.
    assert any(t.startswith("curbside::sync") and "sync done" in m for _, t, m in logs.lines), logs.lines
    typed = ["Deep pothole", "crew is booked", "getting deeper", "bike lane"]
    assert not [m for _, _, m in logs.lines if any(w in m for w in typed)]

    # After close: a typed error; closing twice is harmless; the file opens again.
    resident.shutdown()
    resident.shutdown()
    try:
        resident.drafts(None, 10)
        raise AssertionError("a closed store answered")
    except ApiError.Closed:
        pass
    again = CurbsideStore.open(os.path.join(tmp, "resident.db"))
    assert again.sync_status().pending_changes == 1


asyncio.run(scenario())
print("ok   python scenario: report, photo, sync with progress, nearby, inspector, listener, unread, cancel and resume")
