//! Location on real Toronto data: ward boundaries against the city's own ward labels.

use std::path::Path;

use curbside_core::geo::{BoundaryOptions, GeoError, Jurisdiction};

fn toronto(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/toronto")
            .join(rel),
    )
    .unwrap()
}

#[test]
fn ward_of_each_real_request_matches_the_ward_in_its_address() {
    let wards = Jurisdiction::from_geojson(
        &toronto("wards-44-2010.geojson"),
        &BoundaryOptions::new("SCODE_NAME", "NAME"),
    )
    .unwrap();
    assert_eq!(wards.wards().len(), 44);
    let requests: serde_json::Value =
        serde_json::from_slice(&toronto("open311-requests-2018.json")).unwrap();
    let mut checked = 0;
    let mut misses = Vec::new();
    for r in requests["service_requests"].as_array().unwrap() {
        let (Some(lat), Some(lon), Some(address)) =
            (r["lat"].as_f64(), r["long"].as_f64(), r["address"].as_str())
        else {
            continue;
        };
        let Some(label) = address.rsplit_once("Ward: ").map(|(_, w)| w) else {
            continue;
        };
        let Some(code) = label
            .rsplit_once('(')
            .and_then(|(_, c)| c.strip_suffix(')'))
        else {
            continue;
        };
        let expected = code.trim_start_matches('0');
        checked += 1;
        let got = wards
            .ward_at(lat, lon)
            .map(|w| w.code.trim_start_matches('0').to_string());
        if got.as_deref() != Ok(expected) {
            let d = wards
                .distance_to_ward_m(code, lat, lon)
                .or_else(|| wards.distance_to_ward_m(expected, lat, lon));
            misses.push(format!(
                "  {} at ({lat:.6}, {lon:.6}): labelled {label}, computed {:?}, {:.1} m from the labelled ward",
                r["service_request_id"], got, d.unwrap_or(f64::NAN)
            ));
        }
    }
    let rate = 1.0 - misses.len() as f64 / checked as f64;
    println!(
        "ward agreement: {:.2}% of {checked} requests; {} misses",
        rate * 100.0,
        misses.len()
    );
    for m in &misses {
        println!("{m}");
    }
    assert!(checked > 300, "{checked} requests carry a ward label");
    assert!(
        rate >= 0.99,
        "agreement {:.2}% < 99%:\n{}",
        rate * 100.0,
        misses.join("\n")
    );
}

#[test]
fn the_shipped_25_wards_are_valid_and_answer_for_city_hall() {
    let options = BoundaryOptions::new("AREA_S_CD", "AREA_NAME");
    // The shipped copy loads without validation; prove here that it would pass it.
    let validated =
        Jurisdiction::from_geojson(&curbside_core::geo::toronto_wards_geojson(), &options).unwrap();
    let toronto = Jurisdiction::toronto();
    assert_eq!(toronto.wards().len(), 25);
    assert_eq!(validated.wards(), toronto.wards());
    // Toronto City Hall, 100 Queen St W: Spadina–Fort York (10).
    let hall = toronto.ward_at(43.6534, -79.3841).unwrap();
    assert_eq!(
        (hall.code.as_str(), hall.name.as_str()),
        ("10", "Spadina-Fort York")
    );
    // Lake Ontario, 5 km south of the shore: outside, with the distance.
    match toronto.ward_at(43.58, -79.38) {
        Err(GeoError::Outside { distance_m }) => assert!(
            distance_m > 1_000.0 && distance_m < 10_000.0,
            "{distance_m}"
        ),
        other => panic!("{other:?}"),
    }
    // The classic: longitude and latitude in the wrong order.
    assert!(matches!(
        toronto.ward_at(-79.3841, 43.6534),
        Err(GeoError::Swapped { .. })
    ));
    assert!(matches!(
        toronto.ward_at(f64::NAN, -79.0),
        Err(GeoError::InvalidPoint(_))
    ));
    assert!(matches!(
        toronto.ward_at(43.0, 200.0),
        Err(GeoError::InvalidPoint(_))
    ));
    // Every point agrees with the naive loop over geo polygons.
    let ((x0, y0), (x1, y1)) = {
        let (lo, hi) = toronto.bounds();
        ((lo[0], lo[1]), (hi[0], hi[1]))
    };
    let mut seed = 7u64;
    for _ in 0..1_000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let fx = (seed >> 11) as f64 / (1u64 << 53) as f64;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let fy = (seed >> 11) as f64 / (1u64 << 53) as f64;
        let (lat, lon) = (y0 + fy * (y1 - y0), x0 + fx * (x1 - x0));
        let fast = toronto.ward_at(lat, lon).ok().map(|w| w.code.clone());
        let naive = toronto.ward_at_naive(lat, lon).map(|w| w.code.clone());
        assert_eq!(fast, naive, "({lat}, {lon})");
    }
}

mod store {
    use curbside_core::geo::KnownRequest;
    use curbside_core::{DraftEdit, Error, Location, LocationSource, ProblemKind, State, Store};

    fn pothole_at(lat: f64, lon: f64, accuracy: f64) -> DraftEdit {
        DraftEdit {
            attributes: vec![("SIZE".into(), vec!["large".into()])],
            location: Some(Some(
                Location::new(lat, lon, Some(accuracy), LocationSource::Gps).unwrap(),
            )),
            ..DraftEdit::default()
        }
    }

    #[test]
    fn submitting_names_the_ward_and_refuses_points_outside_the_city() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("geo.db")).unwrap();
        let id = store
            .create_draft("CSROWR-12", &pothole_at(43.6534, -79.3841, 5.0))
            .unwrap();
        store.submit_draft(&id).unwrap();
        let ward = store.draft(&id).unwrap().ward.unwrap();
        assert_eq!(
            (ward.code.as_str(), ward.name.as_str()),
            ("10", "Spadina-Fort York")
        );

        let lake = store
            .create_draft("CSROWR-12", &pothole_at(43.55, -79.38, 5.0))
            .unwrap();
        match store.submit_draft(&lake) {
            Err(Error::Invalid(p)) => {
                assert_eq!(
                    (p[0].field.as_str(), p[0].kind),
                    ("location", ProblemKind::OutOfRange)
                );
                assert!(
                    p[0].message.contains("outside the city") && p[0].message.contains("km"),
                    "{}",
                    p[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        let swapped = store
            .create_draft("CSROWR-12", &pothole_at(-79.3841, 43.6534, 5.0))
            .unwrap();
        match store.submit_draft(&swapped) {
            Err(Error::Invalid(p)) => assert!(p[0].message.contains("swapped"), "{}", p[0].message),
            other => panic!("{other:?}"),
        }
        // An address alone still works, with no ward.
        let by_address = store
            .create_draft(
                "CSROWR-12",
                &DraftEdit {
                    attributes: vec![("SIZE".into(), vec!["small".into()])],
                    address: Some(Some("Queen St W / Spadina Ave".into())),
                    ..DraftEdit::default()
                },
            )
            .unwrap();
        store.submit_draft(&by_address).unwrap();
        assert_eq!(store.draft(&by_address).unwrap().ward, None);
    }

    #[test]
    fn nearby_finds_own_and_synced_requests_and_follows_their_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("nearby.db")).unwrap();
        let here = Location::new(43.6534, -79.3841, Some(5.0), LocationSource::Gps).unwrap();
        assert!(store.nearby("CSROWR-12", &here, None).unwrap().is_empty());

        // A report of mine 15 m north, sent; a draft is not a report yet.
        let mine = store
            .create_draft("CSROWR-12", &pothole_at(43.65353, -79.3841, 5.0))
            .unwrap();
        assert!(
            store.nearby("CSROWR-12", &here, None).unwrap().is_empty(),
            "drafts are not reports"
        );
        store.submit_draft(&mine).unwrap();
        let hits = store.nearby("CSROWR-12", &here, None).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, mine);
        assert!(
            (hits[0].distance_m - 14.5).abs() < 1.0,
            "{}",
            hits[0].distance_m
        );
        assert!(store
            .nearby("CSROWR-12", &here, Some(&mine))
            .unwrap()
            .is_empty());
        assert!(store
            .nearby("TS-STREETLIGHT-OUT", &here, None)
            .unwrap()
            .is_empty());

        // Someone else's, synced in, 5 m away, then closed by the city.
        let now = store.now_ms();
        let theirs = KnownRequest {
            id: "101005570514".into(),
            service_code: "CSROWR-12".into(),
            lat: 43.65345,
            lon: -79.3841,
            accuracy_m: None,
            created_at_ms: now - 3_600_000,
            open: true,
        };
        store.cache_requests(std::slice::from_ref(&theirs)).unwrap();
        let ids: Vec<String> = store
            .nearby("CSROWR-12", &here, None)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(
            ids,
            ["101005570514".to_string(), mine.clone()],
            "nearest first"
        );
        store
            .cache_requests(&[KnownRequest {
                open: false,
                ..theirs
            }])
            .unwrap();
        store.mark_sent(&mine).unwrap();
        store.mark_accepted(&mine, "101005999999").unwrap();
        assert_eq!(store.nearby("CSROWR-12", &here, None).unwrap().len(), 1);
        store
            .apply_server_status(&mine, State::Completed, Some("Completed"))
            .unwrap();
        assert!(
            store.nearby("CSROWR-12", &here, None).unwrap().is_empty(),
            "closed requests are no duplicates"
        );

        // A fresh store over the same file builds the same answer from disk.
        drop(store);
        let store = Store::open(dir.path().join("nearby.db")).unwrap();
        assert!(store.nearby("CSROWR-12", &here, None).unwrap().is_empty());
        let bad = Location {
            lat: f64::NAN,
            lon: 0.0,
            accuracy_m: None,
            source: LocationSource::Gps,
        };
        assert!(matches!(
            store.nearby("CSROWR-12", &bad, None),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn real_open311_requests_import_into_the_cache() {
        let bytes = super::toronto("open311-requests-2018.json");
        let requests = curbside_core::known::parse_open311_requests(&bytes).unwrap();
        assert_eq!(
            requests.len(),
            996,
            "the four without coordinates are skipped"
        );
        assert_eq!(requests.iter().filter(|r| r.open).count(), 258);
        assert!(requests
            .iter()
            .any(|r| r.id == "101005570514" && r.service_code == "CSROWR-12"));
        assert!(
            curbside_core::known::parse_open311_requests(b"{\"service_requests\": 3}").is_err()
        );
    }
}
