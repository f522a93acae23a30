"""The Python bindings as an app uses them: catalogue, a draft from first tap to the queue,
and typed errors. Run by scripts/test-bindings.sh against the freshly built library."""

import asyncio
import os
import sys
import tempfile

from curbside_ffi import (
    ApiError,
    AttributeAnswer,
    CurbsideStore,
    Datatype,
    DraftEdit,
    Location,
    LocationSource,
    ProblemKind,
    RequestState,
)

failures = 0
passed = 0


def check(name, fn):
    global failures, passed
    try:
        fn()
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
        failures += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


tmp = tempfile.mkdtemp()
store = CurbsideStore.open(os.path.join(tmp, "py.db"))


def catalogue():
    codes = [s.code for s in store.services()]
    assert "CSROWR-12" in codes and "30102" in codes, codes
    d = store.service_definition("CSROWR-12")
    kinds = {a.datatype for a in d.attributes}
    assert Datatype.SINGLE_VALUE_LIST in kinds and Datatype.MULTI_VALUE_LIST in kinds, kinds


def draft_to_queue():
    draft = store.create_draft("CSROWR-12", DraftEdit(description="Pothole at the streetcar stop"))
    assert draft.state == RequestState.DRAFT
    problems = store.validate_draft(draft.id)
    assert {p.field for p in problems} == {"attribute[SIZE]", "location"}, problems
    try:
        store.submit_draft(draft.id)
        raise AssertionError("an incomplete draft was queued")
    except ApiError.InvalidInput as e:
        assert len(e.problems) == 2, e.problems
    draft = store.edit_draft(
        draft.id,
        DraftEdit(
            attributes=[
                AttributeAnswer(code="SIZE", values=["large"]),
                AttributeAnswer(code="HAZARDS", values=["cyclists", "water"]),
            ],
            location=Location(lat=43.6452, lon=-79.3806, accuracy_m=5.0, source=LocationSource.GPS),
        ),
    )
    assert draft.attributes["HAZARDS"] == ["cyclists", "water"], draft.attributes
    queued = store.submit_draft(draft.id)
    assert queued.state == RequestState.QUEUED
    assert [h.to for h in queued.history] == [RequestState.DRAFT, RequestState.QUEUED]
    assert store.drafts(RequestState.QUEUED, 10)[0].id == draft.id


def typed_errors():
    try:
        store.create_draft("NOPE", DraftEdit())
        raise AssertionError("unknown service accepted")
    except ApiError.InvalidInput as e:
        assert e.problems[0].field == "service_code"
    d = store.create_draft("CSROWR-12", DraftEdit())
    try:
        store.edit_draft(d.id, DraftEdit(location=Location(lat=float("nan"), lon=1.0, accuracy_m=None, source=LocationSource.GPS)))
        raise AssertionError("NaN accepted")
    except ApiError.InvalidInput as e:
        assert e.problems[0].kind == ProblemKind.OUT_OF_RANGE
    try:
        store.draft("0190f3a0-0000-7000-8000-00000000ffff")
        raise AssertionError("missing draft found")
    except ApiError.NotFound:
        pass
    bad = os.path.join(tmp, "not-a-db.txt")
    with open(bad, "w") as f:
        f.write("hello " * 100)
    try:
        CurbsideStore.open(bad)
        raise AssertionError("a text file opened as a store")
    except ApiError.Storage as e:
        assert "not a Curbside database" in str(e), e
    with open(bad) as f:
        assert f.read() == "hello " * 100


def photos():
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "..", "..", "..", "shared", "data", "photos")
    d = store.create_draft("CSROWR-12", DraftEdit())
    with open(os.path.join(data, "gps", "DSCN0010.jpg"), "rb") as f:
        attached = asyncio.run(store.attach_photo(d.id, f.read()))
    assert attached.location_taken
    assert store.draft(d.id).location.source == LocationSource.PHOTO
    jpeg = store.photo_jpeg(attached.photo.sha256)
    assert jpeg[:2] == b"\xff\xd8" and b"Exif" not in jpeg
    assert len(store.photo_thumbnail(attached.photo.sha256)) < len(jpeg)
    with open(os.path.join(data, "heic", "iphone_13_pro_max.HEIC"), "rb") as f:
        try:
            asyncio.run(store.attach_photo(d.id, f.read()))
            raise AssertionError("HEIC accepted")
        except ApiError.InvalidInput as e:
            assert "JPEG" in str(e), e
    store.detach_photo(d.id, attached.photo.sha256)
    assert store.photos(d.id) == []


def location():
    assert store.ward_at(43.6534, -79.3841).name == "Spadina-Fort York"
    try:
        store.ward_at(-79.3841, 43.6534)
        raise AssertionError("swapped coordinates accepted")
    except ApiError.InvalidInput as e:
        assert "swapped" in str(e), e
    d = store.create_draft("TS-STREETLIGHT-OUT", DraftEdit(
        attributes=[AttributeAnswer(code="PROBLEM", values=["out"])],
        location=Location(lat=43.6534, lon=-79.3841, accuracy_m=4.0, source=LocationSource.GPS)))
    assert store.submit_draft(d.id).ward.code == "10"
    here = Location(lat=43.65345, lon=-79.3841, accuracy_m=8.0, source=LocationSource.GPS)
    hits = store.nearby("TS-STREETLIGHT-OUT", here, None)
    assert [h.id for h in hits] == [d.id] and hits[0].distance_m < 10, hits


check("catalogue", catalogue)
check("location", location)
check("photos", photos)
check("draft to queue", draft_to_queue)
check("typed errors", typed_errors)
print(f"{passed} passed, {failures} failed")
sys.exit(1 if failures else 0)
