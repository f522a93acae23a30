//! What the commands print: short text for people, stable JSON for scripts.

use curbside_core::clock::rfc3339;
use curbside_core::{photo, Draft, DraftSummary, Error, Problem, Service, ServiceDefinition};
use serde_json::{json, Value};

pub struct Out {
    pub json: bool,
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialise")
    );
}

impl Out {
    pub fn services(&self, services: &[Service]) {
        if self.json {
            return print_json(&json!(services));
        }
        for s in services {
            println!("{:<24} {}", s.code, s.name);
        }
    }

    pub fn service(&self, service: &Service, definition: &ServiceDefinition) {
        if self.json {
            return print_json(&json!({ "service": service, "definition": definition }));
        }
        println!(
            "{} — {} ({})",
            service.code,
            service.name,
            service.kind.as_str()
        );
        if let Some(d) = &service.description {
            println!("{d}");
        }
        for a in &definition.attributes {
            if !a.variable {
                println!("  ℹ {}", a.description);
                continue;
            }
            let need = if a.required { "required" } else { "optional" };
            println!(
                "  {} ({}, {need}): {}",
                a.code,
                a.datatype.as_str(),
                a.description
            );
            for v in &a.values {
                println!("      {:<14} {}", v.key, v.name);
            }
        }
    }

    pub fn drafts(&self, drafts: &[DraftSummary]) {
        if self.json {
            return print_json(&json!(drafts));
        }
        if drafts.is_empty() {
            println!("no requests");
        }
        for d in drafts {
            let name = d
                .service_name
                .as_deref()
                .unwrap_or("(service no longer offered)");
            println!("{}  {:<11} {}  {}", d.id, d.state.as_str(), name, d.excerpt);
        }
    }

    /// A draft and, while it is one, what still stops it from being queued.
    pub fn draft(&self, draft: &Draft, problems: &[Problem]) {
        let problems: &[Problem] = if draft.state == curbside_core::State::Draft {
            problems
        } else {
            &[]
        };
        if self.json {
            return print_json(&json!({ "request": draft, "problems": problems }));
        }
        let name = draft
            .service_name
            .as_deref()
            .unwrap_or("(service no longer offered)");
        println!("{}  {}", draft.id, draft.state);
        println!("  service      {} — {name}", draft.service_code);
        if let Some(id) = &draft.service_request_id {
            println!("  city id      {id}");
        }
        if !draft.description.is_empty() {
            println!("  description  {}", draft.description);
        }
        for (code, values) in &draft.attributes {
            println!("  {code:<12} {}", values.join(", "));
        }
        match &draft.location {
            Some(l) => println!(
                "  location     {:.6}, {:.6}{} ({})",
                l.lat,
                l.lon,
                l.accuracy_m.map(|a| format!(" ±{a} m")).unwrap_or_default(),
                l.source.as_str()
            ),
            None => println!("  location     —"),
        }
        if let Some(a) = &draft.address {
            println!("  address      {a}");
        }
        if let Some(w) = &draft.ward {
            println!("  ward         {} — {}", w.code, w.name);
        }
        if draft.anonymous {
            println!("  anonymous    yes: the city gets no contact details");
        } else if !draft.contact.is_empty() {
            println!("  contact      given (private: sent to the city only)");
        }
        for p in &draft.photos {
            println!(
                "  photo        {}  {}×{}  {} bytes",
                p.sha256, p.width, p.height, p.bytes
            );
        }
        if let Some(n) = &draft.status_notes {
            println!("  city says    {n}");
        }
        if let Some(p) = &draft.duplicate_of {
            let number = p.service_request_id.as_deref().unwrap_or(&p.id);
            match p.state {
                Some(state) => println!("  duplicate of {number}, which is {state}"),
                None => println!("  duplicate of {number}"),
            }
        }
        if let Some(at) = &draft.expected_at {
            // In the city's own time, as its standards count.
            let local = at.to_offset(curbside_core::vocab::calendar::toronto_offset(*at));
            println!("  expected by  {}", rfc3339(local));
        }
        println!("  history");
        for h in &draft.history {
            let from = h.from.map(|s| format!("{s} → ")).unwrap_or_default();
            let note = h
                .note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default();
            println!("    {}  {from}{}{note}", rfc3339(h.at), h.to);
        }
        if !problems.is_empty() {
            println!("  to fix before submitting:");
            for p in problems {
                println!("    {p}");
            }
        }
    }

    pub fn photo(&self, p: &photo::Processed, input_bytes: usize, took: std::time::Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        if self.json {
            let mut v = json!(p);
            v["bytes"] = json!(p.jpeg.len());
            v["thumbnail_bytes"] = json!(p.thumbnail.len());
            v["input_bytes"] = json!(input_bytes);
            v["millis"] = json!((ms * 10.0).round() / 10.0);
            return print_json(&v);
        }
        println!(
            "{}×{} → {}×{}  {} → {} bytes  quality {}  {ms:.1} ms",
            p.source_width,
            p.source_height,
            p.width,
            p.height,
            input_bytes,
            p.jpeg.len(),
            p.quality
        );
        match &p.location {
            Some(l) => println!(
                "GPS fix {:.6}, {:.6}{} (read from EXIF; not written to the output)",
                l.lat,
                l.lon,
                l.accuracy_m.map(|a| format!(" ±{a} m")).unwrap_or_default()
            ),
            None => println!("no GPS fix in the photo"),
        }
        if let Some(t) = p.captured_at {
            println!("taken {}", rfc3339(t));
        }
        println!("sha256 {}", p.sha256);
    }

    pub fn attached(&self, a: &curbside_core::AttachedPhoto) {
        if self.json {
            return print_json(&json!(a));
        }
        if a.already_attached {
            println!("already attached: {}", a.photo.sha256);
            return;
        }
        println!(
            "attached {} ({}×{}, {} bytes, quality {})",
            a.photo.sha256, a.photo.width, a.photo.height, a.photo.bytes, a.quality
        );
        if a.location_taken {
            println!("the draft had no location: it now uses the photo's GPS fix");
        }
    }

    pub fn photos(&self, photos: &[curbside_core::PhotoInfo]) {
        if self.json {
            return print_json(&json!(photos));
        }
        if photos.is_empty() {
            println!("no photos");
        }
        for p in photos {
            println!("{}  {}×{}  {} bytes", p.sha256, p.width, p.height, p.bytes);
        }
    }

    pub fn ward(&self, ward: &curbside_core::geo::Ward) {
        if self.json {
            return print_json(&json!(ward));
        }
        println!("ward {} — {}", ward.code, ward.name);
    }

    pub fn nearby(&self, hits: &[curbside_core::geo::NearbyHit]) {
        if self.json {
            return print_json(&json!(hits));
        }
        if hits.is_empty() {
            println!("no open request of this service nearby");
        }
        for h in hits {
            println!(
                "{}  {:.0} m away (within {:.0} m)  reported {}",
                h.id,
                h.distance_m,
                h.radius_m,
                rfc3339(curbside_core::clock::from_ms(h.created_at_ms))
            );
        }
    }

    pub fn value(&self, v: &Value) {
        print_json(v);
    }

    pub fn done(&self, message: &str) {
        if self.json {
            print_json(&json!({ "ok": true, "message": message }));
        } else {
            println!("{message}");
        }
    }

    pub fn error(&self, e: &Error) {
        let problems = match e {
            Error::Invalid(p) => p.as_slice(),
            _ => &[],
        };
        if self.json {
            return print_json(
                &json!({ "error": { "message": e.to_string(), "problems": problems } }),
            );
        }
        if problems.len() > 1 {
            eprintln!("curbside: {} problems:", problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
        } else {
            eprintln!("curbside: {e}");
        }
    }
}
