"""A real third-party Open311 client against a live curbside-server: the `georeport` package
(PyPI), in JSON and in XML, reading services, a definition, requests and single requests, of
data created both through POST requests and through Curbside's sync.

    python3 georeport_client.py BASE_URL POSTED_NUMBER SYNCED_NUMBER
"""

import sys

from georeport import GeoReport

base, posted, synced = sys.argv[1], sys.argv[2], sys.argv[3]
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        print(f"ok   {name}")
        passed += 1
    except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
        print(f"FAIL {name}: {e!r}")
        failed += 1


def as_list(x):
    # xmltodict gives one child as a dict and several as a list.
    return x if isinstance(x, list) else [x]


for fmt in ("json", "xml"):
    client = GeoReport(base, jurisdiction="toronto.ca", output_format=fmt)

    def services():
        codes = {s["service_code"] for s in as_list(client.get_service_list())}
        assert {"CSROWR-12", "TS-STREETLIGHT-OUT", "30102"} <= codes, codes

    def definition():
        d = client.get_service_definition("CSROWR-12")
        attrs = as_list(d["attributes"]["attribute"] if fmt == "xml" else d["attributes"])
        size = next(a for a in attrs if a["code"] == "SIZE")
        assert size["datatype"] == "singlevaluelist", size
        assert str(size["required"]).lower() == "true", size
        values = as_list(size["values"]["value"] if fmt == "xml" else size["values"])
        assert [v["key"] for v in values] == ["small", "medium", "large"], values

    def requests_list():
        found = as_list(client.get_service_requests())
        numbers = {r["service_request_id"] for r in found}
        assert {posted, synced} <= numbers, numbers
        for r in found:
            assert r["status"] in ("open", "closed"), r
            assert "T" in r["requested_datetime"] and r["requested_datetime"][-6] in "+-", r
            assert "email" not in r and "phone" not in r, r

    def requests_filtered():
        found = as_list(
            client.get_service_requests(
                service_request_id=f"{posted},{synced}", status="open"
            )
        )
        assert sorted(r["service_request_id"] for r in found) == sorted([posted, synced])
        lights = as_list(client.get_service_requests(service_code="TS-STREETLIGHT-OUT"))
        assert all(r["service_code"] == "TS-STREETLIGHT-OUT" for r in lights), lights

    def single_posted():
        r = client.get_service_request(posted)
        assert r["service_request_id"] == posted, r
        assert r["service_code"] == "TS-STREETLIGHT-OUT", r
        assert r["description"] == "Dark since Tuesday", r

    def single_synced():
        r = client.get_service_request(synced)
        assert r["service_request_id"] == synced, r
        assert r["service_code"] == "CSROWR-12", r
        assert float(r["lat"]) == 43.6453 and float(r["long"]) == -79.3806, r

    check(f"{fmt}: services", services)
    check(f"{fmt}: a service definition", definition)
    check(f"{fmt}: requests", requests_list)
    check(f"{fmt}: requests by number, status and service", requests_filtered)
    check(f"{fmt}: a request posted over Open311", single_posted)
    check(f"{fmt}: a request synced from the app", single_synced)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
