//! The commands that talk to a server (`register`, `sync`) and act on requests that have left
//! the device (`request status|note|assign|priority|show|list`).

use clap::Subcommand;
use curbside_core::sync::protocol::{RegisterBody, Role};
use curbside_core::{Error, Field, Problem, ProblemKind, State, Store, SyncOptions};
use serde_json::json;

use crate::output::Out;

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Set the city's status (accepted, in_progress, scheduled, completed, cancelled), with the
    /// public note that explains it. Inspectors only.
    Status {
        id: String,
        status: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a note: public unless --internal (inspectors only).
    Note {
        id: String,
        text: String,
        #[arg(long)]
        internal: bool,
    },
    /// Assign to a crew or person (empty to clear). Inspectors only.
    Assign { id: String, assignee: String },
    /// low, normal, high or urgent (empty to clear). Inspectors only.
    Priority { id: String, priority: String },
    /// Mark a duplicate of PARENT: cancelled, with a public note; its reporter sees the
    /// parent's status. Inspectors only.
    Duplicate {
        id: String,
        parent: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// The request as replicated: fields, notes, photos, and its history with conflict flags.
    Show { id: String },
    /// Requests this device holds (its own sent ones, an inspector's wards, reports nearby).
    List,
}

pub fn register(
    store: &Store,
    server: &str,
    role: Option<String>,
    wards: Option<String>,
    admin_key: Option<String>,
    out: &Out,
) -> Result<(), Error> {
    let role = match role.as_deref().map(str::trim) {
        None | Some("resident") => Role::Resident,
        Some("inspector") => Role::Inspector,
        Some(other) => {
            return Err(Error::invalid(Problem::new(
                "role",
                ProblemKind::OutOfRange,
                format!("{other:?}: resident or inspector"),
            )))
        }
    };
    let wards: Vec<String> = wards
        .unwrap_or_default()
        .split(',')
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let r = store.register(
        server,
        &RegisterBody {
            role: Some(role),
            wards,
            admin_key,
        },
    )?;
    if out.json {
        // The token stays in the store; it is a secret.
        out.value(
            &json!({"device_id": r.device_id, "role": r.role, "wards": r.wards, "server": server}),
        );
    } else {
        let wards = if r.wards.is_empty() {
            String::new()
        } else {
            format!(" for wards {}", r.wards.join(", "))
        };
        println!(
            "registered as {} {}{wards} with {server}",
            r.role.as_str(),
            r.device_id
        );
    }
    Ok(())
}

pub fn sync(store: &Store, out: &Out) -> Result<(), Error> {
    let quiet = out.json || !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = store.sync(&SyncOptions::default(), &mut |p| {
        if !quiet {
            eprint!(
                "\r  pushed {} (pending {}), pulled {}, photos {}/{} bytes   ",
                p.pushed_changes,
                p.pending_changes,
                p.pulled_changes,
                p.photo_bytes_sent,
                p.photo_bytes_total
            );
        }
    })?;
    if !quiet {
        eprintln!();
    }
    if out.json {
        out.value(&serde_json::to_value(&report).unwrap_or_default());
        return Ok(());
    }
    println!(
        "synced: pushed {} changes, pulled {}, uploaded {} photos in {} rounds",
        report.pushed, report.pulled, report.photos_uploaded, report.rounds
    );
    if report.restamped > 0 {
        println!(
            "  this device's clock was off: {} unsent changes were re-stamped",
            report.restamped
        );
    }
    if report.full_resync {
        println!("  the server asked for a full resync: everything was pulled again");
    }
    for (id, reason) in &report.rejected {
        println!("  refused by the server: {id}: {reason}");
    }
    Ok(())
}

fn text_or_none(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

pub fn request(store: &Store, command: RequestCommand, out: &Out) -> Result<(), Error> {
    match command {
        RequestCommand::Status { id, status, note } => {
            let parsed = State::parse(&status).ok_or_else(|| {
                Error::invalid(Problem::new(
                    "status",
                    ProblemKind::OutOfRange,
                    format!("{status:?} is not a status"),
                ))
            })?;
            store.set_status(&id, parsed, note.as_deref())?;
            out.done(&format!("{id}: {parsed} (sync to send it)"));
        }
        RequestCommand::Note { id, text, internal } => {
            let note = store.add_note(&id, &text, !internal)?;
            out.done(&format!("{id}: note {note} added (sync to send it)"));
        }
        RequestCommand::Assign { id, assignee } => {
            store.assign(&id, text_or_none(&assignee))?;
            out.done(&format!("{id}: assigned"));
        }
        RequestCommand::Priority { id, priority } => {
            store.set_priority(&id, text_or_none(&priority))?;
            out.done(&format!("{id}: priority set"));
        }
        RequestCommand::Duplicate { id, parent, note } => {
            store.mark_duplicate(&id, &parent, note.as_deref())?;
            out.done(&format!("{id}: a duplicate of {parent}"));
        }
        RequestCommand::Show { id } => {
            let doc = store.request(&id)?;
            if out.json {
                out.value(&serde_json::to_value(&doc).unwrap_or_default());
                return Ok(());
            }
            println!("request {}", doc.request_id);
            for (field, value) in &doc.fields {
                if *field == Field::Contact {
                    println!("  {field:<20} (private)");
                } else {
                    println!("  {field:<20} {value}");
                }
            }
            for n in &doc.notes {
                let kind = if n.public { "public" } else { "internal" };
                println!("  note ({kind}, {}): {}", n.author, n.text);
            }
            for p in &doc.photos {
                println!("  photo {}", p.sha256);
            }
            println!("  history:");
            for h in &doc.history {
                let c = &h.change;
                let value = if c.field() == Field::Contact {
                    "(private)".to_string()
                } else {
                    c.value.to_string()
                };
                println!(
                    "    {} {:<16} {:<18} {}{}{}",
                    curbside_core::clock::rfc3339(curbside_core::clock::from_ms(c.hlc.ms() as i64)),
                    c.replica(),
                    c.field(),
                    value.chars().take(80).collect::<String>(),
                    if h.current { "  [current]" } else { "" },
                    if h.conflict {
                        "  [CONFLICT: concurrent edit, review]"
                    } else {
                        ""
                    },
                );
            }
        }
        RequestCommand::List => {
            let ids = store.replicated_requests()?;
            if out.json {
                out.value(&json!(ids));
            } else {
                for id in ids {
                    println!("{id}");
                }
            }
        }
    }
    Ok(())
}
